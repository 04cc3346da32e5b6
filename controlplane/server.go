package controlplane

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	// KeepDecoded is how many gateways' snapshots are kept decoded (as structs, encoded
	// once when first sent); with more gateways than that, edges' snapshots are kept
	// gzipped only (default DefaultKeepDecoded; negative: always gzipped).
	KeepDecoded int
}

// DefaultKeepDecoded is Options.KeepDecoded's default: up to 2,000 gateways (~70 MB of
// decoded snapshots) they are kept decoded, which spares the in-process watchers a decode;
// beyond, kept gzipped (10,000 gateways: ~25 MB instead of ~350 MB).
const DefaultKeepDecoded = 2000

// DefaultMaxPollsPerGateway is how many sync long polls one gateway may have waiting.
const DefaultMaxPollsPerGateway = 4

// DefaultSyncTimeout is how long a sync long-poll waits by default.
const DefaultSyncTimeout = 30 * time.Second

// Server is the control plane: the store, the compiled snapshots of every gateway and the
// reports gateways sent. Its methods are safe for concurrent use.
//
// A refresh compiles and compares the affected snapshots with refreshMu held (refreshes
// run one at a time) and the store's read lock, and then swaps the results in under mu,
// so readers of the snapshots (Snapshot, Watch, GatewayByAddr, Report) never wait for a
// compile.
type Server struct {
	cfg   Config
	store *Store
	log   *slog.Logger
	opts  Options
	// storeID is the store's ID (Store.ID), put into every snapshot.
	storeID string

	// refreshMu serialises refreshes; it guards hashes and hub.
	refreshMu sync.Mutex
	// hashes holds, per gateway, the digest of its latest snapshot (snapHasher: every
	// field but Revision): what a recompiled snapshot is compared with.
	hashes map[string][sha256.Size]byte
	// hub holds the parts the hub's snapshot is assembled from (see refresh.go).
	hub *hubParts
	// gzipped: edges' snapshots are kept gzipped (Options.KeepDecoded).
	gzipped bool
	// work counts what the refreshes did.
	work workCounters

	// mu guards everything below; it is held only briefly, never during a compile.
	mu sync.Mutex
	// compiledRev is the store revision the snapshots were compiled at (-1: none yet).
	compiledRev int64
	snaps       map[string]*gwSnap
	// byPrefix finds a gateway by its overlay prefix; prefixLens are the prefix lengths
	// in use (one, in practice), longest first.
	byPrefix   map[netip.Prefix]string
	prefixLens []int
	// lenCount counts the snapshots' prefixes by length (what prefixLens lists).
	lenCount map[int]int
	// wake holds, per gateway that someone waits for, a channel closed (and removed) when
	// that gateway's snapshot changes, appears or disappears.
	wake    map[string]chan struct{}
	reports map[string]api.Report
	// shared stores the reports for the other replicas (reports.go).
	shared    sharedReports
	peerStats func() map[string]PeerStats
	// polls holds, per gateway, its waiting /v1/sync long polls, oldest first.
	polls map[string][]*poll

	// epMu guards the endpoint changes not yet stored and whether a goroutine is storing
	// them (see queueEndpoints).
	epMu       sync.Mutex
	epPending  map[string]endpointChange
	epFlushing bool
	// epIdle, if set, is closed (and cleared) when the flusher finds nothing more to do.
	epIdle chan struct{}

	// lc: join tokens, enrollment and revocation (lifecycle.go).
	lc lifecycle
	// ready is closed once the first snapshots are compiled.
	ready     chan struct{}
	readyOnce sync.Once
}

// gwSnap is the current snapshot of one gateway. The hub's is kept as it is (its own node
// follows it in-process) and encoded once, on first request; so are the others in a fleet
// of at most Options.KeepDecoded gateways. In a larger one an edge's is kept only as its
// gzipped JSON encoding, which is what the sync endpoint sends (10,000 edges' snapshots
// take ~25 MB so instead of ~350 MB), and decoded when asked for (Snapshot, Watch).
type gwSnap struct {
	rev    int64
	prefix netip.Prefix
	snap   *api.Snapshot // nil for an edge
	gz     []byte        // an edge's encoding, gzipped

	once sync.Once
	body []byte
	err  error
}

// newGwSnap makes the entry of snap: kept as it is if keep, else encoded and gzipped.
func newGwSnap(snap *api.Snapshot, keep bool) (*gwSnap, error) {
	g := &gwSnap{rev: snap.Revision, prefix: snap.OverlayPrefix, snap: snap}
	if keep {
		return g, nil
	}
	gz, err := gzipJSON(snap)
	if err != nil {
		return nil, err
	}
	g.snap, g.gz = nil, gz
	return g, nil
}

// gzipWriters reuses gzip writers (their state is ~800 KB).
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

