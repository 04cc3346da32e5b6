package nat

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/policy"
	"github.com/egw-project/egw/vpresence"
)

// Config configures an Engine. The zero value is usable: every field has a default.
type Config struct {
	// MTU is the tunnel MTU; TCP MSS on SYN and SYN-ACK is clamped to MTU-40.
	// Default 1420 (MSS 1380).
	MTU int
	// RejectDenied: answer a denied packet with ICMP administratively-prohibited (and an
	// exhausted pool with host-unreachable) so the client fails fast. nil means true.
	RejectDenied *bool
	// ICMPRate and ICMPBurst rate-limit every ICMP message the engine generates
	// (rejects and time-exceeded): messages per second, burst. Defaults 50/s, 20.
	ICMPRate  int
	ICMPBurst int
	// ClientLeaseIdle, PresenceLeaseIdle: idle timeout of ov(c) and presence leases.
	// Default 30m. LeaseQuiet: how long a freed address rests before reuse. Default 2m.
	ClientLeaseIdle   time.Duration
	PresenceLeaseIdle time.Duration
	LeaseQuiet        time.Duration
	// FragmentTimeout: how long later fragments may follow their first. Default 30s.
	// FragmentTable bounds the number of datagrams tracked. Default 4096.
	FragmentTimeout time.Duration
	FragmentTable   int
	// EchoTimeout: how long the gateway of a service host remembers which service an
	// ICMP echo request was sent to (refreshed by each request), so the host's reply is
	// attributed to that service. Default 30s. EchoTable bounds the number of echo
	// exchanges remembered (presence IP, service IP, echo id). Default 4096.
	EchoTimeout time.Duration
	EchoTable   int
	// ControlPeer and ControlPort say which traffic of the gateway's own overlay IP is its
	// control traffic, passed untranslated: an edge's overlay IP talks only with ControlPeer
	// (the cloud's overlay IP); the hub's serves only TCP port ControlPort (its sync port).
	// Anything else to or from the overlay IP is denied (ReasonDeniedControl), so no peer
	// reaches other services of the gateway host through the overlay. Zero values: none.
	ControlPeer netip.Addr
	ControlPort uint16
	// Now is the clock leases and timeouts are decided with. Default: monotonic (wall time
	// at start plus monotonic time since), immune to steps of the system clock.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MTU <= 0 {
		c.MTU = 1420
	}
	if c.MTU < 68 {
		c.MTU = 68
	}
	if c.RejectDenied == nil {
		t := true
		c.RejectDenied = &t
	}
	if c.ICMPRate <= 0 {
		c.ICMPRate = 50
	}
	if c.ICMPBurst <= 0 {
		c.ICMPBurst = 20
	}
	if c.ClientLeaseIdle <= 0 {
		c.ClientLeaseIdle = 30 * time.Minute
	}
	if c.PresenceLeaseIdle <= 0 {
		c.PresenceLeaseIdle = 30 * time.Minute
	}
	if c.LeaseQuiet <= 0 {
		c.LeaseQuiet = 2 * time.Minute
	}
	if c.FragmentTimeout <= 0 {
		c.FragmentTimeout = 30 * time.Second
	}
	if c.FragmentTable <= 0 {
		c.FragmentTable = 4096
	}
	if c.EchoTimeout <= 0 {
		c.EchoTimeout = 30 * time.Second
	}
	if c.EchoTable <= 0 {
		c.EchoTable = 4096
	}
	if c.Now == nil {
		c.Now = monotonicNow
	}
}

// state is everything the hot path reads, swapped in with one atomic store. The table
// and the policy are immutable; the pools are shared with the previous state when their
// ranges did not change (leases carry over).
type state struct {
	table    *vpresence.Table
	pol      *policy.Compiled
	client   *vpresence.Pool // ov(c) leases: key = site client address
	presence *vpresence.Pool // presence leases: key = peerOverlay|ov(c) or peerLocal|c
}

// Presence pool keys tag the peer's kind in the high bits.
const (
	peerOverlay uint64 = 1 << 32
	peerLocal   uint64 = 2 << 32
)

