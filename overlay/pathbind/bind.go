package pathbind

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Config configures a Bind.
type Config struct {
	// Self is this gateway's overlay IP: its name in relay trailers and probes.
	Self netip.Addr
	// PrivateKey is this gateway's WireGuard private key; with each peer's public key it
	// keys the probes of that pair (see pairKey).
	PrivateKey [32]byte
	// Direct enables direct paths (config `paths.direct`, default true). False: every
	// peer is reached through the relay, no probes are sent and none are answered, so
	// peers cannot prove a direct path to this gateway either.
	Direct bool
	// Relay makes this the hub's bind: relayed datagrams that arrive are forwarded by
	// it. A hub has no path peers.
	Relay *Relay
	// Timing overrides the path timers (zero fields: the defaults).
	Timing Timing
	// Now is the clock (time.Now when nil). ManualTick stops Open from starting the
	// goroutine that calls Tick every Timing.Tick; tests call Tick themselves.
	Now        func() time.Time
	ManualTick bool
	Logger     *slog.Logger
}

// Bind is a conn.Bind over another (conn.StdNetBind in production): one UDP socket that
// carries WireGuard messages, probes and relayed datagrams. For each path peer it sends
// WireGuard's packets to the peer's proven direct endpoint, or wrapped for the relay to
// a hub; on the hub it forwards relayed datagrams (Config.Relay). See doc.go.
type Bind struct {
	inner conn.Bind
	cfg   Config
	log   *slog.Logger
	now   func() time.Time

	// route table for the receive path, replaced whole under mu
	peersByIP atomic.Pointer[map[uint32]*peer]
	hubSet    atomic.Pointer[map[netip.AddrPort]struct{}]

	mu    sync.Mutex // guards everything below, and every peer's path state
	peers map[uint32]*peer
	hubs  []hubAddr
	open  bool
	stop  chan struct{}
	done  chan struct{}

	stats bindCounters
}

type hubAddr struct {
	addr netip.AddrPort
	ep   conn.Endpoint
}

type bindCounters struct {
	sentDirect, sentRelayed, noPath                  atomic.Uint64
	rcvdRelayed, relayNotFromHub, relayBad, probeBad atomic.Uint64
	pings, pongs, calls                              atomic.Uint64
}

// Stats are a Bind's counters (datagrams).
type Stats struct {
	SentDirect      uint64 // sent to a peer's direct endpoint
	SentRelayed     uint64 // sent to a hub for relaying
	NoPath          uint64 // dropped: the peer had neither a direct path nor a hub
	ReceivedRelayed uint64 // relayed datagrams handed to WireGuard or the prober
	RelayNotFromHub uint64 // relayed datagrams from an address that is no hub: dropped
	RelayBad        uint64 // relayed datagrams malformed or not for this gateway: dropped
	ProbeBad        uint64 // probes malformed, from an unknown peer or failing their MAC
	Pings           uint64 // pings sent
	Pongs           uint64 // pongs sent
	Calls           uint64 // calls sent through the relay
}

// Stats returns the bind's counters.
func (b *Bind) Stats() Stats {
	c := &b.stats
	return Stats{
		SentDirect: c.sentDirect.Load(), SentRelayed: c.sentRelayed.Load(), NoPath: c.noPath.Load(),
		ReceivedRelayed: c.rcvdRelayed.Load(), RelayNotFromHub: c.relayNotFromHub.Load(),
		RelayBad: c.relayBad.Load(), ProbeBad: c.probeBad.Load(),
		Pings: c.pings.Load(), Pongs: c.pongs.Load(), Calls: c.calls.Load(),
	}
}

var _ conn.Bind = (*Bind)(nil)

// New returns a Bind over inner.
func New(inner conn.Bind, cfg Config) *Bind {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cfg.Timing = cfg.Timing.withDefaults()
	b := &Bind{inner: inner, cfg: cfg, log: cfg.Logger, now: cfg.Now, peers: map[uint32]*peer{}}
	b.peersByIP.Store(&map[uint32]*peer{})
	b.hubSet.Store(&map[netip.AddrPort]struct{}{})
	if cfg.Relay != nil {
		cfg.Relay.inner = inner
	}
	return b
}

