package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/egw-project/egw/api"
)

// PeerStats is what the data plane knows about one WireGuard peer (a gateway).
type PeerStats struct {
	Connected     bool      `json:"connected"`
	LastHandshake time.Time `json:"lastHandshake,omitzero"`
	RxBytes       uint64    `json:"rxBytes"`
	TxBytes       uint64    `json:"txBytes"`
}

// PoolUse is how full one lease pool of a gateway is.
type PoolUse struct {
	Pool string `json:"pool"` // "client" (ov(c)) or "presence"
	Used int    `json:"used"`
	Size int    `json:"size"`
}

// Report is what a gateway posts to /v1/report (and the hub's own node hands to
// Server.Report): the snapshot revision it applied, how full its lease pools are and its
// drops by reason.
type Report struct {
	// Gateway is set by the server from the caller's identity; a value sent is ignored.
	Gateway         string            `json:"gateway,omitempty"`
	AppliedRevision int64             `json:"appliedRevision"`
	Leases          []PoolUse         `json:"leases,omitempty"`
	Drops           map[string]uint64 `json:"drops,omitempty"`
	// Received is set by the server.
	Received time.Time `json:"received,omitzero"`
}

// Options tune a Server. Zero values give the defaults.
type Options struct {
	Logger *slog.Logger
	// SyncTimeout is how long /v1/sync waits for a newer snapshot (default 30 s).
	SyncTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// DefaultSyncTimeout is how long a sync long-poll waits by default.
const DefaultSyncTimeout = 30 * time.Second

// Server is the control plane: the store, the compiled snapshots of every gateway and the
// reports gateways sent. Its methods are safe for concurrent use.
type Server struct {
	cfg   Config
	store *Store
	log   *slog.Logger
	opts  Options

	// mu guards everything below.
	mu          sync.Mutex
	compiledRev int64
	snaps       map[string]*api.Snapshot
	snapJSON    map[string][]byte // each snapshot encoded with Revision 0, to compare
	changed     chan struct{}     // closed and replaced when a snapshot changes
	reports     map[string]Report
	peerStats   func() map[string]PeerStats
}

// NewServer returns a Server over store and compiles the first snapshots.
func NewServer(store *Store, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = DefaultSyncTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{cfg: store.cfg, store: store, log: opts.Logger, opts: opts,
		snaps: map[string]*api.Snapshot{}, changed: make(chan struct{}), reports: map[string]Report{}}
	if err := s.refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the configuration the server runs with.
func (s *Server) Config() Config { return s.cfg }

// Store returns the store under the server. Writes made directly to it are seen by the
// snapshots only after the next write through the Server (or Refresh).
func (s *Server) Store() *Store { return s.store }

// SetPeerStats installs the data plane's source of WireGuard peer statistics, keyed by
// gateway name, shown by /v1/status.
func (s *Server) SetPeerStats(fn func() map[string]PeerStats) {
	s.mu.Lock()
	s.peerStats = fn
	s.mu.Unlock()
}

// Refresh recompiles the snapshots from the store.
func (s *Server) Refresh() error { return s.refresh() }

// refresh compiles the latest state; a gateway's snapshot gets the new revision only if
// its content changed, so a write that does not concern a gateway does not wake it.
func (s *Server) refresh() error {
	st, err := s.store.loadShared()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.snaps) > 0 && st.Revision <= s.compiledRev {
		return nil // a concurrent refresh already compiled this or a later revision
	}
	objs := make([]api.Object, 0, len(st.Objects))
	for _, o := range st.Objects {
		objs = append(objs, o)
	}
	next := Compile(objs, st.IPAM, s.cfg)
	nextJSON := make(map[string][]byte, len(next))
	woke := false
	for gw, snap := range next {
		data, err := json.Marshal(snap) // Revision is 0 here
		if err != nil {
			return fmt.Errorf("encoding the snapshot of %s: %w", gw, err)
		}
		nextJSON[gw] = data
		prev, ok := s.snaps[gw]
		if ok && bytes.Equal(s.snapJSON[gw], data) {
			snap.Revision = prev.Revision
			continue
		}
		snap.Revision = st.Revision
		woke = true
		s.log.Info("snapshot changed", "gateway", gw, "revision", st.Revision)
	}
	if len(next) != len(s.snaps) {
		woke = true
	}
	s.snaps, s.snapJSON = next, nextJSON
	s.compiledRev = st.Revision
	if woke {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return nil
}

// Snapshot returns the latest compiled snapshot of a gateway. It is shared: do not modify.
func (s *Server) Snapshot(gateway string) (*api.Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, ok := s.snaps[gateway]
	return snap, ok
}

// Watch waits until the snapshot of gateway has a Revision greater than since and
// returns it (shared: do not modify), or returns ctx's error. The hub's own node uses it
// in-process; edges reach it through /v1/sync.
func (s *Server) Watch(ctx context.Context, gateway string, since int64) (*api.Snapshot, error) {
	for {
		s.mu.Lock()
		snap, ch := s.snaps[gateway], s.changed
		s.mu.Unlock()
		if snap != nil && snap.Revision > since {
			return snap, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// GatewayByAddr returns the gateway whose overlay prefix holds addr: the identity of a
// sync caller (WireGuard's cryptokey routing authenticated the prefix).
func (s *Server) GatewayByAddr(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	s.mu.Lock()
	defer s.mu.Unlock()
	for gw, snap := range s.snaps {
		if snap.OverlayPrefix.Contains(addr) {
			return gw, true
		}
	}
	return "", false
}

// Report records a gateway's report.
func (s *Server) Report(gateway string, r Report) {
	r.Gateway = gateway
	r.Received = s.opts.Now()
	s.mu.Lock()
	s.reports[gateway] = r
	s.mu.Unlock()
}

// Apply, Create, Update, Delete and DeleteAll write through the store and recompile.

func (s *Server) Apply(objs []api.Object) (int64, []Result, error) {
	rev, res, err := s.store.Apply(objs)
	return rev, res, s.after(err)
}

func (s *Server) Create(o api.Object) (api.Object, error) {
	o, err := s.store.Create(o)
	return o, s.after(err)
}

func (s *Server) Update(o api.Object, expectedRV int64) (api.Object, error) {
	o, err := s.store.Update(o, expectedRV)
	return o, s.after(err)
}

func (s *Server) Delete(kind, name string) (int64, error) {
	rev, err := s.store.Delete(kind, name)
	return rev, s.after(err)
}

func (s *Server) DeleteAll(refs []Ref) (int64, []Result, error) {
	rev, res, err := s.store.DeleteAll(refs)
	return rev, res, s.after(err)
}

func (s *Server) after(err error) error {
	if err != nil {
		return err
	}
	if err := s.refresh(); err != nil {
		s.log.Error("compiling snapshots", "err", err)
		return fmt.Errorf("stored, but compiling snapshots failed: %w", err)
	}
	return nil
}

// EnsureHub registers the cloud's own ESite and EGateway (the hub) if absent. On an
// existing hub gateway it refreshes PublicKey and Endpoint when given values differ; the
// VP CIDR of an existing hub is left as the operator set it.
func (s *Server) EnsureHub(vpCIDR, publicKey, endpoint string) error {
	st, err := s.store.loadShared()
	if err != nil {
		return err
	}
	var objs []api.Object
	if _, ok := st.Objects[api.KindESite+"/"+s.cfg.HubSite]; !ok {
		site, _ := api.New(api.KindESite)
		site.GetMeta().Name = s.cfg.HubSite
		objs = append(objs, site)
	}
	if o, ok := st.Objects[api.KindEGateway+"/"+s.cfg.HubGateway]; ok {
		g := api.DeepCopy(o).(*api.EGateway)
		changed := false
		if publicKey != "" && g.PublicKey != publicKey {
			g.PublicKey, changed = publicKey, true
		}
		if endpoint != "" && g.Endpoint != endpoint {
			g.Endpoint, changed = endpoint, true
		}
		if changed {
			objs = append(objs, g)
		}
	} else {
		o, _ := api.New(api.KindEGateway)
		g := o.(*api.EGateway)
		g.Metadata.Name = s.cfg.HubGateway
		g.ESiteName = s.cfg.HubSite
		g.VirtualPresenceIPcidr = vpCIDR
		g.PublicKey = publicKey
		g.Endpoint = endpoint
		objs = append(objs, g)
	}
	if len(objs) == 0 {
		return nil
	}
	_, res, err := s.Apply(objs)
	for _, r := range res {
		s.log.Info("hub registration", "kind", r.Kind, "name", r.Name, "action", r.Action)
	}
	return err
}

// GatewayStatus is one gateway in the answer of /v1/status.
type GatewayStatus struct {
	Name          string    `json:"name"`
	Site          string    `json:"site,omitempty"`
	Hub           bool      `json:"hub,omitempty"`
	OverlayPrefix string    `json:"overlayPrefix,omitempty"`
	Connected     bool      `json:"connected"`
	LastHandshake time.Time `json:"lastHandshake,omitzero"`
	LastReport    time.Time `json:"lastReport,omitzero"`
	RxBytes       uint64    `json:"rxBytes"`
	TxBytes       uint64    `json:"txBytes"`
	// AppliedRevision is what the gateway last reported as applied; LatestRevision the
	// revision of its latest compiled snapshot.
	AppliedRevision int64             `json:"appliedRevision"`
	LatestRevision  int64             `json:"latestRevision"`
	Leases          []PoolUse         `json:"leases,omitempty"`
	Drops           map[string]uint64 `json:"drops,omitempty"`
}

// StatusReport is the answer of /v1/status.
type StatusReport struct {
	Revision int64           `json:"revision"`
	Gateways []GatewayStatus `json:"gateways"`
}

// reportFresh is how long a report keeps a gateway without peer statistics "connected".
func (s *Server) reportFresh() time.Duration { return 3 * s.opts.SyncTimeout }

// Status returns every gateway's applied and latest revisions, peer statistics and report.
func (s *Server) Status() (*StatusReport, error) {
	st, err := s.store.loadShared()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	statsFn := s.peerStats
	s.mu.Unlock()
	var stats map[string]PeerStats
	if statsFn != nil {
		stats = statsFn()
	}
	now := s.opts.Now()
	out := &StatusReport{Revision: st.Revision, Gateways: []GatewayStatus{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range st.List(api.KindEGateway) {
		g := o.(*api.EGateway)
		n := g.Metadata.Name
		gs := GatewayStatus{Name: n, Site: g.ESiteName, Hub: n == s.cfg.HubGateway}
		if p, ok := st.IPAM.Gateways[n]; ok {
			gs.OverlayPrefix = p.String()
		}
		if snap, ok := s.snaps[n]; ok {
			gs.LatestRevision = snap.Revision
		}
		r, reported := s.reports[n]
		if reported {
			gs.LastReport = r.Received
			gs.AppliedRevision = r.AppliedRevision
			gs.Leases = slices.Clone(r.Leases)
			gs.Drops = r.Drops
		}
		if ps, ok := stats[n]; ok {
			gs.Connected, gs.LastHandshake, gs.RxBytes, gs.TxBytes = ps.Connected, ps.LastHandshake, ps.RxBytes, ps.TxBytes
		} else {
			gs.Connected = reported && now.Sub(r.Received) < s.reportFresh()
		}
		out.Gateways = append(out.Gateways, gs)
	}
	return out, nil
}
