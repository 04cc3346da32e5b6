package pathbind

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/egw-project/egw/api"
)

// Drop reasons of the hub relay (the `reason` label of egw_relay_drops_total).
const (
	DropForgedSender       = "forged-sender"       // UDP source is not the sender's authenticated endpoint
	DropUnlinked           = "unlinked"            // the configuration does not link the two gateways
	DropMalformed          = "malformed"           // bad length, mark, inner type, or source = destination
	DropUnknownDestination = "unknown-destination" // no authenticated session with the destination
	DropRateLimited        = "rate-limited"        // the sender exceeded its rate
)

var dropReasons = [...]string{DropForgedSender, DropUnlinked, DropMalformed, DropUnknownDestination, DropRateLimited}

const (
	dropForged = iota
	dropUnlinked
	dropMalformed
	dropUnknownDst
	dropRateLimited
)

// Relay defaults.
const (
	DefaultRelayRate    = 1 << 30 // bytes per second a sender may make the hub forward
	DefaultRelayBurst   = 8 << 20 // bytes
	DefaultRelayMinCost = 256     // bytes each packet is charged at least (bounds packets/s)
	relayRefreshGap     = 500 * time.Millisecond
)

// RelayConfig configures a Relay.
type RelayConfig struct {
	// Rate and Burst bound, per sending gateway, the bytes the relay forwards (token
	// bucket); each packet costs at least MinCost bytes. Zero: the defaults.
	Rate    float64
	Burst   int
	MinCost int
	// Refresh, when set, is called (in a goroutine of its own, at most every 500 ms) when a
	// relayed packet names a sender whose table entry is missing or differs from the UDP
	// source, or a destination without an entry, and when a handshake arrives from an
	// address no entry has: the owner re-reads the WireGuard device and calls
	// SetEndpoints, so a new session or a NAT rebinding is followed at once.
	Refresh func()
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Relay is the hub's ciphertext relay (docs/ARCHITECTURE.md, "Paths"). It runs inside the
// hub's Bind: a relayed datagram is forwarded, unchanged and without decryption, only if
//
//   - it parses (ParseRelayed): else "malformed";
//   - its UDP source is the sender's current authenticated endpoint — the endpoint the
//     hub's WireGuard device holds for that gateway's session (SetEndpoints): else
//     "forged-sender";
//   - the destination has such an endpoint too: else "unknown-destination";
//   - the configuration links the two gateways (SetLinks, from Snapshot.Links): else
//     "unlinked";
//   - the sender is within its rate: else "rate-limited".
//
// It never decrypts, never allocates per packet and never panics on input.
type Relay struct {
	cfg   RelayConfig
	inner conn.Bind // set by the Bind the relay runs in

	table atomic.Pointer[relayTable]
	links atomic.Pointer[map[uint64]struct{}]

	bucketsMu sync.Mutex
	buckets   map[uint32]*bucket // per sender, kept across table refreshes

	forwarded atomic.Uint64
	drops     [len(dropReasons)]atomic.Uint64

	parkMu sync.Mutex
	parked []parkedMsg // relayed handshakes waiting for the next table (see park)

	refreshMu      sync.Mutex
	refreshRunning bool // a refreshWorker runs
	refreshPending bool // a refresh was asked for since the worker's last
}

type relayTable struct {
	byIP   map[uint32]*relayPeer
	byAddr map[netip.AddrPort]struct{} // every endpoint in byIP
}

type relayPeer struct {
	ip     netip.Addr
	addr   netip.AddrPort
	ep     conn.Endpoint
	bucket *bucket
}

// NewRelay returns a relay that forwards nothing until SetEndpoints and SetLinks.
func NewRelay(cfg RelayConfig) *Relay {
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRelayRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultRelayBurst
	}
	if cfg.MinCost <= 0 {
		cfg.MinCost = DefaultRelayMinCost
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	r := &Relay{cfg: cfg, buckets: map[uint32]*bucket{}}
	r.table.Store(&relayTable{byIP: map[uint32]*relayPeer{}, byAddr: map[netip.AddrPort]struct{}{}})
	r.links.Store(&map[uint64]struct{}{})
	return r
}

func linkKey(a, b netip.Addr) uint64 {
	x, y := ip4(a), ip4(b)
	if x > y {
		x, y = y, x
	}
	return uint64(x)<<32 | uint64(y)
}

// SetLinks replaces the pairs of gateways the relay forwards between.
func (r *Relay) SetLinks(links []api.Link) {
	m := make(map[uint64]struct{}, len(links))
	for _, l := range links {
		if l.A.Is4() && l.B.Is4() && l.A != l.B {
			m[linkKey(l.A, l.B)] = struct{}{}
		}
	}
	r.links.Store(&m)
}

// SetEndpoints replaces the authenticated endpoint of every gateway, by overlay IP: the
// UDP endpoint of its current WireGuard session with the hub. Leave out gateways without
// a recent handshake. Entries whose endpoint the bind cannot parse are skipped.
func (r *Relay) SetEndpoints(eps map[netip.Addr]netip.AddrPort) {
	t := &relayTable{byIP: make(map[uint32]*relayPeer, len(eps)), byAddr: make(map[netip.AddrPort]struct{}, len(eps))}
	old := r.table.Load()
	r.bucketsMu.Lock()
	live := make(map[uint32]*bucket, len(eps))
	for ip, ap := range eps {
		k := ip4(ip)
		if k == 0 || !ap.IsValid() {
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		var ep conn.Endpoint
		if o := old.byIP[k]; o != nil && o.addr == ap {
			ep = o.ep
		} else if r.inner != nil {
			var err error
			if ep, err = r.inner.ParseEndpoint(ap.String()); err != nil {
				continue
			}
		}
		b := r.buckets[k]
		if b == nil {
			b = &bucket{tokens: float64(r.cfg.Burst)}
		}
		live[k] = b
		t.byIP[k] = &relayPeer{ip: ip, addr: ap, ep: ep, bucket: b}
		t.byAddr[ap] = struct{}{}
	}
	r.buckets = live
	r.bucketsMu.Unlock()
	r.table.Store(t)
	r.unpark()
}

// RelayStats are the relay's counters.
type RelayStats struct {
	Forwarded uint64            // datagrams forwarded
	Drops     map[string]uint64 // by reason (every reason present)
}

// Stats returns the relay's counters.
func (r *Relay) Stats() RelayStats {
	s := RelayStats{Forwarded: r.forwarded.Load(), Drops: make(map[string]uint64, len(dropReasons))}
	for i, name := range dropReasons {
		s.Drops[name] = r.drops[i].Load()
	}
	return s
}

func (r *Relay) drop(reason int) { r.drops[reason].Add(1) }

// handshakeSeen is told of every WireGuard handshake message the hub receives. One from
// an address that is no gateway's endpoint yet is a new session, or a NAT rebinding: the
// table is refreshed shortly after (once wireguard-go has taken the handshake), so the
// gateway's first relayed packets are not dropped as forged.
func (r *Relay) handshakeSeen(from netip.AddrPort, t *relayTable) {
	if _, ok := t.byAddr[from]; !ok {
		r.refresh()
	}
}

// handshakeSettle is how long a refresh waits for wireguard-go to take a handshake.
const handshakeSettle = 30 * time.Millisecond

// refresh asks the owner for a new endpoint table: soon, and at most every
// relayRefreshGap; requests meanwhile coalesce into one more refresh after the gap.
func (r *Relay) refresh() {
	if r.cfg.Refresh == nil {
		return
	}
	r.refreshMu.Lock()
	r.refreshPending = true
	if r.refreshRunning {
		r.refreshMu.Unlock()
		return
	}
	r.refreshRunning = true
	r.refreshMu.Unlock()
	go r.refreshWorker()
}

func (r *Relay) refreshWorker() {
	for {
		time.Sleep(handshakeSettle)
		r.refreshMu.Lock()
		if !r.refreshPending {
			r.refreshRunning = false
			r.refreshMu.Unlock()
			return
		}
		r.refreshPending = false
		r.refreshMu.Unlock()
		r.cfg.Refresh()
		time.Sleep(relayRefreshGap)
	}
}

// handle decides one relayed datagram b that arrived from `from`; a datagram to forward
// is queued on fw.
func (r *Relay) handle(b []byte, from netip.AddrPort, now time.Time, t *relayTable, links map[uint64]struct{}, fw *forwarder) {
	d, reason := r.decide(b, from, now, t, links)
	switch {
	case reason < 0:
		fw.add(d, b)
	case (reason == dropForged || reason == dropUnknownDst) && r.park(b, from, now, reason):
		r.refresh()
	default:
		if reason == dropForged || reason == dropUnknownDst {
			r.refresh()
		}
		r.drop(reason)
	}
}

// decide checks one relayed datagram: its destination, or a drop reason (≥ 0).
func (r *Relay) decide(b []byte, from netip.AddrPort, now time.Time, t *relayTable, links map[uint64]struct{}) (*relayPeer, int) {
	src, dst, _, err := ParseRelayed(b)
	if err != nil {
		return nil, dropMalformed
	}
	s := t.byIP[ip4(src)]
	if s == nil || s.addr != from {
		return nil, dropForged
	}
	d := t.byIP[ip4(dst)]
	if d == nil || d.ep == nil {
		return nil, dropUnknownDst
	}
	if _, ok := links[linkKey(src, dst)]; !ok {
		return nil, dropUnlinked
	}
	cost := max(len(b), r.cfg.MinCost)
	if !s.bucket.take(now, float64(cost), r.cfg.Rate, float64(r.cfg.Burst)) {
		return nil, dropRateLimited
	}
	return d, -1
}

// A gateway that just started (or whose NAT mapping just changed) sends its first
// handshakes to its peers through the relay at the moment it handshakes with the hub,
// before the hub's table has its new endpoint. Dropping them would cost a 5 s handshake
// retry. So a relayed handshake message that fails only for want of a table entry is
// parked (at most maxParked of them, each for at most parkFor) and decided again when the
// table is next replaced; the drop is counted only if it still fails.
const (
	maxParked = 64
	parkFor   = 2 * time.Second
)

type parkedMsg struct {
	b      []byte
	from   netip.AddrPort
	at     time.Time
	reason int
}

// park keeps a copy of a relayed handshake message; false if it is no handshake
// message or there is no room.
func (r *Relay) park(b []byte, from netip.AddrPort, now time.Time, reason int) bool {
	if b[0] != wgInitiation && b[0] != wgResponse {
		return false
	}
	r.parkMu.Lock()
	defer r.parkMu.Unlock()
	r.expireParkedLocked(now)
	if len(r.parked) >= maxParked {
		return false
	}
	r.parked = append(r.parked, parkedMsg{b: append([]byte(nil), b...), from: from, at: now, reason: reason})
	return true
}

func (r *Relay) expireParkedLocked(now time.Time) {
	kept := r.parked[:0]
	for _, m := range r.parked {
		if now.Sub(m.at) > parkFor {
			r.drop(m.reason)
			continue
		}
		kept = append(kept, m)
	}
	clear(r.parked[len(kept):])
	r.parked = kept
}

// unpark decides the parked messages again against the current table: forwarded now,
// or dropped and counted.
func (r *Relay) unpark() {
	r.parkMu.Lock()
	msgs := r.parked
	r.parked = nil
	r.parkMu.Unlock()
	if len(msgs) == 0 || r.inner == nil {
		return
	}
	now := r.cfg.Now()
	t, links := r.table.Load(), *r.links.Load()
	for _, m := range msgs {
		if now.Sub(m.at) > parkFor {
			r.drop(m.reason)
			continue
		}
		d, reason := r.decide(m.b, m.from, now, t, links)
		if reason >= 0 {
			r.drop(reason)
			continue
		}
		if err := r.inner.Send([][]byte{m.b}, d.ep); err == nil {
			r.forwarded.Add(1)
		}
	}
}

// forwarder groups the datagrams of one received batch by destination, so each
// destination gets one Send (one sendmmsg, GSO-coalesced where the kernel can). It is
// owned by one receive goroutine.
type forwarder struct {
	groups []fwGroup
}

type fwGroup struct {
	to   *relayPeer
	bufs [][]byte
}

func (f *forwarder) add(to *relayPeer, b []byte) {
	for i := range f.groups {
		if f.groups[i].to == to {
			f.groups[i].bufs = append(f.groups[i].bufs, b)
			return
		}
	}
	if len(f.groups) < cap(f.groups) {
		f.groups = f.groups[:len(f.groups)+1]
		g := &f.groups[len(f.groups)-1]
		g.to, g.bufs = to, append(g.bufs[:0], b)
		return
	}
	f.groups = append(f.groups, fwGroup{to: to, bufs: [][]byte{b}})
}

// flush sends every group and empties the forwarder. Send errors (a full socket buffer,
// an unreachable network) lose those datagrams, as UDP would.
func (f *forwarder) flush(r *Relay, inner conn.Bind) {
	for i := range f.groups {
		g := &f.groups[i]
		if err := inner.Send(g.bufs, g.to.ep); err == nil {
			r.forwarded.Add(uint64(len(g.bufs)))
		}
		clear(g.bufs)
		g.bufs = g.bufs[:0]
		g.to = nil
	}
	f.groups = f.groups[:0]
}

// bucket is a token bucket of bytes.
type bucket struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (b *bucket) take(now time.Time, cost, rate, burst float64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() {
		if dt := now.Sub(b.last).Seconds(); dt > 0 {
			b.tokens = min(burst, b.tokens+dt*rate)
		}
	}
	b.last = now
	if b.tokens < cost {
		return false
	}
	b.tokens -= cost
	return true
}