// Open implements conn.Bind: it opens the inner bind and wraps its receive functions.
func (b *Bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.inner.Open(port)
	if err != nil {
		return nil, 0, err
	}
	wrapped := make([]conn.ReceiveFunc, len(fns))
	for i, fn := range fns {
		wrapped[i] = b.wrapReceive(fn)
	}
	b.mu.Lock()
	b.open = true
	// Endpoints parsed before (hubs) belong to the inner bind's type, which does not
	// change across Open/Close; nothing to redo here.
	if !b.cfg.ManualTick {
		b.stop, b.done = make(chan struct{}), make(chan struct{})
		go b.ticker(b.stop, b.done)
	}
	b.mu.Unlock()
	return wrapped, actual, nil
}

// Close implements conn.Bind.
func (b *Bind) Close() error {
	b.mu.Lock()
	stop, done := b.stop, b.done
	b.stop, b.done, b.open = nil, nil, false
	b.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
	return b.inner.Close()
}

func (b *Bind) ticker(stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(b.cfg.Timing.Tick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			b.Tick()
		}
	}
}

// SetMark implements conn.Bind.
func (b *Bind) SetMark(mark uint32) error { return b.inner.SetMark(mark) }

// BatchSize implements conn.Bind.
func (b *Bind) BatchSize() int { return b.inner.BatchSize() }

// peerEndpointPrefix starts the UAPI endpoint string of a path peer (PeerEndpoint).
const peerEndpointPrefix = "egw-peer:"

// PeerEndpoint returns the UAPI `endpoint=` value that hands a path peer's packets to
// this bind's path choice: set it when creating the WireGuard peer, after SetPeers
// listed the peer. `wg show` prints the address in use (direct or hub).
func PeerEndpoint(overlayIP netip.Addr) string { return peerEndpointPrefix + overlayIP.String() }

// ParseEndpoint implements conn.Bind: PeerEndpoint strings name a path peer; anything
// else is an ip:port for the inner bind.
func (b *Bind) ParseEndpoint(s string) (conn.Endpoint, error) {
	if rest, ok := strings.CutPrefix(s, peerEndpointPrefix); ok {
		ip, err := netip.ParseAddr(rest)
		if err != nil || !ip.Is4() {
			return nil, fmt.Errorf("pathbind: endpoint %q: not an overlay IPv4 address", s)
		}
		b.mu.Lock()
		p := b.peers[ip4(ip)]
		b.mu.Unlock()
		if p == nil {
			return nil, fmt.Errorf("pathbind: endpoint %q: no such path peer", s)
		}
		return p.ep, nil
	}
	return b.inner.ParseEndpoint(s)
}

// Send implements conn.Bind. A path peer's packets go to its direct endpoint or, marked
// and with the relay trailer, to the hub; any other endpoint is the inner bind's.
func (b *Bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	pe, ok := ep.(*peerEndpoint)
	if !ok {
		return b.inner.Send(bufs, ep)
	}
	p := pe.p
	if !p.sent.Load() {
		p.sent.Store(true)
	}
	r := p.route.Load()
	if len(bufs) == 1 && isHandshake(bufs[0]) {
		p.keepHandshake(bufs[0], b.now())
	}
	if r == nil {
		b.stats.noPath.Add(uint64(len(bufs)))
		return nil
	}
	if r.direct {
		err := b.inner.Send(bufs, r.ep)
		if err == nil {
			b.stats.sentDirect.Add(uint64(len(bufs)))
		}
		return err
	}
	return b.sendRelayed(bufs, p.ip, r.ep)
}

// sendScratch holds the rewritten slice headers (and, for messages without spare
// capacity, copies) of one relayed Send.
type sendScratch struct {
	bufs   [][]byte
	copies [][]byte
}

