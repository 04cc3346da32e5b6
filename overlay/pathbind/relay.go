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
	// Refresh, when set, is called (in its own goroutine, at most every 500 ms) when a
	// relayed packet names a sender whose table entry is missing or differs from the UDP
	// source, or a destination without an entry: the owner re-reads the WireGuard device
	// and calls SetEndpoints, so a NAT rebinding is followed within a second.
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

	forwarded   atomic.Uint64
	drops       [len(dropReasons)]atomic.Uint64
	lastRefresh atomic.Int64 // unix ns
	refreshing  atomic.Bool
}

type relayTable struct{ byIP map[uint32]*relayPeer }

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
	r.table.Store(&relayTable{byIP: map[uint32]*relayPeer{}})
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
	t := &relayTable{byIP: make(map[uint32]*relayPeer, len(eps))}
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
	}
	r.buckets = live
	r.bucketsMu.Unlock()
	r.table.Store(t)
}

// Endpoint returns the authenticated endpoint the relay holds for a gateway.
func (r *Relay) Endpoint(ip netip.Addr) (netip.AddrPort, bool) {
	p := r.table.Load().byIP[ip4(ip)]
	if p == nil {
		return netip.AddrPort{}, false
	}
	return p.addr, true
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

// refresh asks the owner for a new endpoint table, at most every relayRefreshGap.
func (r *Relay) refresh(now time.Time) {
	if r.cfg.Refresh == nil {
		return
	}
	last := r.lastRefresh.Load()
	if now.UnixNano()-last < int64(relayRefreshGap) || !r.lastRefresh.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if !r.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer r.refreshing.Store(false)
		r.cfg.Refresh()
	}()
}

// handle decides one relayed datagram b that arrived from `from`; a datagram to forward
// is queued on fw.
func (r *Relay) handle(b []byte, from netip.AddrPort, now time.Time, t *relayTable, links map[uint64]struct{}, fw *forwarder) {
	src, dst, _, err := ParseRelayed(b)
	if err != nil {
		r.drop(dropMalformed)
		return
	}
	s := t.byIP[ip4(src)]
	if s == nil || s.addr != from {
		r.drop(dropForged)
		r.refresh(now)
		return
	}
	d := t.byIP[ip4(dst)]
	if d == nil || d.ep == nil {
		r.drop(dropUnknownDst)
		r.refresh(now)
		return
	}
	if _, ok := links[linkKey(src, dst)]; !ok {
		r.drop(dropUnlinked)
		return
	}
	cost := max(len(b), r.cfg.MinCost)
	if !s.bucket.take(now, float64(cost), r.cfg.Rate, float64(r.cfg.Burst)) {
		r.drop(dropRateLimited)
		return
	}
	fw.add(d, b)
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
