package overlay

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"golang.zx2c4.com/wireguard/conn"
)

// memNet is an in-process UDP "underlay" for several wireguard-go devices (bindtest's
// ChannelBind connects only two): each memBind owns an address, and Send delivers to the
// bind that owns the destination, or drops like UDP would.
type memNet struct {
	mu    sync.Mutex
	binds map[netip.AddrPort]*memBind
}

type memPacket struct {
	data []byte
	from netip.AddrPort
}

func newMemNet() *memNet { return &memNet{binds: map[netip.AddrPort]*memBind{}} }

// bind returns a Bind that listens on ip (the port comes from the device's listen_port).
func (n *memNet) bind(ip string) *memBind {
	return &memBind{net: n, ip: netip.MustParseAddr(ip)}
}

type memBind struct {
	net *memNet
	ip  netip.Addr

	mu     sync.Mutex // guards addr, rx, closed
	addr   netip.AddrPort
	rx     chan memPacket
	closed chan struct{}
}

type memEndpoint netip.AddrPort

func (e memEndpoint) ClearSrc()           {}
func (e memEndpoint) SrcToString() string { return "" }
func (e memEndpoint) DstToString() string { return netip.AddrPort(e).String() }
func (e memEndpoint) DstToBytes() []byte {
	b, _ := netip.AddrPort(e).MarshalBinary()
	return b
}
func (e memEndpoint) DstIP() netip.Addr { return netip.AddrPort(e).Addr() }
func (e memEndpoint) SrcIP() netip.Addr { return netip.Addr{} }

func (b *memBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rx != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if port == 0 {
		port = 40000
	}
	b.net.mu.Lock()
	for {
		a := netip.AddrPortFrom(b.ip, port)
		if _, used := b.net.binds[a]; !used {
			b.addr = a
			b.net.binds[a] = b
			break
		}
		port++
	}
	b.net.mu.Unlock()
	rx := make(chan memPacket, 1024)
	closed := make(chan struct{})
	b.rx, b.closed = rx, closed
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case <-closed:
			return 0, net.ErrClosed
		case p := <-rx:
			sizes[0] = copy(bufs[0], p.data)
			eps[0] = memEndpoint(p.from)
			return 1, nil
		}
	}
	return []conn.ReceiveFunc{recv}, port, nil
}

func (b *memBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.rx == nil {
		return nil
	}
	close(b.closed)
	b.net.mu.Lock()
	delete(b.net.binds, b.addr)
	b.net.mu.Unlock()
	b.rx = nil
	return nil
}

func (b *memBind) SetMark(uint32) error { return nil }
func (b *memBind) BatchSize() int       { return 1 }

func (b *memBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	b.mu.Lock()
	from, open := b.addr, b.rx != nil
	b.mu.Unlock()
	if !open {
		return net.ErrClosed
	}
	e, ok := ep.(memEndpoint)
	if !ok {
		return errors.New("memnet: foreign endpoint")
	}
	b.net.mu.Lock()
	dst := b.net.binds[netip.AddrPort(e)]
	var rx chan memPacket
	if dst != nil {
		dst.mu.Lock()
		rx = dst.rx
		dst.mu.Unlock()
	}
	b.net.mu.Unlock()
	if rx == nil {
		return nil // nobody there: lost, like UDP
	}
	for _, buf := range bufs {
		select {
		case rx <- memPacket{data: append([]byte(nil), buf...), from: from}:
		default: // queue full: lost
		}
	}
	return nil
}

func (b *memBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	a, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return memEndpoint(a), nil
}