var scratchPool = sync.Pool{New: func() any { return new(sendScratch) }}

// sendRelayed marks each message and appends the trailer in place when the buffer has
// TrailerLen bytes of spare capacity (wireguard-go's data and keepalive messages do),
// else in a pooled copy (handshake messages), and sends the batch to the hub.
func (b *Bind) sendRelayed(bufs [][]byte, dst netip.Addr, hub conn.Endpoint) error {
	sc := scratchPool.Get().(*sendScratch)
	out := sc.bufs[:0]
	for i, m := range bufs {
		if len(m) < 4 {
			continue
		}
		if cap(m)-len(m) >= TrailerLen {
			out = append(out, markRelayed(m[:len(m)+TrailerLen], m, b.cfg.Self, dst))
			continue
		}
		for len(sc.copies) <= i {
			sc.copies = append(sc.copies, nil)
		}
		c := sc.copies[i]
		if cap(c) < len(m)+TrailerLen {
			c = make([]byte, 0, max(len(m)+TrailerLen, 256))
			sc.copies[i] = c
		}
		out = append(out, markRelayed(c[:len(m)+TrailerLen], m, b.cfg.Self, dst))
	}
	var err error
	if len(out) > 0 {
		err = b.inner.Send(out, hub)
		if err == nil {
			b.stats.sentRelayed.Add(uint64(len(out)))
		}
	}
	clear(out)
	sc.bufs = out[:0]
	scratchPool.Put(sc)
	return err
}

// addrOf returns the UDP address of an inner bind's endpoint.
func addrOf(ep conn.Endpoint) netip.AddrPort {
	switch e := ep.(type) {
	case *conn.StdNetEndpoint:
		return netip.AddrPortFrom(e.Addr().Unmap(), e.Port())
	case interface{ AddrPort() netip.AddrPort }:
		a := e.AddrPort()
		return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	}
	a, err := netip.ParseAddrPort(ep.DstToString())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// rxScratch is owned by one receive function's goroutine.
type rxScratch struct {
	fw forwarder
}

// wrapReceive demultiplexes each received batch in place: WireGuard messages stay,
// relayed ones are unwrapped (edge) or forwarded (hub) and probes handled; a datagram
// that is not for WireGuard gets size 0, which wireguard-go skips.
func (b *Bind) wrapReceive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	sc := &rxScratch{}
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		if n > 0 {
			b.demux(bufs[:n], sizes[:n], eps[:n], sc)
		}
		return n, err
	}
}

func (b *Bind) demux(bufs [][]byte, sizes []int, eps []conn.Endpoint, sc *rxScratch) {
	var (
		now     time.Time
		relay   = b.cfg.Relay
		table   *relayTable
		links   map[uint64]struct{}
		peers   map[uint32]*peer
		hubs    map[netip.AddrPort]struct{}
		haveNow bool
	)
	for i := range bufs {
		sz := sizes[i]
		if sz < 4 || sz > len(bufs[i]) {
			continue
		}
		pkt := bufs[i][:sz]
		switch {
		case isPlain(pkt):
			if pkt[0] >= wgInitiation && pkt[0] <= wgTransport {
				if relay != nil && (pkt[0] == wgInitiation || pkt[0] == wgResponse) {
					if table == nil {
						table, links = relay.table.Load(), *relay.links.Load()
					}
					relay.handshakeSeen(addrOf(eps[i]), table)
				}
				continue // WireGuard's
			}
			sizes[i] = 0
			if pkt[0] == kindPing || pkt[0] == kindPong {
				if !haveNow {
					now, haveNow = b.now(), true
				}
				b.handleProbe(pkt, addrOf(eps[i]), false, now)
			}
		case isRelayed(pkt):
			sizes[i] = 0
			if !haveNow {
				now, haveNow = b.now(), true
			}
			if relay != nil {
				if table == nil {
					table, links = relay.table.Load(), *relay.links.Load()
				}
				relay.handle(pkt, addrOf(eps[i]), now, table, links, &sc.fw)
				continue
			}
			if hubs == nil {
				hubs, peers = *b.hubSet.Load(), *b.peersByIP.Load()
			}
			from := addrOf(eps[i])
			if _, ok := hubs[from]; !ok {
				b.stats.relayNotFromHub.Add(1)
				continue
			}
			src, dst, inner, err := ParseRelayed(pkt)
			p := peers[ip4(src)]
			if err != nil || dst != b.cfg.Self || p == nil {
				b.stats.relayBad.Add(1)
				continue
			}
			unmarkRelayed(pkt)
			b.stats.rcvdRelayed.Add(1)
			if pkt[0] == kindCall {
				b.handleProbe(pkt[:inner], from, true, now)
				continue
			}
			sizes[i] = inner
			eps[i] = p.ep
		default:
			sizes[i] = 0
		}
	}
	if relay != nil && len(sc.fw.groups) > 0 {
		sc.fw.flush(relay, b.inner)
	}
}

