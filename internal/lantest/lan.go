// Package lantest simulates a site's LAN in one process for tests that need no root: hosts
// with real userspace TCP/UDP/ICMP stacks (gVisor netstack, via wireguard-go's tun/netstack)
// and a gateway whose vp0 is a wireguard-go tuntest.ChannelTUN. Packets are switched by
// destination address: to a host on the LAN, else to the gateway (every host's default route).
package lantest

import (
	"net/netip"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/tun/tuntest"
)

// LAN is one site's network: a gateway TUN and any number of hosts.
type LAN struct {
	GW *tuntest.ChannelTUN // the gateway's vp0: hand GW.TUN() to the gateway

	mu    sync.Mutex
	hosts map[netip.Addr]*Host
	done  chan struct{}
	once  sync.Once
}

// Host is a LAN host with its own network stack.
type Host struct {
	Addr netip.Addr
	Net  *netstack.Net
	dev  tun.Device
}

// New returns a LAN whose gateway side is a fresh channel TUN.
func New() *LAN {
	l := &LAN{GW: tuntest.NewChannelTUN(), hosts: map[netip.Addr]*Host{}, done: make(chan struct{})}
	go l.fromGateway()
	return l
}

// AddHost attaches a host with address addr (MTU 1420, default route to the gateway).
func (l *LAN) AddHost(addr netip.Addr) (*Host, error) {
	dev, n, err := netstack.CreateNetTUN([]netip.Addr{addr}, nil, 1420)
	if err != nil {
		return nil, err
	}
	h := &Host{Addr: addr, Net: n, dev: dev}
	l.mu.Lock()
	l.hosts[addr] = h
	l.mu.Unlock()
	go l.fromHost(h)
	return h, nil
}

// Close stops the switch and every host stack. The gateway's TUN is not closed here: the
// WireGuard device that owns it closes it (tuntest's ChannelTUN may be closed only once).
func (l *LAN) Close() {
	l.once.Do(func() {
		close(l.done)
		// Close the stacks without holding mu: closing one waits for its reader, which may
		// be looking up a host under mu.
		l.mu.Lock()
		hosts := make([]*Host, 0, len(l.hosts))
		for _, h := range l.hosts {
			hosts = append(hosts, h)
		}
		l.mu.Unlock()
		for _, h := range hosts {
			h.dev.Close()
		}
	})
}

func dst(pkt []byte) (netip.Addr, bool) {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(pkt[16:20])), true
}

func (l *LAN) host(a netip.Addr) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.hosts[a]
}

func (l *LAN) fromHost(h *Host) {
	bufs := [][]byte{make([]byte, 65535)}
	sizes := []int{0}
	for {
		n, err := h.dev.Read(bufs, sizes, 0)
		if err != nil {
			return
		}
		for i := 0; i < n; i++ {
			pkt := append([]byte(nil), bufs[i][:sizes[i]]...)
			d, ok := dst(pkt)
			if !ok {
				continue
			}
			if to := l.host(d); to != nil {
				to.dev.Write([][]byte{pkt}, 0)
				continue
			}
			// Like a real link, a gateway that is not reading loses the packet; the
			// host's stack never blocks on it.
			// After Close the packet is dropped but the loop keeps draining the host's
			// stack until its device is closed: a stack that is closing may still send
			// (a FIN), and netstack blocks such a send until someone reads it.
			select {
			case l.GW.Outbound <- pkt:
			case <-l.done:
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

func (l *LAN) fromGateway() {
	for {
		select {
		case pkt, ok := <-l.GW.Inbound:
			if !ok {
				return
			}
			if d, ok := dst(pkt); ok {
				if to := l.host(d); to != nil {
					to.dev.Write([][]byte{pkt}, 0)
				}
			}
		case <-l.done:
			return
		}
	}
}
