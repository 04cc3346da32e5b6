package controlplane

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// waitCompiled waits until srv's snapshots are compiled at revision rev.
func waitCompiled(t *testing.T, srv *Server, rev int64) {
	t.Helper()
	waitFor(t, 10*time.Second, func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.compiledRev >= rev
	})
}

// sameState fails unless two Stores hold the same state: objects (with their
// revisions), allocations and endpoints.
func sameState(t *testing.T, step string, a, b *Store) {
	t.Helper()
	sa, err := a.Load()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if sa.Revision != sb.Revision || !sa.IPAM.equal(sb.IPAM) || len(sa.Objects) != len(sb.Objects) || len(sa.Endpoints) != len(sb.Endpoints) {
		t.Fatalf("%s: revision %d vs %d, %d vs %d objects, IPAM equal %v, %d vs %d endpoints", step, sa.Revision, sb.Revision,
			len(sa.Objects), len(sb.Objects), sa.IPAM.equal(sb.IPAM), len(sa.Endpoints), len(sb.Endpoints))
	}
	for k, o := range sa.Objects {
		x, _ := json.Marshal(o)
		y, _ := json.Marshal(sb.Objects[k])
		if string(x) != string(y) {
			t.Fatalf("%s: %s:\n %s\n %s", step, k, x, y)
		}
	}
	for k, e := range sa.Endpoints {
		if !e.equal(sb.Endpoints[k]) {
			t.Fatalf("%s: endpoints of %s: %+v vs %+v", step, k, e, sb.Endpoints[k])
		}
	}
}

// TestReplicasFollowByKeys: two Servers on one etcd, each following the other's writes,
// take random writes, some at the same time (so that transactions lose races and run
// again). After each step both serve exactly what a full compile of the stored state
// gives, both models equal the state read afresh from etcd, and neither replica ever
// reloaded its model whole: the other's writes arrived by their keys.
func TestReplicasFollowByKeys(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	srvs := followingReplicas(t, url, p, cfg)
	if err := srvs[0].EnsureHub("192.168.9.0/24", "", "203.0.113.1:51820"); err != nil {
		t.Fatal(err)
	}
	w := randomWorld{rand.New(rand.NewPCG(11, 7))}
	var wmu sync.Mutex // the world's random source
	randomObjects := func() []api.Object {
		wmu.Lock()
		defer wmu.Unlock()
		var objs []api.Object
		seen := map[string]bool{}
		for range 1 + w.r.IntN(3) {
			o := w.object()
			if !seen[api.Key(o)] {
				seen[api.Key(o)] = true
				objs = append(objs, o)
			}
		}
		return objs
	}
	steps := 60
	if testing.Short() {
		steps = 20
	}
	refused := 0
	for i := range steps {
		step := fmt.Sprintf("step %d", i)
		switch n := w.r.IntN(10); {
		case n < 6:
			srv := srvs[w.r.IntN(2)]
			if _, _, err := srv.Apply(randomObjects()); err != nil {
				refused++
			}
		case n < 8:
			// Both replicas write at once.
			var wg sync.WaitGroup
			for _, srv := range srvs {
				objs := randomObjects()
				wg.Go(func() {
					if _, _, err := srv.Apply(objs); err != nil && codeOf(err) != CodeInvalid && codeOf(err) != CodeConflict {
						t.Errorf("%s: %v", step, err)
					}
				})
			}
			wg.Wait()
		case n < 9:
			st, _ := srvs[0].Store().Load()
			var keys []string
			for k, o := range st.Objects {
				if !isManagedObj(o) && k != "EGateway/cloud-gw" && k != "ESite/cloud" {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			if len(keys) > 0 {
				o := st.Objects[keys[w.r.IntN(len(keys))]]
				if _, err := srvs[1].Delete(o.GetKind(), o.GetMeta().Name); err != nil && !IsNotFound(err) {
					t.Fatalf("%s: %v", step, err)
				}
			}
		default:
			srv := srvs[w.r.IntN(2)]
			gw := w.pick("g", 7)
			ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(w.r.IntN(4))}), uint16(40000+w.r.IntN(3)))
			srv.SetObservedEndpoint(gw, ep)
			waitEndpoints(t, srv)
		}
		rev, err := srvs[0].Store().Revision()
		if err != nil {
			t.Fatal(err)
		}
		for j, srv := range srvs {
			waitCompiled(t, srv, rev)
			checkAgainstFull(t, srv, fmt.Sprintf("%s, replica %d", step, j))
		}
		fresh := openEtcdStore(t, url, p, cfg)
		sameState(t, step+" replica 0", srvs[0].Store(), fresh)
		sameState(t, step+" replica 1", srvs[1].Store(), fresh)
		fresh.Close()
	}
	var conflicts int64
	for j, srv := range srvs {
		applied, reloads := srv.Store().FeedStats()
		if reloads != 0 {
			t.Errorf("replica %d reloaded its model whole %d times", j, reloads)
		}
		if applied == 0 {
			t.Errorf("replica %d applied no write of the other", j)
		}
		conflicts += srv.Store().Backend().(*EtcdBackend).Conflicts()
		t.Logf("replica %d: %d writes of the other applied by key", j, applied)
	}
	t.Logf("%d steps, %d applies refused, %d transactions run again after losing a race", steps, refused, conflicts)
}

