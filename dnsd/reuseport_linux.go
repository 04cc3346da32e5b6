package dnsd

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
)

var errNoReusePort = errors.New("SO_REUSEPORT not supported")

// listenConfig sets SO_REUSEPORT (reuse) and IP_FREEBIND / IPV6_FREEBIND (freebind: bind
// an address the host does not have yet, e.g. the VP address before vp0 is up).
func listenConfig(reuse, freebind, v6 bool) net.ListenConfig {
	return net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if reuse {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			if serr == nil && freebind {
				if v6 {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
}

func network(base string, ap netip.AddrPort) string {
	if ap.Addr().Is6() {
		return base + "6"
	}
	return base + "4"
}

// listenUDP binds a UDP socket.
func listenUDP(ap netip.AddrPort, reuse, freebind bool) (*net.UDPConn, error) {
	lc := listenConfig(reuse, freebind, ap.Addr().Is6())
	pc, err := lc.ListenPacket(context.Background(), network("udp", ap), ap.String())
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// listenTCP binds a TCP listener.
func listenTCP(ap netip.AddrPort, freebind bool) (net.Listener, error) {
	lc := listenConfig(false, freebind, ap.Addr().Is6())
	return lc.Listen(context.Background(), network("tcp", ap), ap.String())
}
