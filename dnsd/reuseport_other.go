//go:build !linux

package dnsd

import (
	"errors"
	"net"
	"net/netip"
)

var errNoReusePort = errors.New("SO_REUSEPORT not supported")

// listenUDP binds a UDP socket. Without SO_REUSEPORT only the first bind of an address
// succeeds; the caller then shares that socket among its workers. freebind is Linux-only.
func listenUDP(ap netip.AddrPort, reuse, _ bool) (*net.UDPConn, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil && reuse && ap.Port() != 0 {
		return nil, errNoReusePort
	}
	return c, err
}

// listenTCP binds a TCP listener.
func listenTCP(ap netip.AddrPort, _ bool) (net.Listener, error) {
	return net.Listen("tcp", ap.String())
}
