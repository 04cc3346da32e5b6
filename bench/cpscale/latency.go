package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
	"github.com/egw-project/egw/internal/etcdmember"
	"github.com/egw-project/egw/nat"
)

// Sync modes: how the simulated agents follow their snapshots.
const (
	// modeHTTP: gateway.SyncClient long-polls controlplane.SyncHandler served over HTTP on
	// 127.0.0.1 — the real sync path minus WireGuard. The handler knows a caller by its
	// overlay source address, which loopback cannot give, so each client's transport sends
	// its gateway's overlay IP in identityHeader and a wrapper in front of the handler puts
	// it into RemoteAddr (what WireGuard's cryptokey routing vouches for in production).
	modeHTTP = "http"
	// modeWatch: each agent calls controlplane.Server.Watch in-process (as the hub's own
	// node does): the control plane's own latency without HTTP and JSON.
	modeWatch = "watch"
	// modeEtcd2: two control-plane replicas on one etcd (an embedded member in this
	// process, internal/etcdmember): the policy change is written through replica 1 and the
	// agents long-poll replica 2 over HTTP as in modeHTTP, so the figure includes etcd's
	// commit, its watch and replica 2 applying the change to its model by key.
	modeEtcd2 = "etcd2"
)

// maxEtcd2Gateways bounds the gateway counts modeEtcd2 runs at (the figure is at
// 100; the world is applied in pieces within etcd's 128 operations per transaction).
const maxEtcd2Gateways = 1000

// identityHeader carries a simulated agent's overlay source address (modeHTTP only).
const identityHeader = "X-Cpscale-Overlay-Source"

// latencyResult is what one (gateways, mode) run measured.
type latencyResult struct {
	Gateways int
	Mode     string
	// Allow and Revoke hold, per repetition, the time from just before Server.Apply of the
	// policy change until the last gateway's engine enforced it.
	Allow, Revoke []time.Duration
	// PerGateway holds every gateway's own latency over all repetitions (both directions).
	PerGateway []time.Duration
	// Write holds how long each Server.Apply took (store transaction + recompile of every
	// snapshot), the part of the latency spent before any agent can be woken.
	Write []time.Duration
	// CPU holds, per change, the CPU time the whole process (control plane and every
	// agent) used from the change until the last gateway enforced it: unlike the wall
	// times, it hardly depends on how busy the machine is.
	CPU []time.Duration
	// UnrelatedWoken counts gateways whose snapshot moved on a write that concerns none.
	UnrelatedWoken int
	// ApplyErrors counts snapshots an engine refused (should be 0).
	ApplyErrors int64
}

// agent is one simulated edge gateway: a nat.Engine fed by the sync path.
type agent struct {
	idx     int
	gw      string
	overlay netip.Addr // the gateway's overlay IP (its identity towards the sync server)
	engine  *nat.Engine
	snap    atomic.Pointer[api.Snapshot]
	cur     *atomic.Pointer[trial]
	applies atomic.Int64
	errs    atomic.Int64
	lastErr atomic.Pointer[error]
}

// trial is one policy change being timed.
type trial struct {
	start    time.Time
	wantPass bool // allow: enforced once the probe passes; revoke: once it is dropped
	done     []atomic.Bool
	lat      []time.Duration // lat[i] written once by agent i before wg.Done
	wg       sync.WaitGroup
}

func newTrial(n int, wantPass bool) *trial {
	t := &trial{wantPass: wantPass, done: make([]atomic.Bool, n), lat: make([]time.Duration, n)}
	t.wg.Add(n)
	return t
}

// apply is the agent's snapshot handler: the engine's tables, then the enforcement check
// of the trial under way, if any.
func (a *agent) apply(s *api.Snapshot) error {
	if err := a.engine.Apply(s); err != nil {
		a.errs.Add(1)
		a.lastErr.Store(&err)
		return err
	}
	a.snap.Store(s)
	a.applies.Add(1)
	if tr := a.cur.Load(); tr != nil && !tr.done[a.idx].Load() {
		if res, err := a.probe(newClientIP); err == nil && (res.Action != nat.Drop) == tr.wantPass {
			if tr.done[a.idx].CompareAndSwap(false, true) {
				tr.lat[a.idx] = time.Since(tr.start)
				tr.wg.Done()
			}
		}
	}
	return nil
}

