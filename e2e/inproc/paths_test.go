package inproc

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/gateway"
	"github.com/egw-project/egw/overlay/pathbind"
)

// The paths between edges (docs/ARCHITECTURE.md, "Paths between gateways"): each pair of
// linked edges holds its own WireGuard session, carried through the hub's ciphertext
// relay or, once proven, directly.

// hubDecrypted is how many overlay packets the hub's WireGuard has handed to its NAT
// seam: edge-to-edge traffic must add none.
func (w *world) hubDecrypted() uint64 { return w.hub.Overlay().Wrapper().Stats().FromOverlayPackets }

func (w *world) relayForwarded(t *testing.T) uint64 {
	t.Helper()
	rs, ok := w.hub.Overlay().RelayStats()
	if !ok {
		t.Fatal("the hub has no relay")
	}
	return rs.Forwarded
}

// pathMode returns how edge reaches peer ("direct", "relayed" or "" when unknown).
func pathMode(w *world, edge string, peer string) string {
	n := w.edgeA
	if edge == "edge-b" {
		n = w.edgeB
	}
	for _, p := range n.Overlay().Paths() {
		if p.Peer == peer {
			return p.Mode
		}
	}
	return ""
}

// waitPaths waits (bounded) until both edges reach each other in mode.
func waitPaths(t *testing.T, w *world, mode string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for pathMode(w, "edge-a", "edge-b") != mode || pathMode(w, "edge-b", "edge-a") != mode {
		if time.Since(start) > within {
			w.dumpStats(t)
			t.Fatalf("paths not %s within %v: edge-a %v, edge-b %v", mode, within, w.edgeA.Overlay().Paths(), w.edgeB.Overlay().Paths())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// learnCandidates does what cloudgateway does: the hub's observed endpoints go to the
// control plane, and the edges take their new snapshots (peers with candidates).
func learnCandidates(t *testing.T, w *world) {
	t.Helper()
	for name, ep := range w.hub.Overlay().ObservedEndpoints() {
		w.cp.SetObservedEndpoint(name, ep)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		a, b := w.snapshot(t, "edge-a"), w.snapshot(t, "edge-b")
		if hasCandidates(a.Peers) && hasCandidates(b.Peers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no candidates in the edges' snapshots: %+v / %+v", a.Peers, b.Peers)
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.applySnapshots(t, w.edgeA, w.edgeB)
}

// hasCandidates reports whether every path peer (not a hub) has candidates.
func hasCandidates(peers []api.Peer) bool {
	n := 0
	for _, p := range peers {
		if p.Hub {
			continue
		}
		if len(p.Candidates) == 0 {
			return false
		}
		n++
	}
	return n > 0
}

// TestEdgeToEdgeThroughRelay: without candidates the pair's own session runs through
// the hub's relay, which forwards ciphertext it cannot read.
func TestEdgeToEdgeThroughRelay(t *testing.T) {
	w := newWorld(t, worldOptions{})
	vipEcho := netip.AddrPortFrom(w.vip(t, "echo"), udpPort)
	udpServer(t, w.service, udpPort)
	decrypted, forwarded := w.hubDecrypted(), w.relayForwarded(t)
	for i := range 5 {
		if err := udpAsk(w.client1, vipEcho, "relayed", answerTimeout); err != nil {
			w.dumpStats(t)
			t.Fatalf("exchange %d: %v", i, err)
		}
	}
	if got := w.relayForwarded(t) - forwarded; got < 10 {
		t.Errorf("the relay forwarded %d datagrams for 5 exchanges", got)
	}
	if got := w.hubDecrypted() - decrypted; got != 0 {
		t.Errorf("the hub decrypted %d packets of edge-to-edge traffic", got)
	}
	if m := pathMode(w, "edge-a", "edge-b"); m != "relayed" {
		t.Errorf("edge-a's path to edge-b is %q, want relayed", m)
	}
}

// TestHubPairFilter: the hub relays only between gateways the configuration links. With
// the services gone, the hub's snapshot unlinks the two edges; edges still holding the
// old snapshot get nothing through, and the hub counts why.
func TestHubPairFilter(t *testing.T) {
	w := newWorld(t, worldOptions{})
	vipEcho := netip.AddrPortFrom(w.vip(t, "echo"), udpPort)
	udpServer(t, w.service, udpPort)
	if err := udpAsk(w.client1, vipEcho, "linked", answerTimeout); err != nil {
		t.Fatalf("before: %v", err)
	}
	for _, svc := range []string{"echo", "nginx"} {
		if _, err := w.cp.Delete("EService", svc); err != nil {
			t.Fatal(err)
		}
	}
	if l := w.snapshot(t, hubGW).Links; len(l) != 0 {
		t.Fatalf("hub snapshot still links %v", l)
	}
	w.applySnapshots(t, w.hub) // the edges keep their old snapshots: peers, VIPs, policy
	rs, _ := w.hub.Overlay().RelayStats()
	before := rs.Drops[pathbind.DropUnlinked]
	if err := udpAsk(w.client1, vipEcho, "unlinked", silence); err == nil {
		t.Fatal("an answer through the hub between unlinked gateways")
	}
	rs, _ = w.hub.Overlay().RelayStats()
	if rs.Drops[pathbind.DropUnlinked] <= before {
		t.Fatalf("hub relay drops %v: want unlinked counted", rs.Drops)
	}
}

// TestEdgesGoDirect: with candidates, the edges prove a direct path both ways and the
// hub carries nothing of theirs; when the direct path breaks they are back on the relay
// within 3 s, an open TCP connection survives, and the path comes back; with the hub
// gone, the direct path carries old and new connections.
func TestEdgesGoDirect(t *testing.T) {
	w := newWorld(t, worldOptions{pathTiming: pathbind.Timing{Reprobe: 3 * time.Second, JoinGap: time.Second}})
	vipNginx := netip.AddrPortFrom(w.vip(t, "nginx"), tcpPort)
	vipEcho := netip.AddrPortFrom(w.vip(t, "echo"), udpPort)
	tcpServer(t, w.service, tcpPort)
	udpServer(t, w.service, udpPort)

	learnCandidates(t, w)
	took := waitPaths(t, w, "direct", 5*time.Second)
	t.Logf("direct both ways %v after the candidates arrived", took)

	forwarded, decrypted := w.relayForwarded(t), w.hubDecrypted()
	c, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
	if err != nil {
		w.dumpStats(t)
		t.Fatalf("client1 → nginx direct: %v", err)
	}
	defer c.Close()
	for i := range 5 {
		if err := exchange(c, "direct", answerTimeout); err != nil {
			t.Fatalf("exchange %d on the direct path: %v", i, err)
		}
	}
	if got := w.relayForwarded(t) - forwarded; got != 0 {
		t.Errorf("the relay forwarded %d datagrams while the path was direct", got)
	}
	if got := w.hubDecrypted() - decrypted; got != 0 {
		t.Errorf("the hub decrypted %d packets", got)
	}

	// A firewall between the sites: back to the relay within 3 s, the connection goes on.
	w.blockDirect.Store(true)
	blocked := time.Now()
	go func() { // traffic while it happens
		for range 30 {
			if time.Since(blocked) > 3*time.Second {
				return
			}
			udpAsk(w.client1, vipEcho, "during", 200*time.Millisecond)
		}
	}()
	took = waitPaths(t, w, "relayed", 3*time.Second)
	t.Logf("relayed %v after the block", took)
	if err := exchange(c, "relayed", 5*time.Second); err != nil {
		t.Fatalf("the open connection after falling back to the relay: %v", err)
	}

	// Unblocked: the next probe round (3 s here; 60 s by default) finds the path again.
	w.blockDirect.Store(false)
	waitPaths(t, w, "direct", 10*time.Second)
	if err := exchange(c, "direct again", answerTimeout); err != nil {
		t.Fatalf("the open connection on the direct path again: %v", err)
	}

	// The hub goes away: the direct path keeps the open connection and takes new ones.
	if err := w.hub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exchange(c, "hub gone", answerTimeout); err != nil {
		t.Fatalf("the open connection with the hub gone: %v", err)
	}
	c2, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
	if err != nil {
		t.Fatalf("a new connection with the hub gone: %v", err)
	}
	defer c2.Close()
	if err := exchange(c2, "new, hub gone", answerTimeout); err != nil {
		t.Fatalf("the new connection with the hub gone: %v", err)
	}
	if err := udpAsk(w.client1, vipEcho, "hub gone", answerTimeout); err != nil {
		t.Fatalf("UDP with the hub gone: %v", err)
	}
}

// TestEdgeRestartsOfflineGoesDirect: with the hub gone, an edge restarted from its cache
// (snapshot with its peers' candidates, path-endpoints.json) at a new underlay address
// finds the other edge directly, and the other edge learns where it is now from its
// authenticated ping.
func TestEdgeRestartsOfflineGoesDirect(t *testing.T) {
	w := newWorld(t, worldOptions{})
	vipNginx := netip.AddrPortFrom(w.vip(t, "nginx"), tcpPort)
	tcpServer(t, w.service, tcpPort)
	learnCandidates(t, w)
	waitPaths(t, w, "direct", 5*time.Second)
	c, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
	if err != nil {
		t.Fatalf("before: %v", err)
	}
	c.Close()

	if err := w.hub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.edgeA.Close(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	n := w.node(t, w.cfgs["edge-a"], true, gateway.NodeOptions{Key: w.keys["edge-a"], DNSListen: []string{"127.0.0.1:0"},
		TUN: w.lanA.TUN(), Bind: w.sw.Bind(netip.MustParseAddr("10.99.0.22"))})
	cached, err := gateway.NewSnapshotCache(w.cfgs["edge-a"].StateDir).Load()
	if err != nil || cached == nil {
		t.Fatalf("edge-a's snapshot cache: %v, %v", cached, err)
	}
	if err := n.Apply(cached); err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	w.edgeA = n
	took := waitPaths(t, w, "direct", 5*time.Second)
	c, dialed, err := dialTCP(w.client1, vipNginx, dialTimeout)
	if err != nil {
		w.dumpStats(t)
		t.Fatalf("after the offline restart: %v", err)
	}
	defer c.Close()
	if err := exchange(c, "offline restart", answerTimeout); err != nil {
		t.Fatal(err)
	}
	t.Logf("direct %v after the restart; connected in %v (%v after the restart)", took, dialed, time.Since(restarted))
}
