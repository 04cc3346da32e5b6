// Package membind is an in-memory UDP underlay for several wireguard-go devices in one
// process, for tests that need no root, namespaces or real sockets: a Switch hands out
// Binds (conn.Bind), each owning an ip:port, and Send delivers every datagram to the Bind
// that owns its destination, or loses it as UDP would (nobody there, or a full queue) and
// counts it. wireguard-go's conn/bindtest connects exactly two binds; a hub talks to many.
package membind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.zx2c4.com/wireguard/conn"
)

// Switch is an in-memory UDP network for wireguard-go devices. Its zero value is not
// usable; call NewSwitch.
type Switch struct {
	mu    sync.Mutex
	binds map[netip.AddrPort]*Bind
	lost  atomic.Uint64 // datagrams to no one or to a full queue
}

// NewSwitch returns an empty underlay.
func NewSwitch() *Switch { return &Switch{binds: map[netip.AddrPort]*Bind{}} }

// Lost is the number of datagrams the switch could not deliver.
func (s *Switch) Lost() uint64 { return s.lost.Load() }

// Bind returns a conn.Bind that will listen on ip; the port is the one wireguard-go opens
// it with (listen_port), or the first free one from 40000 when that is 0.
func (s *Switch) Bind(ip netip.Addr) *Bind { return &Bind{sw: s, ip: ip} }

// datagram is one packet in flight with its sender's address.
type datagram struct {
	data []byte
	from netip.AddrPort
}

// Bind is one device's socket on a Switch. It implements conn.Bind.
type Bind struct {
	sw *Switch
	ip netip.Addr

	mu     sync.Mutex // guards addr, rx, closed
	addr   netip.AddrPort
	rx     chan datagram
	closed chan struct{}
}

var _ conn.Bind = (*Bind)(nil)

// Endpoint is an address on a Switch. It implements conn.Endpoint.
type Endpoint netip.AddrPort

var _ conn.Endpoint = Endpoint{}

func (e Endpoint) ClearSrc()           {}
func (e Endpoint) SrcToString() string { return "" }
func (e Endpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e Endpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}
func (e Endpoint) DstIP() netip.Addr { return netip.AddrPort(e).Addr() }
func (e Endpoint) SrcIP() netip.Addr { return netip.Addr{} }

// QueueLen is how many datagrams wait for a Bind's receiver before the switch loses more.
const QueueLen = 4096

// Open implements conn.Bind.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rx != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	fixed := port != 0
	if !fixed {
		port = 40000
	}
	b.sw.mu.Lock()
	for {
		a := netip.AddrPortFrom(b.ip, port)
		if _, used := b.sw.binds[a]; !used {
			b.addr = a
			b.sw.binds[a] = b
			break
		}
		if fixed || port == 65535 {
			b.sw.mu.Unlock()
			return nil, 0, fmt.Errorf("membind: %s is in use", a)
		}
		port++
	}
	b.sw.mu.Unlock()
	rx := make(chan datagram, QueueLen)
	closed := make(chan struct{})
	b.rx, b.closed = rx, closed
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case <-closed:
			return 0, net.ErrClosed
		case d := <-rx:
			sizes[0] = copy(bufs[0], d.data)
			eps[0] = Endpoint(d.from)
			return 1, nil
		}
	}
	return []conn.ReceiveFunc{recv}, port, nil
}

// Close implements conn.Bind.
func (b *Bind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rx == nil {
		return nil
	}
	close(b.closed)
	b.sw.mu.Lock()
	delete(b.sw.binds, b.addr)
	b.sw.mu.Unlock()
	b.rx = nil
	return nil
}

// SetMark implements conn.Bind.
func (b *Bind) SetMark(uint32) error { return nil }

// BatchSize implements conn.Bind.
func (b *Bind) BatchSize() int { return 1 }

// Send implements conn.Bind: each buffer goes to the bind that owns ep, or is lost.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	from, open := b.addr, b.rx != nil
	b.mu.Unlock()
	if !open {
		return net.ErrClosed
	}
	e, ok := ep.(Endpoint)
	if !ok {
		return errors.New("membind: endpoint of another bind type")
	}
	b.sw.mu.Lock()
	var rx chan datagram
	var done chan struct{}
	if dst := b.sw.binds[netip.AddrPort(e)]; dst != nil {
		dst.mu.Lock()
		rx, done = dst.rx, dst.closed
		dst.mu.Unlock()
	}
	b.sw.mu.Unlock()
	for _, buf := range bufs {
		if rx == nil {
			b.sw.lost.Add(1)
			continue
		}
		select {
		case <-done:
			b.sw.lost.Add(1)
		case rx <- datagram{data: append([]byte(nil), buf...), from: from}:
		default:
			b.sw.lost.Add(1)
		}
	}
	return nil
}

// ParseEndpoint implements conn.Bind: s is "ip:port".
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return Endpoint(netip.AddrPortFrom(a.Addr().Unmap(), a.Port())), nil
}