// peerEndpoint is the conn.Endpoint wireguard-go holds for a path peer: the peer's
// identity, not an address, so a path change needs no WireGuard reconfiguration.
type peerEndpoint struct{ p *peer }

var _ conn.Endpoint = (*peerEndpoint)(nil)

func (e *peerEndpoint) ClearSrc()           {}
func (e *peerEndpoint) SrcToString() string { return "" }
func (e *peerEndpoint) SrcIP() netip.Addr   { return netip.Addr{} }

// DstToString is the address in use (what `wg show` prints).
func (e *peerEndpoint) DstToString() string {
	if r := e.p.route.Load(); r != nil {
		return r.addr.String()
	}
	return "0.0.0.0:0"
}

// DstToBytes keys wireguard-go's cookie (mac2) computations: the peer's identity, stable
// across path changes.
func (e *peerEndpoint) DstToBytes() []byte { return e.p.ip.AsSlice() }

// DstIP keys wireguard-go's handshake rate limiter.
func (e *peerEndpoint) DstIP() netip.Addr {
	if r := e.p.route.Load(); r != nil {
		return r.addr.Addr()
	}
	return e.p.ip
}

// route is where a path peer's packets go now.
type route struct {
	direct bool
	addr   netip.AddrPort
	ep     conn.Endpoint // the inner bind's endpoint for addr
}

// SetHubs sets the hubs' UDP endpoints, preferred first: relayed packets go to the
// first; relayed datagrams are accepted from any of them.
func (b *Bind) SetHubs(hubs []netip.AddrPort) error {
	var hs []hubAddr
	set := make(map[netip.AddrPort]struct{}, len(hubs))
	for i, h := range hubs {
		h = netip.AddrPortFrom(h.Addr().Unmap(), h.Port())
		if !h.IsValid() || h.Port() == 0 {
			return fmt.Errorf("pathbind: hubs[%d] %v: not an ip:port", i, h)
		}
		if _, dup := set[h]; dup {
			continue
		}
		ep, err := b.inner.ParseEndpoint(h.String())
		if err != nil {
			return fmt.Errorf("pathbind: hubs[%d] %v: %w", i, h, err)
		}
		set[h] = struct{}{}
		hs = append(hs, hubAddr{addr: h, ep: ep})
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hubs = hs
	b.hubSet.Store(&set)
	for _, p := range b.peers {
		if p.mode != modeDirect {
			b.setRelayedLocked(p)
		}
	}
	return nil
}

// errClosed is returned for sends after Close by the helper that sends probes.
var errClosed = errors.New("pathbind: closed")

// sendTo sends one datagram to addr through the inner bind.
func (b *Bind) sendTo(pkt []byte, ep conn.Endpoint) error {
	if ep == nil {
		return errClosed
	}
	err := b.inner.Send([][]byte{pkt}, ep)
	if errors.Is(err, net.ErrClosed) {
		return errClosed
	}
	return err
}
