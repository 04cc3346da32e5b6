package gateway

import (
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/membind"
)

func testNode(t *testing.T) *Node {
	t.Helper()
	c := validEdgeConfig(t.TempDir())
	c.Cloud.PublicKey = mustKey(t).PublicKey().String()
	p, err := Parse(c, true)
	if err != nil {
		t.Fatal(err)
	}
	return newTestNode(t, p, NodeOptions{})
}

// newTestNode is a Node of p on a channel TUN and a membind bind, with a new key and opts'
// other settings; it is closed when the test ends.
func newTestNode(t *testing.T, p *Parsed, opts NodeOptions) *Node {
	t.Helper()
	opts.Key = mustKey(t)
	opts.TUN = tuntest.NewChannelTUN().TUN()
	opts.Bind = membind.NewSwitch().Bind(netip.MustParseAddr("10.99.0.2"))
	n, err := NewNode(p, opts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func mustKey(t *testing.T) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestApplyOrderAndStoreReset(t *testing.T) {
	n := testNode(t)
	s := n.Bootstrap()
	s.Revision, s.StoreID = 900, "store-a"
	if err := n.Apply(s); err != nil {
		t.Fatal(err)
	}
	old := *s
	old.Revision = 40
	if err := n.Apply(&old); err == nil || !strings.Contains(err.Error(), "older than the applied 900") {
		t.Fatalf("older revision of the same store: %v", err)
	}
	reset := old
	reset.StoreID = "store-b"
	if err := n.Apply(&reset); err != nil {
		t.Fatalf("a reset store's snapshot must be followed: %v", err)
	}
	if got := n.Applied(); got.Revision != 40 || got.StoreID != "store-b" {
		t.Fatalf("applied %d/%s", got.Revision, got.StoreID)
	}
	other := reset
	other.Gateway = "edge-z"
	if err := n.Apply(&other); err == nil || !strings.Contains(err.Error(), `"edge-z"`) {
		t.Fatalf("snapshot of another gateway: %v", err)
	}
	moved := reset
	moved.Revision = 41
	moved.VPCIDR = netip.MustParsePrefix("192.168.7.0/24")
	if err := n.Apply(&moved); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("VP CIDR change: %v", err)
	}
	if n.Applied().Revision != 40 {
		t.Fatal("a refused snapshot changed the applied one")
	}
}

func TestRestartKeys(t *testing.T) {
	a, _ := Parse(validEdgeConfig("/s"), true)
	b, _ := Parse(validEdgeConfig("/s"), true)
	if k := restartKeys(a, b); len(k) != 0 {
		t.Fatalf("no change: %v", k)
	}
	b.Cloud.Endpoint = "10.99.0.9:51820"
	b.TUN.Driver = "water"
	b.DNS.Upstreams = []string{"10.0.0.53:53"}
	if k := strings.Join(restartKeys(a, b), ","); k != "dns.upstreams,tun.driver" {
		t.Fatalf("restart keys %q (the endpoint applies live)", k)
	}
}

// TestApplyAllOrNothing: a snapshot that one part refuses (here the engine: no overlay
// prefix) changes no part — not the WireGuard peers that were checked before it.
func TestApplyAllOrNothing(t *testing.T) {
	c := validEdgeConfig(t.TempDir())
	c.Cloud.PublicKey = mustKey(t).PublicKey().String()
	p, err := Parse(c, true)
	if err != nil {
		t.Fatal(err)
	}
	n := newTestNode(t, p, NodeOptions{Hub: true, NoCache: true})
	peer := func(name string) api.Peer {
		return api.Peer{Name: name, PublicKey: mustKey(t).PublicKey().String(),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.8.0/22")}}
	}
	good := n.Bootstrap()
	good.Revision, good.Peers = 1, []api.Peer{peer("edge-b")}
	if err := n.Apply(good); err != nil {
		t.Fatal(err)
	}
	bad := n.Bootstrap()
	bad.Revision, bad.Peers = 2, []api.Peer{peer("edge-c")}
	bad.OverlayPrefix = netip.Prefix{}
	if err := n.Apply(bad); err == nil {
		t.Fatal("a snapshot without an overlay prefix was applied")
	}
	st, err := n.Overlay().PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].PublicKey.String() != good.Peers[0].PublicKey {
		t.Errorf("peers after a refused snapshot: %+v, want only edge-b", st)
	}
	if n.Engine().Revision() != 1 || n.Applied().Revision != 1 {
		t.Errorf("engine revision %d, applied %d; want 1", n.Engine().Revision(), n.Applied().Revision)
	}
}

// TestEdgeSessionsToEveryHub: an edge keeps its configured hub for the whole overlay and
// gets a session to every other hub its snapshot lists, for that hub's overlay address
// alone; it syncs from any of them (SyncHubs).
func TestEdgeSessionsToEveryHub(t *testing.T) {
	n := testNode(t)
	s := n.Bootstrap()
	s.Revision = 2
	other := mustKey(t).PublicKey().String()
	s.Peers = append(s.Peers,
		api.Peer{Name: "cloud-gw", Hub: true, PublicKey: n.cloud.Load().PublicKey, OverlayIP: netip.MustParseAddr("100.64.0.1"),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}},
		api.Peer{Name: "cloud-gw-2", Hub: true, PublicKey: other, Endpoint: "10.99.0.3:51820", OverlayIP: netip.MustParseAddr("100.64.0.126"),
			AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.126/32")}})
	if err := n.Apply(s); err != nil {
		t.Fatal(err)
	}
	peers := n.peersFor(s)
	if len(peers) != 2 || peers[0].AllowedIPs[0] != n.cfg.OverlayCIDRP || peers[1].PublicKey != other ||
		len(peers[1].AllowedIPs) != 1 || peers[1].AllowedIPs[0] != netip.MustParsePrefix("100.64.0.126/32") {
		t.Fatalf("peers %+v", peers)
	}
	hubs := n.SyncHubs()
	if len(hubs) != 2 || !slices.Contains(hubs, "http://100.64.0.1:7443") || !slices.Contains(hubs, "http://100.64.0.126:7443") {
		t.Fatalf("sync hubs %v", hubs)
	}
	stats, err := n.Overlay().PeerStats()
	if err != nil || len(stats) != 2 {
		t.Fatalf("WireGuard peers %d, %v", len(stats), err)
	}
}

// TestBootstrapHubs: the hubs of cloud.hubs are peers and sync targets before any snapshot
// lists them; a bad entry is refused naming it.
func TestBootstrapHubs(t *testing.T) {
	c := validEdgeConfig(t.TempDir())
	c.Cloud.PublicKey = mustKey(t).PublicKey().String()
	other := mustKey(t).PublicKey().String()
	c.Cloud.Hubs = []CloudHubConfig{{Name: "cloud-gw-2", Endpoint: "10.99.0.3:51820", PublicKey: other, OverlayIP: "100.64.1.255"}}
	p, err := Parse(c, true)
	if err != nil {
		t.Fatal(err)
	}
	sw := membind.NewSwitch()
	n, err := NewNode(p, NodeOptions{Key: mustKey(t), TUN: tuntest.NewChannelTUN().TUN(), Bind: sw.Bind(netip.MustParseAddr("10.99.0.2"))},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.Apply(n.Bootstrap()); err != nil {
		t.Fatal(err)
	}
	if hubs := n.SyncHubs(); len(hubs) != 2 || !slices.Contains(hubs, "http://100.64.1.255:7443") {
		t.Fatalf("sync hubs %v", hubs)
	}
	if peers := n.peersFor(n.Applied()); len(peers) != 2 || peers[1].PublicKey != other {
		t.Fatalf("peers %+v", peers)
	}
	c.Cloud.Hubs[0].OverlayIP = "10.0.0.1"
	if _, err := Parse(c, true); err == nil || !strings.Contains(err.Error(), "cloud.hubs[0].overlayIP") {
		t.Fatalf("a hub outside the overlay: %v", err)
	}
}