// Engine translates packets between this gateway's site and the overlay. It is safe for
// concurrent use: FromSite/FromOverlay may run on many goroutines while Apply swaps in a
// new snapshot.
type Engine struct {
	cfg    Config
	mss    uint16
	reject bool
	st     atomic.Pointer[state]
	applyM sync.Mutex // serializes Apply
	lim    limiter
	// ctlPeer (big-endian IPv4, 0 = none) and ctlPort (0 = none): Config.ControlPeer and
	// Config.ControlPort.
	ctlPeer uint32
	ctlPort uint16
	frags   fragTable
	echo    *vpresence.EchoTable // echo requests handed to service hosts (outlives snapshots)

	dirs  [2]dirCounters
	drops [NumReasons]atomic.Uint64
	icmp  atomic.Uint64 // ICMP messages generated
}

type dirCounters struct {
	packets, bytes, dropped atomic.Uint64
}

const (
	dirSite    = 0
	dirOverlay = 1
)

// NewEngine makes an engine with no snapshot: until Apply, every packet is dropped with
// ReasonNoSnapshot (default deny).
func NewEngine(cfg Config) *Engine {
	cfg.setDefaults()
	e := &Engine{cfg: cfg, mss: uint16(cfg.MTU - 40), reject: *cfg.RejectDenied, ctlPort: cfg.ControlPort}
	e.ctlPeer = ip4.U32(cfg.ControlPeer)
	e.lim.interval = int64(time.Second) / int64(cfg.ICMPRate)
	e.lim.burst = int64(cfg.ICMPBurst) * e.lim.interval
	e.frags.init(cfg.FragmentTable, int64(cfg.FragmentTimeout))
	e.echo = vpresence.NewEchoTable(cfg.EchoTable, cfg.EchoTimeout)
	return e
}

// Apply builds the translation table and the compiled policy of s off the packet path
// and swaps them in with one atomic store. Leases carry over when this gateway's overlay
// prefix and VP CIDR are unchanged. On error the current state stays.
func (e *Engine) Apply(s *api.Snapshot) error {
	if s == nil {
		return fmt.Errorf("nat: apply: nil snapshot")
	}
	t, err := vpresence.NewTable(s)
	if err != nil {
		return fmt.Errorf("nat: apply revision %d: %w", s.Revision, err)
	}
	pol, err := policy.Compile(s)
	if err != nil {
		return fmt.Errorf("nat: apply revision %d: %w", s.Revision, err)
	}
	e.applyM.Lock()
	defer e.applyM.Unlock()
	ns := &state{table: t, pol: pol}
	if old := e.st.Load(); old != nil && old.client.Range() == t.ClientRange {
		ns.client = old.client
	} else {
		ns.client = vpresence.NewPool(t.ClientRange, vpresence.PoolConfig{Idle: e.cfg.ClientLeaseIdle, Quiet: e.cfg.LeaseQuiet})
	}
	if old := e.st.Load(); old != nil && old.presence.Range() == t.PresenceRange {
		ns.presence = old.presence
	} else {
		ns.presence = vpresence.NewPool(t.PresenceRange, vpresence.PoolConfig{Idle: e.cfg.PresenceLeaseIdle, Quiet: e.cfg.LeaseQuiet})
	}
	e.st.Store(ns)
	return nil
}

// Revision is the revision of the applied snapshot (0 before the first Apply).
func (e *Engine) Revision() int64 {
	if st := e.st.Load(); st != nil {
		return st.table.Revision
	}
	return 0
}

// DirStats counts packets seen in one direction.
type DirStats struct {
	Packets uint64 // packets handed to the engine
	Bytes   uint64
	Dropped uint64
}

// Stats is a copy of the engine's counters.
type Stats struct {
	Revision     int64
	FromSite     DirStats
	FromOverlay  DirStats
	Drops        map[string]uint64 // by Reason name; only reasons that occurred
	ICMPSent     uint64            // ICMP messages the engine generated
	ClientPool   vpresence.PoolStats
	PresencePool vpresence.PoolStats
}

