package nat

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/snapidx"
	"github.com/egw-project/egw/policy"
	"github.com/egw-project/egw/vpresence"
)

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
	// resetOn: Config.ResetRevoked; rst limits the resets sent (reset.go).
	resetOn bool
	rst     limiter
	st      atomic.Pointer[state]
	applyM  sync.Mutex // serializes Apply
	lim     limiter
	// ctlPeer (big-endian IPv4, 0 = none) and ctlPort (0 = none): Config.ControlPeer and
	// Config.ControlPort.
	ctlPeer uint32
	ctlPort uint16
	// ctlPeers are more control peers (other hubs' overlay IPs, SetControlPeers).
	ctlPeers atomic.Pointer[[]uint32]
	frags    fragTable
	echo     *vpresence.EchoTable // echo requests handed to service hosts (outlives snapshots)

	dirs   [2]dirCounters
	drops  [NumReasons]atomic.Uint64
	icmp   atomic.Uint64 // ICMP messages generated
	resets atomic.Uint64 // TCP RSTs generated (reset.go)
}

type dirCounters struct {
	packets, bytes, dropped atomic.Uint64
}

const (
	dirSite    = 0
	dirOverlay = 1
)

// SetControlPeers sets the overlay IPs, besides Config.ControlPeer, that the gateway's own
// overlay IP may exchange control traffic with: the other hubs (cloud gateway replicas) an
// edge may sync from. Safe to call while packets flow.
func (e *Engine) SetControlPeers(peers []netip.Addr) {
	out := make([]uint32, 0, len(peers))
	for _, p := range peers {
		if p.Is4() {
			out = append(out, ip4.U32(p))
		}
	}
	e.ctlPeers.Store(&out)
}

// NewEngine makes an engine with no snapshot: until Apply, every packet is dropped with
// ReasonNoSnapshot (default deny).
func NewEngine(cfg Config) *Engine {
	cfg.setDefaults()
	e := &Engine{cfg: cfg, mss: uint16(cfg.MTU - 40), reject: *cfg.RejectDenied, ctlPort: cfg.ControlPort}
	e.ctlPeer = ip4.U32(cfg.ControlPeer)
	e.lim.interval = int64(time.Second) / int64(cfg.ICMPRate)
	e.lim.burst = int64(cfg.ICMPBurst) * e.lim.interval
	e.resetOn = *cfg.ResetRevoked
	e.rst.interval, e.rst.burst = e.lim.interval, e.lim.burst
	e.frags.init(cfg.FragmentTable, int64(cfg.FragmentTimeout))
	e.echo = vpresence.NewEchoTable(cfg.EchoTable, cfg.EchoTimeout)
	return e
}

// Prepared is a snapshot compiled for an Engine (Engine.Prepare), ready to be installed.
type Prepared struct {
	table *vpresence.Table
	pol   *policy.Compiled
}

// Prepare builds the translation table and the compiled policy of s off the packet path,
// without changing the engine: a snapshot it refuses changes nothing.
func (e *Engine) Prepare(s *api.Snapshot) (*Prepared, error) {
	if s == nil {
		return nil, fmt.Errorf("nat: apply: nil snapshot")
	}
	// One index of the snapshot (VIPs, gateway prefixes) for the table and the ACL.
	idx, err := snapidx.Build(s)
	if err != nil {
		return nil, fmt.Errorf("nat: apply revision %d: %w", s.Revision, err)
	}
	t, err := vpresence.NewTable(s, idx)
	if err != nil {
		return nil, fmt.Errorf("nat: apply revision %d: %w", s.Revision, err)
	}
	pol, err := policy.CompileIndexed(s, idx)
	if err != nil {
		return nil, fmt.Errorf("nat: apply revision %d: %w", s.Revision, err)
	}
	return &Prepared{table: t, pol: pol}, nil
}

// Install swaps in p with one atomic store. Leases carry over when this gateway's overlay
// prefix and VP CIDR are unchanged. It cannot fail.
func (e *Engine) Install(p *Prepared) {
	t := p.table
	e.applyM.Lock()
	defer e.applyM.Unlock()
	ns := &state{table: t, pol: p.pol}
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
}

// Apply is Prepare then Install. On error the current state stays.
func (e *Engine) Apply(s *api.Snapshot) error {
	p, err := e.Prepare(s)
	if err != nil {
		return err
	}
	e.Install(p)
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
	TCPResets    uint64            // RSTs sent to the ends of revoked TCP flows (two per flow hit)
	ClientPool   vpresence.PoolStats
	PresencePool vpresence.PoolStats
}

// Stats returns the counters. It allocates (the Drops map); it is for status, not for
// the packet path.
func (e *Engine) Stats() Stats {
	s := Stats{Drops: map[string]uint64{}, ICMPSent: e.icmp.Load(), TCPResets: e.resets.Load()}
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