// TestReplicaPolicyChangeCompilesOnlyAffected: a policy change written through one
// replica makes the other recompile the same few snapshots, not the fleet.
func TestReplicaPolicyChangeCompilesOnlyAffected(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	srvs := followingReplicas(t, url, p, cfg)
	if err := srvs[0].EnsureHub("192.168.9.0/24", "", ""); err != nil {
		t.Fatal(err)
	}
	// Each site's services are exposed to the next two sites under a policy of its own;
	// applied in batches that fit one etcd transaction.
	const n = 10
	site := func(i int) string { return fmt.Sprintf("s%d", (i+n)%n) }
	for i := range n {
		s := site(i)
		objs := []api.Object{&api.ESite{Metadata: api.ObjectMeta{Name: s}},
			&api.EGateway{Metadata: api.ObjectMeta{Name: "g" + s}, VirtualPresenceIPcidr: "192.168.0.0/24", ESiteName: s},
			&api.EServer{Metadata: api.ObjectMeta{Name: "c" + s}, IP: "10.0.0.20", ESiteName: s},
			&api.EServer{Metadata: api.ObjectMeta{Name: "x" + s}, IP: "10.0.0.21", ESiteName: s},
			&api.EPolicy{Metadata: api.ObjectMeta{Name: "p" + s}, AllowedServers: []string{"c" + site(i+1), "c" + site(i+2)}}}
		if _, _, err := srvs[0].Apply(objs); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		s := site(i)
		svc := "v" + s
		objs := []api.Object{&api.EService{Metadata: api.ObjectMeta{Name: svc}, Protocol: "TCP", Port: 80, IP: "10.0.1.10", ESiteName: s},
			&api.ServiceExpose{Metadata: api.ObjectMeta{Name: svc}, EServiceName: svc, ESites: []string{site(i + 1), site(i + 2)}, EPolicys: []string{"p" + s}}}
		if _, _, err := srvs[0].Apply(objs); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := srvs[0].Store().Revision()
	waitCompiled(t, srvs[1], rev)
	_, reloads0 := srvs[1].Store().FeedStats()

	rev = mustApply(t, srvs[0], `{"kind":"EPolicy","metadata":{"name":"ps3"},"allowedServers":["cs4","cs5","xs4"]}`)
	waitCompiled(t, srvs[1], rev)
	w0, w1 := srvs[0].Work(), srvs[1].Work()
	if w0.LastSnapshotsCompiled != 3 || w1.LastSnapshotsCompiled != 3 {
		t.Fatalf("a policy change compiled %d snapshots on the replica written to and %d on the other; want 3 each", w0.LastSnapshotsCompiled, w1.LastSnapshotsCompiled)
	}
	if _, reloads := srvs[1].Store().FeedStats(); reloads != reloads0 {
		t.Fatalf("the other replica reloaded its model whole")
	}
	checkAgainstFull(t, srvs[1], "after the policy change")
}

// TestReplicaReloadsWhenFeedLost: when the feed cannot say what changed (its queue was
// dropped), the model reloads whole and the Server recompiles everything, correctly.
func TestReplicaReloadsWhenFeedLost(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	srv, err := NewServer(openEtcdStore(t, url, p, cfg), Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv.Follow(t.Context())
	other := openEtcdStore(t, url, p, cfg)
	mustApply(t, other, twoSites)
	rev, _ := other.Revision()
	waitCompiled(t, srv, rev)

	f := srv.Store().feed
	f.mu.Lock()
	f.queue, f.queued, f.lost = nil, 0, true
	f.mu.Unlock()
	rev = mustApply(t, other, `{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}`)
	waitCompiled(t, srv, rev)
	if _, reloads := srv.Store().FeedStats(); reloads != 1 {
		t.Fatalf("%d whole reloads, want 1", reloads)
	}
	checkAgainstFull(t, srv, "after the reload")
	sameState(t, "after the reload", srv.Store(), other)
	// The feed works again afterwards.
	rev = mustApply(t, other, `{"kind":"EServer","metadata":{"name":"c3"},"ip":"10.0.0.22","eSiteName":"site-a"}`)
	waitCompiled(t, srv, rev)
	if _, reloads := srv.Store().FeedStats(); reloads != 1 {
		t.Fatalf("%d whole reloads after the feed came back, want 1", reloads)
	}
	sameState(t, "after the feed came back", srv.Store(), other)
}

// TestReplicaFollowsAcrossCompaction: a write the watch missed (it resumes from a revision
// compacted away) reaches the model by the relist's difference, without a whole reload.
func TestReplicaFollowsAcrossCompaction(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	s := openEtcdStore(t, url, p, cfg)
	other := openEtcdStore(t, url, p, cfg)
	mustApply(t, other, twoSites)
	sameState(t, "first load", s, other)
	b := s.Backend().(*EtcdBackend)
	b.mu.RLock()
	oldMirror, oldRev := maps.Clone(b.mirror), b.mirrorRev
	b.mu.RUnlock()

	rev := mustApply(t, other, `{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}`)
	waitFor(t, 5*time.Second, func() bool { return s.feed.pending() })
	// As if the watch had never delivered it (a long disconnection), and etcd compacted
	// the history meanwhile: the watch cannot resume and relists.
	s.feed.mu.Lock()
	s.feed.queue, s.feed.queued = nil, 0
	s.feed.mu.Unlock()
	b.mu.Lock()
	b.mirror, b.mirrorRev = oldMirror, oldRev
	b.mu.Unlock()
	resp, err := b.Client().Put(t.Context(), "compact-probe", "x") // outside the store's prefix
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Client().Compact(t.Context(), resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	relists := b.relists.Load()
	b.kick <- struct{}{}
	waitFor(t, 5*time.Second, func() bool { return b.relists.Load() > relists })
	if got, _ := s.Revision(); got != rev {
		t.Fatalf("revision %d, want %d", got, rev)
	}
	sameState(t, "after the relist", s, other)
	if applied, reloads := s.FeedStats(); reloads != 0 || applied != 1 {
		t.Fatalf("%d batches applied, %d whole reloads; want 1 and 0", applied, reloads)
	}
}

// followingReplicas returns two Servers on one etcd prefix, each following the other's
// writes until the test ends.
func followingReplicas(t *testing.T, url, prefix string, cfg Config) [2]*Server {
	t.Helper()
	var srvs [2]*Server
	for i := range srvs {
		srv, err := NewServer(openEtcdStore(t, url, prefix, cfg), Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv.Follow(t.Context())
		srvs[i] = srv
	}
	return srvs
}