// Stats returns the counters. It allocates (the Drops map); it is for status, not for
// the packet path.
func (e *Engine) Stats() Stats {
	s := Stats{Drops: map[string]uint64{}, ICMPSent: e.icmp.Load()}
	get := func(d *dirCounters) DirStats {
		return DirStats{Packets: d.packets.Load(), Bytes: d.bytes.Load(), Dropped: d.dropped.Load()}
	}
	s.FromSite, s.FromOverlay = get(&e.dirs[dirSite]), get(&e.dirs[dirOverlay])
	for r := Reason(1); r < NumReasons; r++ {
		if n := e.drops[r].Load(); n > 0 {
			s.Drops[r.String()] = n
		}
	}
	if st := e.st.Load(); st != nil {
		now := e.cfg.Now()
		s.Revision = st.table.Revision
		s.ClientPool = st.client.Stats(now)
		s.PresencePool = st.presence.Stats(now)
	}
	return s
}

// Sweep frees expired leases now (they also expire lazily); call it from a timer so
// that pool statistics stay current.
func (e *Engine) Sweep() {
	if st := e.st.Load(); st != nil {
		now := e.cfg.Now()
		st.client.Sweep(now)
		st.presence.Sweep(now)
	}
}

// Explain says whether src may reach dst under the current policy and what decided it.
func (e *Engine) Explain(src, dst netip.Addr) policy.Explanation {
	st := e.st.Load()
	if st == nil {
		return policy.Explanation{DecidedBy: policy.ByNoPolicy}
	}
	return st.pol.Explain(src, dst)
}

// limiter is a lock-free GCRA rate limiter over the injected clock.
type limiter struct {
	tat      atomic.Int64 // theoretical arrival time, unix ns
	interval int64
	burst    int64
}

func (l *limiter) allow(now int64) bool {
	for {
		old := l.tat.Load()
		tat := old
		if tat < now {
			tat = now
		}
		if tat-now > l.burst {
			return false
		}
		if l.tat.CompareAndSwap(old, tat+l.interval) {
			return true
		}
	}
}

// fragTable remembers how the first fragment of a datagram was translated so later
// fragments (which carry no ports) follow the same address mapping.
type fragTable struct {
	mu      sync.Mutex // guards m
	m       map[fragKey]fragVal
	max     int
	timeout int64
}

type fragKey struct {
	src, dst uint32
	id       uint16
	proto    uint8
	dir      uint8
}

type fragVal struct {
	src, dst uint32
	action   Action
	decTTL   bool
	st       *state // the state that decided; a later fragment after a swap is dropped
	expires  int64
}

func (f *fragTable) init(max int, timeout int64) {
	f.m = make(map[fragKey]fragVal, 64)
	f.max, f.timeout = max, timeout
}

func (f *fragTable) put(k fragKey, v fragVal, now int64) {
	v.expires = now + f.timeout
	f.mu.Lock()
	if _, ok := f.m[k]; !ok && len(f.m) >= f.max {
		for k2, v2 := range f.m {
			if v2.expires < now {
				delete(f.m, k2)
			}
		}
		if len(f.m) >= f.max {
			for k2 := range f.m { // evict one at random
				delete(f.m, k2)
				break
			}
		}
	}
	f.m[k] = v
	f.mu.Unlock()
}

func (f *fragTable) get(k fragKey, now int64) (fragVal, bool) {
	f.mu.Lock()
	v, ok := f.m[k]
	if ok && v.expires < now {
		delete(f.m, k)
		ok = false
	}
	f.mu.Unlock()
	return v, ok
}

// clockEpoch anchors monotonicNow.
var clockEpoch = time.Now()

// monotonicNow is the default clock: wall time at start plus monotonic time since, so a step
// of the system clock (common on edge boxes without an RTC, when NTP catches up) neither
// expires every lease nor stretches them. Leases, quiet periods and rate limits only compare
// times taken from this clock with each other.
func monotonicNow() time.Time { return clockEpoch.Add(time.Since(clockEpoch)) }