// gzipJSON returns the JSON encoding of v (compact, newline-terminated), gzipped.
func gzipJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(&b)
	if err := json.NewEncoder(zw).Encode(v); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return bytes.Clone(b.Bytes()), nil
}

// encoded returns the JSON encoding of a kept snapshot (the hub's; compact,
// newline-terminated), made once.
func (g *gwSnap) encoded() ([]byte, error) {
	g.once.Do(func() {
		var b bytes.Buffer
		g.err = json.NewEncoder(&b).Encode(g.snap)
		g.body = b.Bytes()
	})
	return g.body, g.err
}

// plain returns the JSON encoding without keeping it (an edge's is decompressed anew).
func (g *gwSnap) plain() ([]byte, error) {
	if g.snap != nil {
		return g.encoded()
	}
	zr, err := gzip.NewReader(bytes.NewReader(g.gz))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// snapshot returns the snapshot: the hub's shared one, or an edge's decoded anew.
func (g *gwSnap) snapshot() (*api.Snapshot, error) {
	if g.snap != nil {
		return g.snap, nil
	}
	body, err := g.plain()
	if err != nil {
		return nil, err
	}
	var snap api.Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		return nil, err
	}
	return &snap, nil
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
	if opts.KeepDecoded == 0 {
		opts.KeepDecoded = DefaultKeepDecoded
	}
	id, err := store.ID()
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: store.cfg, store: store, log: opts.Logger, opts: opts, storeID: id,
		hashes: map[string][sha256.Size]byte{}, snaps: map[string]*gwSnap{}, byPrefix: map[netip.Prefix]string{},
		lenCount: map[int]int{}, hub: newHubParts(),
		wake: map[string]chan struct{}{}, reports: map[string]api.Report{}, compiledRev: -1,
		polls: map[string][]*poll{}}
	// Load the store now (a broken one fails here); compile every snapshot in the
	// background, so that the admin API serves at once. What needs the snapshots
	// (Snapshot, Watch and the sync API, GatewayByAddr, Status, writes) waits for it.
	if err := store.sync(); err != nil {
		return nil, err
	}
	s.ready = make(chan struct{})
	go func() {
		if err := s.refresh(); err != nil {
			s.log.Error("compiling the snapshots", "err", err)
		}
		s.setReady() // even after a failure: readers see no snapshots then
	}()
	return s, nil
}

// Ready returns a channel closed once the first snapshots are compiled (NewServer
// compiles them in the background).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// waitReady waits until the first snapshots are compiled.
func (s *Server) waitReady() { <-s.ready }

// setReady closes ready (once): by the first refresh that compiled, whoever ran it.
func (s *Server) setReady() { s.readyOnce.Do(func() { close(s.ready) }) }

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

// Refresh brings the snapshots up to date with the store: the changes written through the
// Store since the last refresh, or everything if the store was reloaded (another process
// or replica wrote).
func (s *Server) Refresh() error { return s.refresh() }

// wakeLocked wakes the watchers of gw. s.mu is held.
func (s *Server) wakeLocked(gw string) {
	if ch, ok := s.wake[gw]; ok {
		close(ch)
		delete(s.wake, gw)
	}
}

// Snapshot returns the latest compiled snapshot of a gateway. It may be shared: do not
// modify it.
func (s *Server) Snapshot(gateway string) (*api.Snapshot, bool) {
	s.waitReady()
	s.mu.Lock()
	g, ok := s.snaps[gateway]
	s.mu.Unlock()
	if !ok {
		return nil, false
	}
	snap, err := g.snapshot()
	if err != nil {
		s.log.Error("decoding a kept snapshot", "gateway", gateway, "err", err)
		return nil, false
	}
	return snap, true
}

// SnapshotRevision returns the revision of the latest compiled snapshot of a gateway.
func (s *Server) SnapshotRevision(gateway string) (int64, bool) {
	s.waitReady()
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.snaps[gateway]
	if !ok {
		return 0, false
	}
	return g.rev, true
}

// current reports whether a caller that holds revision since of store storeID ("": not
// known) is up to date with g (nil: no snapshot yet, so it is).
func (s *Server) current(g *gwSnap, since int64, storeID string) bool {
	if g == nil {
		return true
	}
	return g.rev == since && (storeID == "" || storeID == s.storeID)
}

