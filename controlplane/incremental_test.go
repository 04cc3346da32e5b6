package controlplane

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/egw-project/egw/api"
)

// randomWorld makes random objects over a small universe of names, so that writes
// create, change, rename references of and delete the same objects over and over.
type randomWorld struct{ r *rand.Rand }

func (w randomWorld) pick(prefix string, n int) string {
	return fmt.Sprintf("%s%d", prefix, w.r.IntN(n))
}

func (w randomWorld) sites(n int) []string {
	var out []string
	for range w.r.IntN(n + 1) {
		s := w.pick("s", 6)
		if w.r.IntN(8) == 0 {
			s = "cloud"
		}
		out = append(out, s)
	}
	return out
}

func (w randomWorld) object() api.Object {
	r := w.r
	keys := []string{"", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="}
	var o api.Object
	switch r.IntN(8) {
	case 0:
		o = &api.ESite{Metadata: api.ObjectMeta{Name: w.pick("s", 6)}}
	case 1:
		name := w.pick("g", 7)
		if r.IntN(6) == 0 {
			name = "cloud-gw"
		}
		site := "s" + name[1:]
		if r.IntN(5) == 0 {
			site = w.pick("s", 6)
		}
		if name == "cloud-gw" {
			site = "cloud"
		}
		key := keys[r.IntN(len(keys))]
		if r.IntN(4) != 0 && name != "cloud-gw" {
			// A key of its own, mostly.
			key = base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("%-32s", name)))
		}
		cidr := fmt.Sprintf("192.168.%d.0/%d", r.IntN(3), 24+r.IntN(4))
		o = &api.EGateway{Metadata: api.ObjectMeta{Name: name}, VirtualPresenceIPcidr: cidr, ESiteName: site,
			PublicKey: key, Endpoint: []string{"", "198.51.100.9:51820"}[r.IntN(2)]}
	case 2:
		site := w.pick("s", 6)
		if r.IntN(6) == 0 {
			site = "cloud"
		}
		o = &api.EService{Metadata: api.ObjectMeta{Name: w.pick("v", 6)}, Protocol: []string{"TCP", "UDP"}[r.IntN(2)],
			Port: int32(80 + r.IntN(3)), IP: fmt.Sprintf("10.0.%d.%d", r.IntN(2), 10+r.IntN(3)), ESiteName: site}
	case 3:
		o = &api.EServer{Metadata: api.ObjectMeta{Name: w.pick("c", 8)}, IP: fmt.Sprintf("10.1.0.%d", 20+r.IntN(8)), ESiteName: w.pick("s", 6)}
	case 4:
		var servers []string
		for range r.IntN(4) {
			servers = append(servers, w.pick("c", 9))
		}
		o = &api.EPolicy{Metadata: api.ObjectMeta{Name: w.pick("p", 4)}, AllowedServers: servers, AllowedSites: w.sites(2)}
	case 5, 6:
		var policies []string
		for range r.IntN(3) {
			policies = append(policies, w.pick("p", 5))
		}
		name := w.pick("e", 6)
		svc := "v" + name[1:]
		if r.IntN(5) == 0 {
			svc = w.pick("v", 7)
		}
		o = &api.ServiceExpose{Metadata: api.ObjectMeta{Name: name}, EServiceName: svc,
			ESites: w.sites(4), EPolicys: policies, DNSName: "x.example.com"}
	default:
		vp := &api.VirtualPresence{Metadata: api.ObjectMeta{Name: w.pick("pin", 3)}, EServiceName: w.pick("v", 6),
			VirtualIP: fmt.Sprintf("192.168.%d.%d", r.IntN(3), 2+r.IntN(6))}
		if r.IntN(2) == 0 {
			vp.ESiteName = w.pick("s", 6)
		}
		o = vp
	}
	api.Normalize(o)
	return o
}

