package controlplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func hubPeersOf(s *api.Snapshot) map[string]api.Peer {
	out := map[string]api.Peer{}
	for _, p := range s.Peers {
		if p.Hub {
			out[p.Name] = p
		}
	}
	return out
}

// TestHubsRegisteredByReplicas: two replicas on one etcd register as hubs; each gets its
// own overlay address (the site gateway's replica the hub's), the edges' snapshots list
// both on either replica, a cloud-site service's ov(S) never takes a hub address, and a
// re-registration with the same values changes nothing.
func TestHubsRegisteredByReplicas(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	srvs := followingReplicas(t, url, p, cfg)
	if err := srvs[0].EnsureHub("192.168.9.0/24", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "203.0.113.1:51820"); err != nil {
		t.Fatal(err)
	}
	h1, err := srvs[0].RegisterHub("cloud-gw", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "203.0.113.1:51820")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := srvs[1].RegisterHub("cloud-gw-2", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=", "203.0.113.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	if h1.OverlayIP != cfg.HubOverlayIP() || !h2.OverlayIP.IsValid() || h2.OverlayIP == h1.OverlayIP || !cfg.HubPrefix().Contains(h2.OverlayIP) {
		t.Fatalf("overlay addresses %s and %s (hub prefix %s)", h1.OverlayIP, h2.OverlayIP, cfg.HubPrefix())
	}
	rev, _ := srvs[1].Store().Revision()
	if again, err := srvs[1].RegisterHub("cloud-gw-2", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=", "203.0.113.2:51820"); err != nil || again != h2 {
		t.Fatalf("re-registration: %+v %v", again, err)
	}
	if r, _ := srvs[1].Store().Revision(); r != rev {
		t.Fatalf("an unchanged registration moved the revision %d -> %d", rev, r)
	}
	// An edge, and cloud-site services whose ov(S) come from the hub prefix.
	mustApply(t, srvs[0], twoSites+`
{"kind":"EService","metadata":{"name":"db"},"protocol":"TCP","port":5432,"ip":"10.9.0.5","eSiteName":"cloud"}
{"kind":"ServiceExpose","metadata":{"name":"db"},"eServiceName":"db","eSites":["site-a"],"ePolicys":["p1"]}`)
	rev, _ = srvs[0].Store().Revision()
	for i, srv := range srvs {
		waitCompiled(t, srv, rev)
		snap, ok := srv.Snapshot("gw-a")
		if !ok {
			t.Fatalf("replica %d: no snapshot of gw-a", i)
		}
		hubs := hubPeersOf(snap)
		if len(hubs) != 2 || hubs["cloud-gw"].AllowedIPs[0] != cfg.OverlayCIDR ||
			hubs["cloud-gw-2"].AllowedIPs[0] != netip.PrefixFrom(h2.OverlayIP, 32) ||
			hubs["cloud-gw-2"].PublicKey != h2.PublicKey || hubs["cloud-gw-2"].Endpoint != "203.0.113.2:51820" {
			t.Fatalf("replica %d: hub peers of gw-a: %+v", i, hubs)
		}
	}
	st, _ := srvs[1].Store().Load()
	for svc, a := range st.IPAM.Services {
		if a.Addr == h2.OverlayIP || a.Addr == h1.OverlayIP {
			t.Fatalf("ov(S) of %s is a hub's address %s", svc, a.Addr)
		}
	}
	hubs, err := srvs[0].Hubs()
	if err != nil || len(hubs) != 2 || hubs[0].Name != "cloud-gw" || hubs[1] != h2 {
		t.Fatalf("hubs: %+v %v", hubs, err)
	}
	if _, err := srvs[0].RegisterHub("bad name!", "", ""); codeOf(err) != CodeBadRequest {
		t.Fatalf("bad name: %v", err)
	}
}

// TestHubSlotsRunOut: MaxHubs replicas register; the next is refused, naming the limit.
func TestHubSlotsRunOut(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	seen := map[netip.Addr]bool{}
	for i := range MaxHubs {
		name := "cloud-gw"
		if i > 0 {
			name = "hub-" + string(rune('a'+i))
		}
		h, err := srv.RegisterHub(name, "", "")
		if err != nil {
			t.Fatalf("hub %d: %v", i, err)
		}
		if seen[h.OverlayIP] {
			t.Fatalf("%s given twice", h.OverlayIP)
		}
		seen[h.OverlayIP] = true
	}
	if _, err := srv.RegisterHub("one-too-many", "", ""); codeOf(err) != CodeExhausted {
		t.Fatalf("hub %d: %v", MaxHubs+1, err)
	}
}

// TestReportsSharedBetweenReplicas: a report received by one replica is shown by the
// other's status; an unchanged report is not stored again.
func TestReportsSharedBetweenReplicas(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	srvs := followingReplicas(t, url, p, cfg)
	rev := mustApply(t, srvs[0], twoSites)
	srvs[0].Report("gw-a", api.Report{AppliedRevision: rev})
	if err := srvs[0].flushReports(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		st, err := srvs[1].Status()
		if err != nil {
			return false
		}
		for _, g := range st.Gateways {
			if g.Name == "gw-a" {
				return g.AppliedRevision == rev && !g.LastReport.IsZero()
			}
		}
		return false
	})
	// The same report again: nothing to store.
	b := srvs[0].Store().Backend().(*EtcdBackend)
	before, err := b.Client().Get(t.Context(), b.Prefix()+bucketReports+"/gw-a")
	if err != nil || len(before.Kvs) != 1 {
		t.Fatalf("stored report: %v %v", before, err)
	}
	srvs[0].Report("gw-a", api.Report{AppliedRevision: rev})
	if err := srvs[0].flushReports(); err != nil {
		t.Fatal(err)
	}
	after, _ := b.Client().Get(t.Context(), b.Prefix()+bucketReports+"/gw-a")
	if after.Kvs[0].ModRevision != before.Kvs[0].ModRevision {
		t.Fatal("an unchanged report was stored again")
	}
}

// TestEdgeConfigListsHubs: an edge's printed configuration carries every hub but the site
// gateway's as its bootstrap list (cloud.hubs).
func TestEdgeConfigListsHubs(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	mustApply(t, srv, twoSites)
	h2, err := srv.RegisterHub("cloud-gw-2", "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=", "203.0.113.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.RegisterHub("cloud-gw", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "203.0.113.1:51820"); err != nil {
		t.Fatal(err)
	}
	c, err := srv.EdgeConfig("gw-a")
	if err != nil {
		t.Fatal(err)
	}
	want := api.NodeHubConfig{Name: "cloud-gw-2", Endpoint: "203.0.113.2:51820", PublicKey: h2.PublicKey, OverlayIP: h2.OverlayIP.String()}
	if len(c.Cloud.Hubs) != 1 || c.Cloud.Hubs[0] != want {
		t.Fatalf("cloud.hubs %+v", c.Cloud.Hubs)
	}
}