// watch waits until the snapshot of gateway differs from what the caller holds (see
// current) and returns its entry, or returns ctx's error.
func (s *Server) watch(ctx context.Context, gateway string, since int64, storeID string) (*gwSnap, error) {
	select {
	case <-s.ready:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
	return g.snapshot()
}

// GatewayByAddr returns the gateway whose overlay prefix holds addr: the identity of a
// sync caller (WireGuard's cryptokey routing authenticated the prefix).
func (s *Server) GatewayByAddr(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	if !addr.IsValid() {
		return "", false
	}
	s.waitReady()
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

// MaxReportPaths bounds the paths kept from one report (api.Report.Paths).
const MaxReportPaths = 1024

// maxReportDrops and maxReportPools bound the drop reasons and lease pools kept from one
// report (a gateway has a handful of each).
const (
	maxReportDrops = 64
	maxReportPools = 8
)

// boundDrops keeps the maxReportDrops reasons first by name, of at most 64 characters.
func boundDrops(d map[string]uint64) map[string]uint64 {
	keys := sortedKeys(d)
	out := make(map[string]uint64, min(len(keys), maxReportDrops))
	for _, k := range keys {
		if len(out) == maxReportDrops {
			break
		}
		if len(k) <= 64 {
			out[k] = d[k]
		}
	}
	return out
}

// cleanPaths keeps, of the paths gateway reported, at most MaxReportPaths to gateways that
// exist (not itself), each once, with a mode of "direct" or "relayed" ("unknown"
// otherwise) and an endpoint that parses: what a report can make the server keep is
// bounded by the fleet, not by what an edge sends.
func (s *Server) cleanPaths(gateway string, paths []api.PathStatus) []api.PathStatus {
	if len(paths) == 0 {
		return nil
	}
	var out []api.PathStatus
	seen := map[string]bool{}
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	m := s.store.m
	for _, p := range paths {
		if len(out) == MaxReportPaths {
			break
		}
		if m == nil || p.Peer == gateway || seen[p.Peer] {
			continue
		}
		g, ok := m.gateways[p.Peer]
		if !ok {
			continue
		}
		seen[p.Peer] = true
		p.Peer = g.Metadata.Name // the model's string, not the report's
		switch p.Mode {
		case "direct":
			p.Mode = "direct"
		case "relayed":
			p.Mode = "relayed"
		default:
			p.Mode = "unknown"
		}
		if ap, err := netip.ParseAddrPort(p.Endpoint); err == nil {
			p.Endpoint = ap.String()
		} else {
			p.Endpoint = ""
		}
		if p.RTTMS < 0 || p.RTTMS > 1e6 {
			p.RTTMS = 0
		}
		out = append(out, p)
	}
	return out
}

// Report records a gateway's report. Its LAN candidates are stored (when they changed) and
// reach the gateway's linked peers through their snapshots; its paths are kept in memory
// and shown by Status.
func (s *Server) Report(gateway string, r api.Report) {
	r.Gateway = gateway
	r.Received = s.opts.Now()
	cands := cleanCandidates(r.Candidates)
	r.Candidates = cands
	r.Paths = s.cleanPaths(gateway, r.Paths)
	if len(r.Drops) > 0 {
		r.Drops = boundDrops(r.Drops)
	}
	r.Leases = r.Leases[:min(len(r.Leases), maxReportPools)]
	s.mu.Lock()
	s.reports[gateway] = r
	s.mu.Unlock()
	s.markReport(gateway)
	s.queueEndpoints(gateway, endpointChange{reported: cands, setReported: true})
}

// SetObservedEndpoint records the UDP endpoint the hub's WireGuard currently sees for
// gateway (its public endpoint, behind whatever NAT): the hub's data plane calls it when
// wireguard-go's endpoint for that peer changes. The endpoint becomes the first of the
// gateway's Candidates in its linked peers' snapshots. An invalid ep forgets it. It does
// not block on the store: changes are stored (one transaction for all that queued up,
// only when something changed) by a goroutine of their own.
func (s *Server) SetObservedEndpoint(gateway string, ep netip.AddrPort) {
	ep = netip.AddrPortFrom(ep.Addr().Unmap().WithZone(""), ep.Port())
	if !usableEndpoint(ep) {
		ep = netip.AddrPort{}
	}
	s.queueEndpoints(gateway, endpointChange{observed: ep, setObserved: true})
}

// queueEndpoints queues a change of gateway's endpoints unless the store has them already,
// and starts the goroutine that stores queued changes if none runs.
func (s *Server) queueEndpoints(gateway string, c endpointChange) {
	s.epMu.Lock()
	defer s.epMu.Unlock()
	p, queued := s.epPending[gateway]
	if !queued {
		cur := s.store.endpointsOf(gateway)
		if (!c.setObserved || cur.Observed == c.observed) && (!c.setReported || slices.Equal(cur.Reported, c.reported)) {
			return // nothing new
		}
	}
	if c.setObserved {
		p.observed, p.setObserved = c.observed, true
	}
	if c.setReported {
		p.reported, p.setReported = c.reported, true
	}
	if s.epPending == nil {
		s.epPending = map[string]endpointChange{}
	}
	s.epPending[gateway] = p
	if !s.epFlushing {
		s.epFlushing = true
		go s.flushEndpoints()
	}
}

// flushEndpoints stores the queued endpoint changes, in one transaction per round, until
// none are left, and recompiles the snapshots.
func (s *Server) flushEndpoints() {
	for {
		s.epMu.Lock()
		batch := s.epPending
		s.epPending = nil
		if len(batch) == 0 {
			s.epFlushing = false
			if s.epIdle != nil {
				close(s.epIdle)
				s.epIdle = nil
			}
			s.epMu.Unlock()
			return
		}
		s.epMu.Unlock()
		rev, err := s.store.setEndpoints(batch)
		if err != nil {
			s.log.Error("storing gateway endpoints", "gateways", len(batch), "err", err)
			continue
		}
		if rev == 0 {
			continue
		}
		if err := s.refresh(); err != nil {
			s.log.Error("compiling snapshots", "err", err)
		}
	}
}

// endpointsIdle returns a channel closed once no endpoint change is queued or being
// stored.
func (s *Server) endpointsIdle() <-chan struct{} {
	s.epMu.Lock()
	defer s.epMu.Unlock()
	if !s.epFlushing {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	if s.epIdle == nil {
		s.epIdle = make(chan struct{})
	}
	return s.epIdle
}

// Apply, Create, Update, Delete and DeleteAll write through the store and recompile.

func (s *Server) Apply(objs []api.Object) (int64, []Result, error) {
	if err := s.refuseRevokedKeys(objs...); err != nil {
		return 0, nil, err
	}
	rev, res, err := s.store.Apply(objs)
	return rev, res, s.after(err)
}

func (s *Server) Create(o api.Object) (api.Object, error) {
	if err := s.refuseRevokedKeys(o); err != nil {
		return nil, err
	}
	o, err := s.store.Create(o)
	return o, s.after(err)
}

func (s *Server) Update(o api.Object, expectedRV int64) (api.Object, error) {
	if err := s.refuseRevokedKeys(o); err != nil {
		return nil, err
	}
	o, err := s.store.Update(o, expectedRV)
	return o, s.after(err)
}

func (s *Server) Delete(kind, name string) (int64, error) {
	rev, _, err := s.DeleteAll([]Ref{{kind, name}})
	return rev, err
}

// DeleteAll deletes refs; a deleted gateway's key is revoked (lifecycle.go).
func (s *Server) DeleteAll(refs []Ref) (int64, []Result, error) {
	keys := s.gatewayKeys(refs)
	rev, res, err := s.store.DeleteAll(refs)
	if err != nil {
		return rev, res, err
	}
	if rerr := s.recordRevoked(keys, s.opts.Now().UTC()); rerr != nil {
		err = fmt.Errorf("deleted, but recording the deleted gateways' keys as revoked failed: %w", rerr)
	}
	return rev, res, errors.Join(s.after(nil), err)
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
	var site, hub api.Object
	err := s.store.read(func(m *model) error {
		site, _ = m.lookup(api.KindESite, s.cfg.HubSite)
		hub, _ = m.lookup(api.KindEGateway, s.cfg.HubGateway)
		return nil
	})
	if err != nil {
		return err
	}
	var objs []api.Object
	if site == nil {
		site, _ := api.New(api.KindESite)
		site.GetMeta().Name = s.cfg.HubSite
		objs = append(objs, site)
	}
	if o := hub; o != nil {
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
	s.waitReady()
	s.mu.Lock()
	statsFn := s.peerStats
	s.mu.Unlock()
	var stats map[string]PeerStats
	if statsFn != nil {
		stats = statsFn()
	}
	now := s.opts.Now()
	out := &api.StatusReport{Gateways: []api.GatewayStatus{}}
	err := s.store.read(func(m *model) error {
		out.Revision = m.rev
		names := m.sortedNames(api.KindEGateway)
		out.Gateways = make([]api.GatewayStatus, 0, len(names))
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, n := range names {
			g := m.gateways[n]
			gs := api.GatewayStatus{Name: n, Site: g.ESiteName, Hub: n == s.cfg.HubGateway}
			if p, ok := m.ipam.Gateways[n]; ok {
				gs.OverlayPrefix = p.String()
			}
			if g, ok := s.snaps[n]; ok {
				gs.LatestRevision = g.rev
			}
			r, reported := s.reports[n]
			if reported {
				gs.LastReport = r.Received
				gs.AppliedRevision = r.AppliedRevision
				gs.Leases = slices.Clone(r.Leases)
				gs.Drops = r.Drops
				gs.Paths = slices.Clone(r.Paths)
			}
			if ps, ok := stats[n]; ok {
				gs.Connected, gs.LastHandshake, gs.RxBytes, gs.TxBytes = ps.Connected, ps.LastHandshake, ps.RxBytes, ps.TxBytes
			} else {
				gs.Connected = reported && now.Sub(r.Received) < s.reportFresh()
			}
			out.Gateways = append(out.Gateways, gs)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