// probe feeds the engine a TCP SYN from client (an address at the agent's site) to the
// probe service's VIP, as if read from vp0, and returns the engine's verdict.
func (a *agent) probe(client netip.Addr) (nat.Result, error) {
	s := a.snap.Load()
	if s == nil {
		return nat.Result{}, fmt.Errorf("%s: no snapshot applied", a.gw)
	}
	var vip netip.Addr
	for _, v := range s.VIPs {
		if v.Service == probeService {
			vip = v.VIP
			break
		}
	}
	if !vip.IsValid() {
		return nat.Result{}, fmt.Errorf("%s: snapshot %d has no VIP of %s", a.gw, s.Revision, probeService)
	}
	var buf [synLen]byte
	var reply [128]byte
	pkt := buildSYN(buf[:], client, vip, 40000, probePort)
	return a.engine.FromSite(pkt, reply[:]), nil
}

// runLatency builds a control plane in dir with n edge gateways, starts one agent per
// gateway following its snapshot in mode, and times reps policy changes that allow the
// new client nN at every site and reps that revoke it again.
func runLatency(ctx context.Context, dir string, n int, mode string, reps int) (*latencyResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// srv takes the writes; syncer serves the agents (another replica in modeEtcd2).
	var srv, syncer *controlplane.Server
	if mode == modeEtcd2 {
		w, r, closeAll, err := etcdReplicas(ctx, filepath.Join(dir, fmt.Sprintf("latency-%s-%d", mode, n)))
		if err != nil {
			return nil, err
		}
		defer closeAll()
		srv, syncer = w, r
	} else {
		store, err := controlplane.Open(filepath.Join(dir, fmt.Sprintf("latency-%s-%d", mode, n)), cpConfig())
		if err != nil {
			return nil, err
		}
		defer store.Close()
		if srv, err = controlplane.NewServer(store, controlplane.Options{}); err != nil {
			return nil, err
		}
		syncer = srv
	}
	if err := srv.EnsureHub(hubVPCIDR, "", ""); err != nil {
		return nil, fmt.Errorf("registering the hub: %w", err)
	}
	if mode == modeEtcd2 {
		if err := applyInPieces(srv, latencyWorld(n)); err != nil {
			return nil, fmt.Errorf("applying the world of %d gateways: %w", n, err)
		}
	} else if _, _, err := srv.Apply(latencyWorld(n)); err != nil {
		return nil, fmt.Errorf("applying the world of %d gateways: %w", n, err)
	}
	// The syncing replica has compiled what the writing one did.
	if err := waitFor(ctx, 60*time.Second, func() error {
		for i := range n {
			w, ok1 := srv.Snapshot(gwName(i))
			r, ok2 := syncer.Snapshot(gwName(i))
			if !ok1 || !ok2 || w.Revision != r.Revision {
				return fmt.Errorf("%s: the syncing replica is not at the writer's snapshot", gwName(i))
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}

	var cur atomic.Pointer[trial]
	agents := make([]*agent, n)
	for i := range n {
		snap, ok := syncer.Snapshot(gwName(i))
		if !ok {
			return nil, fmt.Errorf("no snapshot compiled for %s", gwName(i))
		}
		agents[i] = &agent{idx: i, gw: gwName(i), overlay: snap.OverlayIP, cur: &cur,
			engine: nat.NewEngine(nat.Config{})}
	}
	discard := slog.New(slog.DiscardHandler)
	switch mode {
	case modeWatch:
		for _, a := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var since int64
				for {
					s, err := syncer.Watch(ctx, a.gw, since)
					if err != nil {
						return
					}
					if a.apply(s) == nil {
						since = s.Revision
						syncer.Report(a.gw, api.Report{AppliedRevision: s.Revision})
					}
				}
			}()
		}
	case modeHTTP, modeEtcd2:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		hs := &http.Server{Handler: injectIdentity(syncer.SyncHandler()), ReadHeaderTimeout: 10 * time.Second}
		go hs.Serve(ln)
		defer hs.Close()
		addr := netip.MustParseAddrPort(ln.Addr().String())
		for _, a := range agents {
			sc := gateway.NewSyncClient(addr, netip.Addr{}, discard)
			sc.HTTP.Transport = &identityTransport{base: sc.HTTP.Transport, src: a.overlay}
			sc.Apply = a.apply
			sc.Report = func() any { return api.Report{AppliedRevision: a.engine.Revision()} }
			sc.MinBackoff = 50 * time.Millisecond
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc.Run(ctx, 0)
			}()
		}
	default:
		return nil, fmt.Errorf("unknown sync mode %q (want %s, %s or %s)", mode, modeHTTP, modeWatch, modeEtcd2)
	}

	// Every agent applies its first snapshot.
	if err := waitFor(ctx, 60*time.Second, func() error {
		for _, a := range agents {
			want, _ := syncer.Snapshot(a.gw)
			if got := a.engine.Revision(); got != want.Revision {
				return fmt.Errorf("%s applied revision %d of %d", a.gw, got, want.Revision)
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("initial sync: %w", firstAgentError(agents, err))
	}

	res := &latencyResult{Gateways: n, Mode: mode}
	// The new clients: no policy names them, so no snapshot may move.
	before := revisions(srv, agents)
	if _, _, err := srv.Apply(newServers(n)); err != nil {
		return nil, fmt.Errorf("adding the new servers: %w", err)
	}
	for i, r := range revisions(srv, agents) {
		if r != before[i] {
			res.UnrelatedWoken++
		}
	}
	// Before the change the probe must be denied for the client, at every gateway.
	for _, a := range agents {
		r, err := a.probe(newClientIP)
		if err != nil {
			return nil, err
		}
		if r.Action != nat.Drop || r.Reason != nat.ReasonDeniedClient {
			return nil, fmt.Errorf("%s: probe from the not-yet-allowed client: %v/%v, want drop/%v", a.gw, r.Action, r.Reason, nat.ReasonDeniedClient)
		}
	}

	for range reps {
		for _, allow := range []bool{true, false} {
			lat, write, cpu, err := timeChange(ctx, srv, agents, &cur, n, allow)
			if err != nil {
				return nil, err
			}
			if allow {
				res.Allow = append(res.Allow, slices.Max(lat))
			} else {
				res.Revoke = append(res.Revoke, slices.Max(lat))
			}
			res.PerGateway = append(res.PerGateway, lat...)
			res.Write = append(res.Write, write)
			res.CPU = append(res.CPU, cpu)
		}
	}
	for _, a := range agents {
		res.ApplyErrors += a.errs.Load()
	}
	return res, nil
}

// timeChange applies basePolicy with (allow) or without nN and waits until every agent's
// engine enforces it; it returns each agent's latency, how long Server.Apply took and the
// CPU time the process used until then.
func timeChange(ctx context.Context, srv *controlplane.Server, agents []*agent, cur *atomic.Pointer[trial], n int, allow bool) (lat []time.Duration, write, cpu time.Duration, err error) {
	tr := newTrial(n, allow)
	pol := []api.Object{basePolicyWith(n, allow)}
	cpu0 := cpuTime()
	tr.start = time.Now()
	cur.Store(tr)
	if _, _, err := srv.Apply(pol); err != nil {
		return nil, 0, 0, fmt.Errorf("policy change: %w", err)
	}
	write = time.Since(tr.start)
	done := make(chan struct{})
	go func() { tr.wg.Wait(); close(done) }()
	select {
	case <-done:
		cpu = cpuTime() - cpu0
	case <-time.After(30 * time.Second):
		missing := 0
		for i := range tr.done {
			if !tr.done[i].Load() {
				missing++
			}
		}
		cur.Store(nil)
		return nil, 0, 0, fmt.Errorf("policy change (allow=%v) not enforced at %d of %d gateways after 30s", allow, missing, n)
	case <-ctx.Done():
		return nil, 0, 0, ctx.Err()
	}
	cur.Store(nil)
	// Double-check from outside the agents: every engine now decides as required.
	for _, a := range agents {
		r, err := a.probe(newClientIP)
		if err != nil {
			return nil, 0, 0, err
		}
		if allow && r.Action == nat.Drop || !allow && r.Reason != nat.ReasonDeniedClient {
			return nil, 0, 0, fmt.Errorf("%s: after the change (allow=%v) the probe got %v/%v", a.gw, allow, r.Action, r.Reason)
		}
	}
	return tr.lat, write, cpu, nil
}

func revisions(srv *controlplane.Server, agents []*agent) []int64 {
	out := make([]int64, len(agents))
	for i, a := range agents {
		s, _ := srv.Snapshot(a.gw)
		out[i] = s.Revision
	}
	return out
}

func firstAgentError(agents []*agent, err error) error {
	for _, a := range agents {
		if e := a.lastErr.Load(); e != nil {
			return fmt.Errorf("%w (%s: %v)", err, a.gw, *e)
		}
	}
	return err
}

// waitFor polls cond every 5 ms until it returns nil, or returns its last error after
// timeout.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// injectIdentity puts the overlay source address an agent sends in identityHeader into
// RemoteAddr, standing in for WireGuard (see modeHTTP). A request without one is refused.
func injectIdentity(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		src, err := netip.ParseAddr(r.Header.Get(identityHeader))
		if err != nil {
			http.Error(w, "cpscale: missing or bad "+identityHeader, http.StatusForbidden)
			return
		}
		r.RemoteAddr = netip.AddrPortFrom(src, 40000).String()
		h.ServeHTTP(w, r)
	})
}

// identityTransport adds identityHeader to every request of one agent.
type identityTransport struct {
	base http.RoundTripper
	src  netip.Addr
}

func (t *identityTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(identityHeader, t.src.String())
	return t.base.RoundTrip(r)
}

// etcdReplicas starts an etcd member in dir and two control-plane replicas on it: w takes
// the writes, r follows it (Server.Follow). closeAll stops them all.
func etcdReplicas(ctx context.Context, dir string) (w, r *controlplane.Server, closeAll func(), err error) {
	m, err := etcdmember.Start(etcdmember.Options{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("etcd member: %w", err)
	}
	var closers []func() error
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
		m.Close()
	}
	var srvs [2]*controlplane.Server
	for i := range srvs {
		b, err := controlplane.OpenEtcd(controlplane.EtcdOptions{Endpoints: []string{m.ClientURL}})
		if err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		store := controlplane.NewStore(b, cpConfig())
		closers = append(closers, store.Close)
		if srvs[i], err = controlplane.NewServer(store, controlplane.Options{}); err != nil {
			closeAll()
			return nil, nil, nil, err
		}
		srvs[i].Follow(ctx)
	}
	return srvs[0], srvs[1], closeAll, nil
}

// applyInPieces applies objs a few at a time, and each exposure alone, to 40 more sites
// at a time: each write stays within etcd's 128 operations per transaction (two per
// managed VirtualPresence).
func applyInPieces(srv *controlplane.Server, objs []api.Object) error {
	var batch []api.Object
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		_, _, err := srv.Apply(batch)
		batch = nil
		return err
	}
	for _, o := range objs {
		if e, ok := o.(*api.ServiceExpose); ok {
			if err := flush(); err != nil {
				return err
			}
			for k := 40; ; k += 40 {
				c := api.DeepCopy(e).(*api.ServiceExpose)
				c.ESites = e.ESites[:min(k, len(e.ESites))]
				if _, _, err := srv.Apply([]api.Object{c}); err != nil {
					return err
				}
				if k >= len(e.ESites) {
					break
				}
			}
			continue
		}
		batch = append(batch, o)
		if len(batch) == 20 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
