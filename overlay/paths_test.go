package overlay

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/membind"
)

// pathTrio is a hub and two edges whose path peers are each other: edge traffic goes
// on the pair's own session, through the hub's ciphertext relay (direct paths off here;
// overlay/pathbind tests them).
func pathTrio(t *testing.T) (hub, a, b *node, pa, pb api.Peer) {
	t.Helper()
	mn := membind.NewSwitch()
	hubCfg := func(c *Config) { c.Paths.Hub = true }
	hub = newNode(t, mn, "127.0.0.1", forward{}, netip.MustParseAddr("100.64.0.1"), hubCfg)
	a = newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"))
	b = newNode(t, mn, "127.0.0.3", forward{}, netip.MustParseAddr("100.64.8.1"))
	ha, hb := a.peer("a", aPrefix), b.peer("b", bPrefix)
	ha.OverlayIP, hb.OverlayIP = aPrefix.Addr().Next(), bPrefix.Addr().Next()
	if err := hub.SetPeers([]api.Peer{ha, hb}, 0); err != nil {
		t.Fatal(err)
	}
	hub.SetLinks([]api.Link{{A: ha.OverlayIP, B: hb.OverlayIP}})
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint, hp.Hub, hp.OverlayIP = hub.addr, true, netip.MustParseAddr("100.64.0.1")
	pa, pb = ha, hb
	pa.AllowedIPs, pb.AllowedIPs = []netip.Prefix{aPrefix}, []netip.Prefix{bPrefix}
	if err := a.SetPeers([]api.Peer{hp, pb}, DefaultKeepalive); err != nil {
		t.Fatal(err)
	}
	if err := b.SetPeers([]api.Peer{hp, pa}, DefaultKeepalive); err != nil {
		t.Fatal(err)
	}
	return hub, a, b, pa, pb
}

func TestPathPeersThroughTheRelay(t *testing.T) {
	hub, a, b, _, pb := pathTrio(t)
	ca, sb := netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.8.10")
	send(t, a, b, ca, sb, "edge to edge")
	rs, ok := hub.RelayStats()
	if !ok || rs.Forwarded == 0 {
		t.Fatalf("relay stats %+v, %v: want datagrams forwarded", rs, ok)
	}
	if n := hub.Wrapper().Stats().FromOverlayPackets; n != 0 {
		t.Errorf("the hub decrypted %d packets of edge-to-edge traffic", n)
	}
	if _, ok := a.RelayStats(); ok {
		t.Error("an edge has a relay")
	}
	paths := a.Paths()
	if len(paths) != 1 || paths[0].Peer != "b" || paths[0].Mode != "relayed" || paths[0].Endpoint != hub.addr {
		t.Fatalf("edge a's paths %+v", paths)
	}
	// wg show: the path peer's endpoint is the address in use (the hub's).
	if got := hubPeer(t, a, b.key.PublicKey()); got.Endpoint.String() != hub.addr {
		t.Errorf("a's peer b: endpoint %v, want %v", got.Endpoint, hub.addr)
	}
	if obs := hub.ObservedEndpoints(); obs["a"].String() != a.addr || obs["b"].String() != b.addr {
		t.Errorf("hub observed %v", obs)
	}

	// New candidates for b change the bind only: b's session is not touched.
	before := hubPeer(t, a, b.key.PublicKey())
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint, hp.Hub, hp.OverlayIP = hub.addr, true, netip.MustParseAddr("100.64.0.1")
	pb.Candidates = []netip.AddrPort{netip.MustParseAddrPort("192.0.2.7:51820")}
	if err := a.SetPeers([]api.Peer{hp, pb}, DefaultKeepalive); err != nil {
		t.Fatal(err)
	}
	send(t, a, b, ca, sb, "after new candidates")
	after := hubPeer(t, a, b.key.PublicKey())
	if !after.LastHandshake.Equal(before.LastHandshake) {
		t.Errorf("b's session was reset by a candidate change: %v → %v", before.LastHandshake, after.LastHandshake)
	}

	// Off the links, the hub forwards nothing between them.
	hub.SetLinks(nil)
	p := udp4(ca, sb, "unlinked")
	rs, _ = hub.RelayStats()
	dropped := rs.Drops["unlinked"]
	a.tun.Outbound <- p
	// Wait (bounded) for the hub to drop it, not a fixed time: under load the packet
	// can take longer than any fixed wait to reach the hub.
	deadline := time.Now().Add(10 * time.Second)
	for rs.Drops["unlinked"] == dropped && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		rs, _ = hub.RelayStats()
	}
	if rs.Drops["unlinked"] == dropped {
		t.Errorf("relay drops %v: want unlinked counted", rs.Drops)
	}
	select {
	case got := <-b.tun.Inbound:
		t.Fatalf("a packet arrived between unlinked edges: %q", payloadOf(got))
	default:
	}
}

