package gateway

import (
	"encoding/json"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/egw-project/egw/api"
)

// An edge's peers: the hub from its config (a hub peer, never a path peer), and every
// linked gateway of the snapshot as a path peer, its cached direct endpoint first among
// its candidates; the snapshot's own hub entry and unregistered gateways are left out.
func TestEdgePeersFromSnapshotAndPathCache(t *testing.T) {
	dir := t.TempDir()
	peerB := mustKey(t).PublicKey().String()
	ovB := netip.MustParseAddr("100.64.8.1")
	cached := netip.MustParseAddrPort("203.0.113.9:51820")
	b, _ := json.Marshal(map[netip.Addr]netip.AddrPort{ovB: cached})
	if err := os.WriteFile(pathEndpointsPath(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	c := validEdgeConfig(dir)
	c.Cloud.PublicKey = mustKey(t).PublicKey().String()
	c.Paths.Direct = true
	p, err := Parse(c, true)
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, p, NodeOptions{})

	s := n.Bootstrap()
	s.Revision = 5
	lan := netip.MustParseAddrPort("10.1.0.5:51820")
	s.Peers = []api.Peer{
		{Name: "cloud-gw", PublicKey: c.Cloud.PublicKey, Endpoint: "10.99.0.1:51820", AllowedIPs: []netip.Prefix{p.OverlayCIDRP}, OverlayIP: p.CloudOverlay, Hub: true},
		{Name: "edge-b", PublicKey: peerB, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.8.2/32")}, OverlayIP: ovB, Candidates: []netip.AddrPort{lan}},
		{Name: "edge-c", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.12.2/32")}, OverlayIP: netip.MustParseAddr("100.64.12.1")}, // no key yet
	}
	peers := n.peersFor(s)
	if len(peers) != 2 || !peers[0].Hub || peers[0].Name != "cloud" || peers[1].Name != "edge-b" {
		t.Fatalf("peers %+v: want the config's hub and edge-b", peers)
	}
	if want := []netip.AddrPort{cached, lan}; !slices.Equal(peers[1].Candidates, want) {
		t.Fatalf("edge-b's candidates %v, want %v", peers[1].Candidates, want)
	}
	if err := n.Apply(s); err != nil {
		t.Fatal(err)
	}
	paths := n.Report().Paths
	if len(paths) != 1 || paths[0].Peer != "edge-b" || paths[0].Mode != "relayed" || paths[0].Endpoint != "10.99.0.1:51820" {
		t.Fatalf("report paths %+v: want edge-b relayed through the hub", paths)
	}
	stats, err := n.ov.PeerStats()
	if err != nil || len(stats) != 2 {
		t.Fatalf("device peers %+v, %v", stats, err)
	}
}

func TestPathEndpointCache(t *testing.T) {
	dir := t.TempDir()
	got, err := loadPathEndpoints(dir)
	if err != nil || len(got) != 0 {
		t.Fatalf("no file: %v, %v", got, err)
	}
	if err := os.WriteFile(pathEndpointsPath(dir), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadPathEndpoints(dir); err == nil {
		t.Fatal("a corrupt cache loaded")
	}
}
