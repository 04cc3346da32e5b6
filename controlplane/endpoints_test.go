package controlplane

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func waitEndpoints(t *testing.T, srv *Server) {
	t.Helper()
	select {
	case <-srv.endpointsIdle():
	case <-time.After(10 * time.Second):
		t.Fatal("endpoint changes not stored within 10 s")
	}
}

func peerNamed(s *api.Snapshot, name string) *api.Peer {
	for i := range s.Peers {
		if s.Peers[i].Name == name {
			return &s.Peers[i]
		}
	}
	return nil
}

// TestEndpointsReachLinkedPeers: the endpoint the hub observed for gw-a and the LAN
// candidates gw-a reported become the Candidates of gw-a in gw-b's snapshot (gw-b consumes
// nothing from gw-a but hosts web for site-a: they are linked), through a new revision
// that wakes gw-b; the same endpoints again change nothing; they are kept in the store
// and go away with the gateway.
func TestEndpointsReachLinkedPeers(t *testing.T) {
	dir := t.TempDir()
	srv := newServer(t, dir, testConfig(), Options{})
	rev := mustApply(t, srv, twoSites)
	if p := peerNamed(mustSnap(t, srv, "gw-b"), "gw-a"); p == nil || p.Candidates != nil {
		t.Fatalf("gw-b's peer gw-a before any endpoint: %+v", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	woken := make(chan *api.Snapshot, 1)
	go func() {
		s, _ := srv.Watch(ctx, "gw-b", rev)
		woken <- s
	}()
	waitChanOf(t, srv, "gw-b")

	obs := netip.MustParseAddrPort("198.51.100.7:40000")
	srv.SetObservedEndpoint("gw-a", netip.AddrPortFrom(netip.AddrFrom16(obs.Addr().As16()), obs.Port())) // v4-mapped
	var reported []netip.AddrPort
	for i := range 12 {
		reported = append(reported, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), 51820))
	}
	bad := []netip.AddrPort{{}, netip.MustParseAddrPort("0.0.0.0:51820"), netip.MustParseAddrPort("10.1.0.1:0"),
		netip.MustParseAddrPort("224.0.0.1:51820"), netip.MustParseAddrPort("255.255.255.255:51820")}
	srv.Report("gw-a", api.Report{AppliedRevision: rev, Candidates: append(bad, reported...)})
	waitEndpoints(t, srv)

	want := append([]netip.AddrPort{obs}, reported[:MaxCandidates]...)
	select {
	case <-woken:
	case <-ctx.Done():
		t.Fatal("gw-b was not woken by gw-a's endpoints")
	}
	s := mustSnap(t, srv, "gw-b")
	if p := peerNamed(s, "gw-a"); p == nil || !reflect.DeepEqual(p.Candidates, want) {
		t.Fatalf("gw-b's peer gw-a: %+v, want candidates %v", p, want)
	}
	if s.Revision <= rev {
		t.Fatalf("revision %d after %d", s.Revision, rev)
	}
	// The hub's own view of its peers carries no candidates; gw-a's snapshot did not move.
	if a := mustSnap(t, srv, "gw-a"); a.Revision != rev {
		t.Fatalf("gw-a moved to %d", a.Revision)
	}

	// The same endpoints again: nothing stored, no new revision.
	r1, _ := srv.Store().Revision()
	srv.SetObservedEndpoint("gw-a", obs)
	srv.Report("gw-a", api.Report{Candidates: reported})
	waitEndpoints(t, srv)
	if r2, _ := srv.Store().Revision(); r2 != r1 {
		t.Fatalf("unchanged endpoints bumped the revision %d -> %d", r1, r2)
	}
	// Endpoints of a gateway that does not exist are not stored.
	srv.SetObservedEndpoint("ghost", obs)
	waitEndpoints(t, srv)
	if eps, _ := srv.Store().Endpoints(); len(eps) != 1 {
		t.Fatalf("stored endpoints %v", eps)
	}

	// Kept in the store: a new server over it compiles the same candidates.
	srv.Store().Close()
	srv2 := newServer(t, dir, testConfig(), Options{})
	if p := peerNamed(mustSnap(t, srv2, "gw-b"), "gw-a"); p == nil || !reflect.DeepEqual(p.Candidates, want) {
		t.Fatalf("after restart: %+v", p)
	}
	// An invalid observed endpoint forgets it; deleting the gateway drops the rest.
	srv2.SetObservedEndpoint("gw-a", netip.AddrPort{})
	waitEndpoints(t, srv2)
	if p := peerNamed(mustSnap(t, srv2, "gw-b"), "gw-a"); p == nil || !reflect.DeepEqual(p.Candidates, reported[:MaxCandidates]) {
		t.Fatalf("after forgetting the observed endpoint: %+v", p)
	}
	if _, err := srv2.Delete(api.KindEGateway, "gw-a"); err != nil {
		t.Fatal(err)
	}
	if eps, _ := srv2.Store().Endpoints(); len(eps) != 0 {
		t.Fatalf("endpoints of a deleted gateway kept: %v", eps)
	}
}

// TestEndpointChangesBatch: many changes queued while one is being stored go into few
// transactions, and the last value wins.
func TestEndpointChangesBatch(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	mustApply(t, srv, twoSites)
	r0, _ := srv.Store().Revision()
	for i := range 200 {
		srv.SetObservedEndpoint("gw-a", netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(1000+i)))
	}
	waitEndpoints(t, srv)
	r1, _ := srv.Store().Revision()
	if r1-r0 < 1 || r1-r0 > 200 {
		t.Fatalf("%d revisions for 200 changes", r1-r0)
	}
	if p := peerNamed(mustSnap(t, srv, "gw-b"), "gw-a"); p == nil || fmt.Sprint(p.Candidates) != "[198.51.100.7:1199]" {
		t.Fatalf("gw-b's peer gw-a: %+v", p)
	}
}

// TestStatusShowsPaths: the paths a gateway reports are served by Status.
func TestStatusShowsPaths(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	mustApply(t, srv, twoSites)
	since := time.Date(2026, 12, 6, 7, 0, 0, 0, time.UTC)
	paths := []api.PathStatus{{Peer: "gw-b", Mode: "direct", Since: since, Endpoint: "198.51.100.8:51820", RTTMS: 1.5}}
	// Paths to gateways that do not exist, to itself, repeated: not kept; odd modes and
	// endpoints are cleaned.
	sent := append(slices.Clone(paths), api.PathStatus{Peer: "ghost", Mode: "direct"}, api.PathStatus{Peer: "gw-a", Mode: "direct"},
		api.PathStatus{Peer: "gw-b", Mode: "relayed"})
	srv.Report("gw-a", api.Report{Paths: sent})
	srv.Report("gw-b", api.Report{Paths: []api.PathStatus{{Peer: "gw-a", Mode: strings.Repeat("x", 1000), Endpoint: "junk", RTTMS: -3}}})
	st, err := srv.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range st.Gateways {
		if g.Name == "gw-a" && !reflect.DeepEqual(g.Paths, paths) {
			t.Fatalf("gw-a paths %+v", g.Paths)
		}
		if g.Name == "gw-b" && !reflect.DeepEqual(g.Paths, []api.PathStatus{{Peer: "gw-a", Mode: "unknown"}}) {
			t.Fatalf("gw-b paths %+v", g.Paths)
		}
	}
}

func mustSnap(t *testing.T, srv *Server, gw string) *api.Snapshot {
	t.Helper()
	s, ok := srv.Snapshot(gw)
	if !ok {
		t.Fatalf("no snapshot of %s", gw)
	}
	return s
}
