package controlplane

import (
	"bytes"
	"context"
	"crypto/sha256"
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

// Options tune a Server. Zero values give the defaults.
type Options struct {
	Logger *slog.Logger
	// SyncTimeout is how long /v1/sync waits for a changed snapshot (default 30 s).
	SyncTimeout time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxPollsPerGateway bounds the /v1/sync long polls one gateway may have waiting at
	// once (default DefaultMaxPollsPerGateway). A poll beyond it ends the gateway's
	// oldest waiting poll with 503 (see SyncHandler).
	MaxPollsPerGateway int
}

// DefaultMaxPollsPerGateway is how many sync long polls one gateway may have waiting.
const DefaultMaxPollsPerGateway = 4

// DefaultSyncTimeout is how long a sync long-poll waits by default.
const DefaultSyncTimeout = 30 * time.Second

// Server is the control plane: the store, the compiled snapshots of every gateway and the
// reports gateways sent. Its methods are safe for concurrent use.
//
// A refresh compiles and compares every snapshot with only refreshMu held (refreshes run
// one at a time) and then swaps the results in under mu, so readers (Snapshot, Watch,
// GatewayByAddr, Report, Status) never wait for a compile.
type Server struct {
	cfg   Config
	store *Store
	log   *slog.Logger
	opts  Options
	// storeID is the store's ID (Store.ID), put into every snapshot.
	storeID string

	// refreshMu serialises refreshes; it guards hashes.
	refreshMu sync.Mutex
	// hashes holds, per gateway, the digest of its latest snapshot (snapHasher: every
	// field but Revision): what a recompiled snapshot is compared with.
	hashes map[string][sha256.Size]byte

	// mu guards everything below; it is held only briefly, never during a compile.
	mu sync.Mutex
	// compiledRev is the store revision the snapshots were compiled at (-1: none yet).
	compiledRev int64
	snaps       map[string]*gwSnap
	// byPrefix finds a gateway by its overlay prefix; prefixLens are the prefix lengths
	// in use (one, in practice), longest first.
	byPrefix   map[netip.Prefix]string
	prefixLens []int
	// wake holds, per gateway that someone waits for, a channel closed (and removed) when
	// that gateway's snapshot changes, appears or disappears.
	wake      map[string]chan struct{}
	reports   map[string]api.Report
	peerStats func() map[string]PeerStats
	// polls holds, per gateway, its waiting /v1/sync long polls, oldest first.
	polls map[string][]*poll
}

// gwSnap is the current snapshot of one gateway and, computed once on first use, its
// encoding as the sync endpoint sends it.
type gwSnap struct {
	snap *api.Snapshot
	once sync.Once
	body []byte
	err  error
}

// encoded returns the JSON the sync endpoint answers with (compact, newline-terminated).
func (g *gwSnap) encoded() ([]byte, error) {
	g.once.Do(func() {
		var b bytes.Buffer
		g.err = json.NewEncoder(&b).Encode(g.snap)
		g.body = b.Bytes()
	})
	return g.body, g.err
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
	if opts.MaxPollsPerGateway <= 0 {
		opts.MaxPollsPerGateway = DefaultMaxPollsPerGateway
	}
	id, err := store.ID()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: store.cfg, store: store, log: opts.Logger, opts: opts, storeID: id,
		hashes: map[string][sha256.Size]byte{}, snaps: map[string]*gwSnap{}, byPrefix: map[netip.Prefix]string{},
		wake: map[string]chan struct{}{}, reports: map[string]api.Report{}, compiledRev: -1,
		polls: map[string][]*poll{}}
	if err := s.refresh(); err != nil {
		return nil, err
	}
	return s, nil
}

// StoreID returns the ID of the store the snapshots are compiled from (Store.ID).
func (s *Server) StoreID() string { return s.storeID }

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
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	st, err := s.store.loadShared()
	if err != nil {
		return err
	}
	s.mu.Lock()
	done := st.Revision <= s.compiledRev
	s.mu.Unlock()
	if done {
		return nil // an earlier refresh already compiled this or a later revision
	}
	objs := make([]api.Object, 0, len(st.Objects))
	for _, o := range st.Objects {
		objs = append(objs, o)
	}
	t0 := time.Now()
	next := Compile(objs, st.IPAM, s.cfg)
	observeCompile(time.Since(t0))
	objs = nil

	// Compare outside mu: only refresh writes hashes, and refreshMu is held.
	hashes := make(map[string][sha256.Size]byte, len(next))
	changed := map[string]*api.Snapshot{} // new or changed snapshots
	var h snapHasher
	for gw, snap := range next {
		snap.StoreID = s.storeID
		sum := h.sum(snap)
		hashes[gw] = sum
		if prev, ok := s.hashes[gw]; ok && prev == sum {
			continue
		}
		snap.Revision = st.Revision
		changed[gw] = snap
		s.log.Info("snapshot changed", "gateway", gw, "revision", st.Revision)
	}
	var removed []string
	for gw := range s.hashes {
		if _, ok := next[gw]; !ok {
			removed = append(removed, gw)
		}
	}
	s.hashes = hashes

	s.mu.Lock()
	defer s.mu.Unlock()
	for gw, snap := range changed {
		s.snaps[gw] = &gwSnap{snap: snap}
		s.wakeLocked(gw)
	}
	for _, gw := range removed {
		delete(s.snaps, gw)
		s.wakeLocked(gw)
	}
	if len(changed) > 0 || len(removed) > 0 {
		s.indexPrefixesLocked()
	}
	s.compiledRev = st.Revision
	return nil
}