// checkAgainstFull checks that the server's snapshots are what a full compile of the
// stored state gives, and that the stored allocations are complete and consistent (a
// full reconcile changes nothing).
func checkAgainstFull(t *testing.T, srv *Server, step string) {
	t.Helper()
	st, err := srv.Store().Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := validateState(st, srv.cfg); err != nil {
		t.Fatalf("%s: stored state is not valid: %v", step, err)
	}
	again := &State{Revision: st.Revision, Objects: map[string]api.Object{}, IPAM: st.IPAM.clone()}
	for k, o := range st.Objects {
		again.Objects[k] = o
	}
	reconcile(again, srv.cfg)
	if !again.IPAM.equal(st.IPAM) {
		t.Fatalf("%s: a full reconcile moves allocations:\n stored %+v\n   full %+v", step, st.IPAM, again.IPAM)
	}
	for k, o := range again.Objects {
		if old, ok := st.Objects[k]; !ok || !api.Equal(old, o) {
			t.Fatalf("%s: a full reconcile changes %s: %+v -> %+v", step, k, old, o)
		}
	}
	for k := range st.Objects {
		if _, ok := again.Objects[k]; !ok {
			t.Fatalf("%s: a full reconcile removes %s", step, k)
		}
	}
	full := CompileWith(st.List(""), st.IPAM, st.Endpoints, srv.cfg)
	names := map[string]bool{}
	for gw := range full {
		names[gw] = true
	}
	srv.mu.Lock()
	for gw := range srv.snaps {
		names[gw] = true
	}
	srv.mu.Unlock()
	for gw := range names {
		want := full[gw]
		got, ok := srv.Snapshot(gw)
		if (want == nil) != !ok {
			t.Fatalf("%s: %s: snapshot present %v, full compile %v", step, gw, ok, want != nil)
		}
		if want == nil {
			continue
		}
		g := *got
		g.Revision, g.StoreID = 0, ""
		a, _ := json.Marshal(&g)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			t.Fatalf("%s: %s differs from a full compile:\n got %s\nwant %s", step, gw, a, b)
		}
		if got.Revision > st.Revision || got.Revision <= 0 {
			t.Fatalf("%s: %s at revision %d, store at %d", step, gw, got.Revision, st.Revision)
		}
	}
}

// TestIncrementalMatchesFull drives a Server through random writes (applies, deletes,
// endpoint changes, writes the validation refuses) and checks after each that every
// snapshot equals a full compile of the stored state and that the allocations are those
// a full reconcile keeps.
func TestIncrementalMatchesFull(t *testing.T) {
	for seed := range uint64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			dir := t.TempDir()
			// Odd seeds keep the edges' snapshots gzipped, as a large fleet does.
			opts := Options{}
			if seed%2 == 1 {
				opts.KeepDecoded = -1
			}
			srv := newServer(t, dir, testConfig(), opts)
			if err := srv.EnsureHub("192.168.9.0/24", "", "203.0.113.1:51820"); err != nil {
				t.Fatal(err)
			}
			w := randomWorld{rand.New(rand.NewPCG(seed, 7))}
			rejected, maxLinks, maxPeers := 0, 0, 0
			steps := 300
			if testing.Short() {
				steps = 50
			}
			for i := range steps {
				step := fmt.Sprintf("step %d", i)
				switch n := w.r.IntN(20); {
				case n < 15:
					var objs []api.Object
					seen := map[string]bool{}
					for range 1 + w.r.IntN(4) {
						o := w.object()
						if !seen[api.Key(o)] {
							seen[api.Key(o)] = true
							objs = append(objs, o)
						}
					}
					if _, _, err := srv.Apply(objs); err != nil {
						rejected++
						step += fmt.Sprintf(" (apply refused: %v)", err)
						if testing.Verbose() && rejected < 8 {
							t.Log(err)
						}
					}
				case n < 17:
					st, _ := srv.Store().Load()
					var keys []string
					for k, o := range st.Objects {
						if !isManagedObj(o) && !(k == "EGateway/cloud-gw" && w.r.IntN(4) != 0) {
							keys = append(keys, k)
						}
					}
					slices.Sort(keys)
					if len(keys) > 0 {
						k := keys[w.r.IntN(len(keys))]
						o := st.Objects[k]
						if _, err := srv.Delete(o.GetKind(), o.GetMeta().Name); err != nil {
							t.Fatalf("%s: deleting %s: %v", step, k, err)
						}
						step += " (deleted " + k + ")"
					}
				default:
					gw := w.pick("g", 7)
					ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(w.r.IntN(4))}), uint16(40000+w.r.IntN(3)))
					if w.r.IntN(2) == 0 {
						srv.SetObservedEndpoint(gw, ep)
					} else {
						srv.Report(gw, api.Report{Candidates: []netip.AddrPort{ep}})
					}
					waitEndpoints(t, srv)
				}
				checkAgainstFull(t, srv, step)
				if hub, ok := srv.Snapshot("cloud-gw"); ok {
					maxLinks = max(maxLinks, len(hub.Links))
					maxPeers = max(maxPeers, len(hub.Peers))
				}
			}
			st, _ := srv.Store().Load()
			hub, _ := srv.Snapshot("cloud-gw")
			links := 0
			if hub != nil {
				links = len(hub.Links)
			}
			t.Logf("%d of %d writes refused; %d objects, %d gateway prefixes, %d ov(S), %d links at the end; at most %d links, %d hub peers",
				rejected, steps, len(st.Objects), len(st.IPAM.Gateways), len(st.IPAM.Services), links, maxLinks, maxPeers)
			// The store read back from its file is the same state, and a new server over it
			// (a full compile) agrees.
			want, _ := srv.Store().Load()
			srv.Store().Close()
			srv2 := newServer(t, dir, testConfig(), opts)
			got, err := srv2.Store().Load()
			if err != nil {
				t.Fatal(err)
			}
			if got.Revision != want.Revision || !got.IPAM.equal(want.IPAM) || len(got.Objects) != len(want.Objects) {
				t.Fatalf("reopened: revision %d, %d objects; want %d, %d", got.Revision, len(got.Objects), want.Revision, len(want.Objects))
			}
			for k, o := range want.Objects {
				a, _ := json.Marshal(o)
				b, _ := json.Marshal(got.Objects[k])
				if string(a) != string(b) {
					t.Fatalf("reopened %s:\n got %s\nwant %s", k, b, a)
				}
			}
			checkAgainstFull(t, srv2, "restart")
		})
	}
}