func TestPathPeerRejectsBadInput(t *testing.T) {
	mn := membind.NewSwitch()
	a := newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"))
	b := newNode(t, mn, "127.0.0.3", forward{}, netip.MustParseAddr("100.64.8.1"))
	self := b.peer("self-ip", bPrefix)
	self.OverlayIP = netip.MustParseAddr("100.64.4.1") // a's own overlay IP
	if err := a.SetPeers([]api.Peer{self}, 0); err == nil || !strings.Contains(err.Error(), "this gateway's") {
		t.Fatalf("a path peer with our own overlay IP: %v", err)
	}
	if st, _ := a.PeerStats(); len(st) != 0 {
		t.Fatalf("a refused set changed the device: %+v", st)
	}
}

// TestAnyHubRelays: with two hubs (cloud gateway replicas), an edge's relayed packets go to
// the hub it prefers (the one it syncs from), and move to the other when it prefers that
// one; both hubs relay between the linked pair.
func TestAnyHubRelays(t *testing.T) {
	mn := membind.NewSwitch()
	hubCfg := func(c *Config) { c.Paths.Hub = true }
	h1 := newNode(t, mn, "127.0.0.1", forward{}, netip.MustParseAddr("100.64.0.1"), hubCfg)
	h2 := newNode(t, mn, "127.0.0.4", forward{}, netip.MustParseAddr("100.64.0.126"), hubCfg)
	a := newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"))
	b := newNode(t, mn, "127.0.0.3", forward{}, netip.MustParseAddr("100.64.8.1"))
	ha, hb := a.peer("a", aPrefix), b.peer("b", bPrefix)
	ha.OverlayIP, hb.OverlayIP = aPrefix.Addr().Next(), bPrefix.Addr().Next()
	for _, h := range []*node{h1, h2} {
		if err := h.SetPeers([]api.Peer{ha, hb}, 0); err != nil {
			t.Fatal(err)
		}
		h.SetLinks([]api.Link{{A: ha.OverlayIP, B: hb.OverlayIP}})
	}
	hp1 := h1.peer("cloud-gw", overlayCIDR)
	hp1.Endpoint, hp1.Hub, hp1.OverlayIP = h1.addr, true, netip.MustParseAddr("100.64.0.1")
	hp2 := h2.peer("cloud-gw-2", netip.MustParsePrefix("100.64.0.126/32"))
	hp2.Endpoint, hp2.Hub, hp2.OverlayIP = h2.addr, true, netip.MustParseAddr("100.64.0.126")
	pa, pb := ha, hb
	pa.AllowedIPs, pb.AllowedIPs = []netip.Prefix{aPrefix}, []netip.Prefix{bPrefix}
	for _, e := range []struct {
		n    *node
		peer api.Peer
	}{{a, pb}, {b, pa}} {
		e.n.PreferHub(hp2.OverlayIP)
		if err := e.n.SetPeers([]api.Peer{hp1, hp2, e.peer}, DefaultKeepalive); err != nil {
			t.Fatal(err)
		}
	}
	ca, sb := netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.8.10")
	send(t, a, b, ca, sb, "through hub 2")
	r1, _ := h1.RelayStats()
	r2, _ := h2.RelayStats()
	if r2.Forwarded == 0 || r1.Forwarded != 0 {
		t.Fatalf("relayed by hub 1 %d, hub 2 %d: want hub 2 only", r1.Forwarded, r2.Forwarded)
	}
	// Hub 1 relays once it has an authenticated session with both (their keepalives).
	deadline := time.Now().Add(10 * time.Second)
	for obs := h1.ObservedEndpoints(); obs["a"].String() != a.addr || obs["b"].String() != b.addr; obs = h1.ObservedEndpoints() {
		if time.Now().After(deadline) {
			t.Fatalf("hub 1 observed %v", obs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	a.PreferHub(hp1.OverlayIP)
	b.PreferHub(hp1.OverlayIP)
	send(t, a, b, ca, sb, "through hub 1")
	if r1, _ = h1.RelayStats(); r1.Forwarded == 0 {
		t.Fatal("hub 1 relayed nothing after the edges preferred it")
	}
}