// wakeLocked wakes the watchers of gw. s.mu is held.
func (s *Server) wakeLocked(gw string) {
	if ch, ok := s.wake[gw]; ok {
		close(ch)
		delete(s.wake, gw)
	}
}

// indexPrefixesLocked rebuilds byPrefix and prefixLens from snaps. s.mu is held.
func (s *Server) indexPrefixesLocked() {
	byPrefix := make(map[netip.Prefix]string, len(s.snaps))
	var lens []int
	// Sorted names: should two gateways ever have the same prefix, the first by name wins.
	for _, gw := range sortedKeys(s.snaps) {
		p := s.snaps[gw].snap.OverlayPrefix
		if !p.IsValid() {
			continue
		}
		p = p.Masked()
		if _, dup := byPrefix[p]; !dup {
			byPrefix[p] = gw
		}
		if !slices.Contains(lens, p.Bits()) {
			lens = append(lens, p.Bits())
		}
	}
	slices.SortFunc(lens, func(a, b int) int { return b - a })
	s.byPrefix, s.prefixLens = byPrefix, lens
}

// Snapshot returns the latest compiled snapshot of a gateway. It is shared: do not modify.
func (s *Server) Snapshot(gateway string) (*api.Snapshot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.snaps[gateway]
	if !ok {
		return nil, false
	}
	return g.snap, true
}

// current reports whether a caller that holds revision since of store storeID ("": not
// known) is up to date with g (nil: no snapshot yet, so it is).
func (s *Server) current(g *gwSnap, since int64, storeID string) bool {
	if g == nil {
		return true
	}
	return g.snap.Revision == since && (storeID == "" || storeID == s.storeID)
}

// watch waits until the snapshot of gateway differs from what the caller holds (see
// current) and returns its entry, or returns ctx's error.
func (s *Server) watch(ctx context.Context, gateway string, since int64, storeID string) (*gwSnap, error) {
	for {
		s.mu.Lock()
		g := s.snaps[gateway]
		if !s.current(g, since, storeID) {
			s.mu.Unlock()
			return g, nil
		}
		ch, ok := s.wake[gateway]
		if !ok {
			ch = make(chan struct{})
			s.wake[gateway] = ch
		}
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Watch waits until the snapshot of gateway has a Revision different from since — greater,
// or lower after the store was reset or restored (its StoreID differs then) — and returns
// it (shared: do not modify), or returns ctx's error. It returns at once when the current
// snapshot's Revision is not since, so a caller must pass the revision it holds (applied),
// not one it failed to apply, or it gets the same snapshot again at once. The hub's own
// node uses it in-process; edges reach it through /v1/sync. Only a change of this
// gateway's snapshot wakes it.
func (s *Server) Watch(ctx context.Context, gateway string, since int64) (*api.Snapshot, error) {
	g, err := s.watch(ctx, gateway, since, "")
	if err != nil {
		return nil, err
	}
	return g.snap, nil
}

// GatewayByAddr returns the gateway whose overlay prefix holds addr: the identity of a
// sync caller (WireGuard's cryptokey routing authenticated the prefix).
func (s *Server) GatewayByAddr(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, bits := range s.prefixLens {
		p, err := addr.Prefix(bits)
		if err != nil {
			continue
		}
		if gw, ok := s.byPrefix[p]; ok {
			return gw, true
		}
	}
	return "", false
}

// Report records a gateway's report.
func (s *Server) Report(gateway string, r api.Report) {
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
	countWrite(err)
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

// reportFresh is how long a report keeps a gateway without peer statistics "connected".
func (s *Server) reportFresh() time.Duration { return 3 * s.opts.SyncTimeout }

// Status returns every gateway's applied and latest revisions, peer statistics and report.
func (s *Server) Status() (*api.StatusReport, error) {
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
	out := &api.StatusReport{Revision: st.Revision, Gateways: []api.GatewayStatus{}}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range st.List(api.KindEGateway) {
		g := o.(*api.EGateway)
		n := g.Metadata.Name
		gs := api.GatewayStatus{Name: n, Site: g.ESiteName, Hub: n == s.cfg.HubGateway}
		if p, ok := st.IPAM.Gateways[n]; ok {
			gs.OverlayPrefix = p.String()
		}
		if g, ok := s.snaps[n]; ok {
			gs.LatestRevision = g.snap.Revision
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