func isManagedObj(o api.Object) bool {
	vp, ok := o.(*api.VirtualPresence)
	return ok && isManaged(vp)
}

// TestPolicyChangeCompilesOnlyAffected: in a fleet of edge sites where each site's
// services are exposed to the next two sites under a policy of its own, a change of one
// policy recompiles exactly the gateways of the site whose services it covers and of the
// two sites they are exposed to (plus the hub's parts, reassembled only when they change),
// validates only the policy, and wakes only the gateway whose ACL it changed.
func TestPolicyChangeCompilesOnlyAffected(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	if err := srv.EnsureHub("192.168.9.0/24", "", ""); err != nil {
		t.Fatal(err)
	}
	const n = 12
	var objs []api.Object
	site := func(i int) string { return fmt.Sprintf("s%d", (i+n)%n) }
	for i := range n {
		s := site(i)
		objs = append(objs, &api.ESite{Metadata: api.ObjectMeta{Name: s}},
			&api.EGateway{Metadata: api.ObjectMeta{Name: "g" + s}, VirtualPresenceIPcidr: "192.168.0.0/24", ESiteName: s},
			&api.EServer{Metadata: api.ObjectMeta{Name: "c" + s}, IP: "10.0.0.20", ESiteName: s},
			&api.EServer{Metadata: api.ObjectMeta{Name: "x" + s}, IP: "10.0.0.21", ESiteName: s},
			&api.EPolicy{Metadata: api.ObjectMeta{Name: "p" + s}, AllowedServers: []string{"c" + site(i+1), "c" + site(i+2)}})
		for j := range 3 {
			svc := fmt.Sprintf("v%s-%d", s, j)
			objs = append(objs, &api.EService{Metadata: api.ObjectMeta{Name: svc}, Protocol: "TCP", Port: 80, IP: fmt.Sprintf("10.0.1.%d", 10+j), ESiteName: s},
				&api.ServiceExpose{Metadata: api.ObjectMeta{Name: svc}, EServiceName: svc, ESites: []string{site(i + 1), site(i + 2)}, EPolicys: []string{"p" + s}})
		}
	}
	if _, _, err := srv.Apply(objs); err != nil {
		t.Fatal(err)
	}
	before := map[string]int64{}
	for i := range n {
		before["g"+site(i)] = mustSnap(t, srv, "g"+site(i)).Revision
	}
	hubRev := mustSnap(t, srv, "cloud-gw").Revision
	w0 := srv.Work()

	// p-s3 also allows x-s4: only gs4's VIPs change.
	rev := mustApply(t, srv, `{"kind":"EPolicy","metadata":{"name":"ps3"},"allowedServers":["cs4","cs5","xs4"]}`)
	w := srv.Work()
	if got := w.Writes - w0.Writes; got != 1 {
		t.Fatalf("%d writes counted", got)
	}
	// gs3 (home), gs4 and gs5 (exposed to); the hub's parts did not change, so it is not
	// reassembled.
	if w.LastSnapshotsCompiled != 3 || w.SnapshotsCompiled-w0.SnapshotsCompiled != 3 || w.LastSitesAffected != 3 {
		t.Fatalf("a policy change compiled %d snapshots (%d sites); want 3: %+v", w.LastSnapshotsCompiled, w.LastSitesAffected, w)
	}
	if w.LastObjectsValidated != 1 {
		t.Fatalf("a policy change validated %d objects, want 1", w.LastObjectsValidated)
	}
	for i := range n {
		gw := "g" + site(i)
		moved := mustSnap(t, srv, gw).Revision != before[gw]
		if moved != (gw == "gs4") {
			t.Errorf("%s moved: %v", gw, moved)
		}
	}
	if v := vipAt(mustSnap(t, srv, "gs4"), "vs3-0"); v == nil || !slices.Contains(v.AllowedClients, addr("10.0.0.21")) {
		t.Fatalf("gs4's VIP of vs3-0: %+v", v)
	}
	if mustSnap(t, srv, "gs4").Revision != rev || mustSnap(t, srv, "cloud-gw").Revision != hubRev {
		t.Fatal("revisions")
	}

	// Allowing the whole site s6 for p-s3 changes nothing but... s6 is not exposed to:
	// the same three gateways are compiled, none moves.
	mustApply(t, srv, `{"kind":"EPolicy","metadata":{"name":"ps3"},"allowedServers":["cs4","cs5","xs4"],"allowedSites":["s6"]}`)
	if w := srv.Work(); w.LastSnapshotsCompiled != 3 {
		t.Fatalf("compiled %d", w.LastSnapshotsCompiled)
	}
	// An exposure change also moves the hub (its links): the hub is reassembled.
	mustApply(t, srv, `{"kind":"ServiceExpose","metadata":{"name":"vs3-0"},"eServiceName":"vs3-0","eSites":["s4","s5","s7"],"ePolicys":["ps3"]}`)
	if w := srv.Work(); w.LastSnapshotsCompiled != 5 {
		t.Fatalf("an exposure change to one more site compiled %d snapshots, want 5 (gs3, gs4, gs5, gs7, hub)", w.LastSnapshotsCompiled)
	}
	checkAgainstFull(t, srv, "end")
}

// TestWorkMetrics: the collector exposes the work counters.
func TestWorkMetrics(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	mustApply(t, srv, twoSites)
	mustApply(t, srv, `{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","ghost"]}`)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(srv.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		if m.GetCounter() != nil {
			got[mf.GetName()] = m.GetCounter().GetValue()
		} else {
			got[mf.GetName()] = m.GetGauge().GetValue()
		}
	}
	w := srv.Work()
	if got["egw_controlplane_compiled_writes_total"] != float64(w.Writes) || w.Writes < 2 ||
		got["egw_controlplane_snapshots_compiled_total"] != float64(w.SnapshotsCompiled) ||
		got["egw_controlplane_last_write_snapshots_compiled"] != 2 || got["egw_controlplane_last_write_objects_validated"] != 1 ||
		got["egw_controlplane_gateways"] != 2 {
		t.Fatalf("metrics %v, work %+v", got, w)
	}
}
