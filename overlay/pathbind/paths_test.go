package pathbind

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/membind"
	"github.com/egw-project/egw/internal/testclock"
)

// trio is a hub and two edges on one switch, the edges linked.
type trio struct {
	sw    *membind.Switch
	clk   *testclock.Clock
	relay *Relay
	hub   *node
	a, b  *node
}

func newTrio(t *testing.T, direct bool) *trio {
	t.Helper()
	sw := membind.NewSwitch()
	clk := newClock()
	tr := &trio{sw: sw, clk: clk, relay: NewRelay(RelayConfig{Now: clk.Now})}
	tr.hub = newNode(t, sw, "192.0.2.1", "100.64.0.1", 51820, clk, tr.relay, false, Timing{})
	tr.a = newNode(t, sw, "198.51.100.10", "100.64.4.1", 40001, clk, nil, direct, Timing{})
	tr.b = newNode(t, sw, "203.0.113.20", "100.64.8.1", 40002, clk, nil, direct, Timing{})
	tr.relay.SetEndpoints(map[netip.Addr]netip.AddrPort{tr.a.ip: tr.a.addr, tr.b.ip: tr.b.addr})
	tr.relay.SetLinks([]api.Link{{A: tr.a.ip, B: tr.b.ip}})
	for _, pair := range [][2]*node{{tr.a, tr.b}, {tr.b, tr.a}} {
		me, other := pair[0], pair[1]
		name := map[*node]string{tr.a: "edge-a", tr.b: "edge-b"}[other]
		if err := me.b.SetHubs([]netip.AddrPort{tr.hub.addr}); err != nil {
			t.Fatal(err)
		}
		if err := me.b.SetPeers([]Peer{other.peer(name, other.addr)}); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// newPair is edge-a and edge-b with no hub, edge-a with direct paths on and edge-b's
// address as its candidate. bDirect: edge-b has direct paths on; aKnown: edge-b has
// edge-a's address as its candidate.
func newPair(t *testing.T, bDirect, aKnown bool) (a, b *node, clk *testclock.Clock) {
	t.Helper()
	sw := membind.NewSwitch()
	clk = newClock()
	a = newNode(t, sw, "198.51.100.10", "100.64.4.1", 40001, clk, nil, true, Timing{})
	b = newNode(t, sw, "203.0.113.20", "100.64.8.1", 40002, clk, nil, bDirect, Timing{})
	if err := a.b.SetPeers([]Peer{b.peer("edge-b", b.addr)}); err != nil {
		t.Fatal(err)
	}
	var cands []netip.AddrPort
	if aKnown {
		cands = append(cands, a.addr)
	}
	if err := b.b.SetPeers([]Peer{a.peer("edge-a", cands...)}); err != nil {
		t.Fatal(err)
	}
	return a, b, clk
}

// send sends msg from `from` to its path peer at overlay IP `to`, as wireguard-go would.
func send(t *testing.T, from *node, to netip.Addr, msg []byte) {
	t.Helper()
	ep, err := from.b.ParseEndpoint(PeerEndpoint(to))
	if err != nil {
		t.Fatal(err)
	}
	if err := from.b.Send([][]byte{msg}, ep); err != nil {
		t.Fatal(err)
	}
}

func (tr *trio) tick() {
	tr.a.b.Tick()
	tr.b.b.Tick()
}

func TestRelayedThenDirect(t *testing.T) {
	tr := newTrio(t, true)

	// Before any probe: relayed through the hub, unchanged end to end.
	msg := wgMessage(100, 0x5a)
	want := bytes.Clone(msg)
	send(t, tr.a, tr.b.ip, msg)
	got := recvOne(t, tr.b)
	if !bytes.Equal(got.data, want) {
		t.Fatalf("relayed message arrived as %x, want %x", got.data[:8], want[:8])
	}
	if pe, ok := got.ep.(*peerEndpoint); !ok || pe.p.ip != tr.a.ip {
		t.Fatalf("relayed message's endpoint is %T %v, want edge-a's peer endpoint", got.ep, got.ep.DstToString())
	}
	waitFor(t, "the relay's count", func() bool { return tr.relay.Stats().Forwarded == 1 })
	if p := pathOf(tr.a.b, "edge-b"); p.Mode != "relayed" || p.Endpoint != tr.hub.addr.String() {
		t.Fatalf("edge-a's path before probing: %+v", p)
	}

	// One tick: both ends probe; pongs prove the path both ways.
	tr.tick()
	waitFor(t, "both paths direct", func() bool {
		return pathOf(tr.a.b, "edge-b").Mode == "direct" && pathOf(tr.b.b, "edge-a").Mode == "direct"
	})
	if p := pathOf(tr.a.b, "edge-b"); p.Endpoint != tr.b.addr.String() {
		t.Fatalf("edge-a's direct path: %+v, want endpoint %v", p, tr.b.addr)
	}
	// The round's calls through the hub may still be on the wire; the count below is of
	// what the relay forwards after the path is direct.
	settle(t, tr.sw, tr.hub, tr.a, tr.b)
	fwd := tr.relay.Stats().Forwarded
	send(t, tr.a, tr.b.ip, wgMessage(200, 1))
	got = recvOne(t, tr.b)
	if len(got.data) != 200 {
		t.Fatalf("direct message of %d bytes, want 200", len(got.data))
	}
	if f := tr.relay.Stats().Forwarded; f != fwd {
		t.Fatalf("relay forwarded %d after the path went direct, want %d", f, fwd)
	}
	if ep, err := tr.a.b.ParseEndpoint(PeerEndpoint(tr.b.ip)); err != nil || ep.DstToString() != tr.b.addr.String() {
		t.Fatalf("wg show would print %v (%v), want %v", ep.DstToString(), err, tr.b.addr)
	}
}

func TestLossGoesBackToRelayAndReprobes(t *testing.T) {
	tr := newTrio(t, true)
	tr.tick()
	waitFor(t, "direct", func() bool { return pathOf(tr.a.b, "edge-b").Mode == "direct" })

	// Block the direct path both ways while traffic flows.
	blocked := func(from, to netip.AddrPort, _ []byte) bool {
		return (from == tr.a.addr && to == tr.b.addr) || (from == tr.b.addr && to == tr.a.addr)
	}
	tr.a.f.setDrop(blocked)
	tr.b.f.setDrop(blocked)
	blockedAt := tr.clk.Now()
	var relayedAfter time.Duration
	for step := 0; step < 40 && relayedAfter == 0; step++ {
		send(t, tr.a, tr.b.ip, wgMessage(100, 2)) // traffic: heartbeats every second
		tr.clk.Add(250 * time.Millisecond)
		tr.tick()
		if pathOf(tr.a.b, "edge-b").Mode == "relayed" {
			relayedAfter = tr.clk.Now().Sub(blockedAt)
		}
	}
	if relayedAfter == 0 || relayedAfter > 3*time.Second {
		t.Fatalf("relayed %v after the block, want within 3s", relayedAfter)
	}
	for len(tr.b.rx) > 0 {
		<-tr.b.rx
	}
	send(t, tr.a, tr.b.ip, wgMessage(100, 3))
	if got := recvOne(t, tr.b); len(got.data) != 100 {
		t.Fatalf("relayed message of %d bytes after loss", len(got.data))
	}

	// Unblocked, but no re-probe before 60 s after the loss.
	tr.a.f.setDrop(nil)
	tr.b.f.setDrop(nil)
	pings := tr.a.b.Stats().Pings
	for range 200 { // 50 s
		tr.clk.Add(250 * time.Millisecond)
		tr.a.b.Tick()
	}
	if p := tr.a.b.Stats().Pings; p != pings {
		t.Fatalf("edge-a sent %d pings within 50s of going relayed, want none", p-pings)
	}
	tr.clk.Add(11 * time.Second)
	tr.a.b.Tick()
	waitFor(t, "direct again", func() bool { return pathOf(tr.a.b, "edge-b").Mode == "direct" })
}

func TestUnreachableCandidatesStayRelayed(t *testing.T) {
	// Endpoint-dependent NATs on both sides: no candidate answers. The pair stays
	// relayed, probing once a minute, and traffic flows through the hub all along.
	tr := newTrio(t, true)
	drop := func(from, to netip.AddrPort, _ []byte) bool { return to != tr.hub.addr }
	tr.a.f.setDrop(drop)
	tr.b.f.setDrop(drop)
	start := tr.a.b.Stats().Pings
	for range 4 * 180 { // 3 minutes
		tr.clk.Add(250 * time.Millisecond)
		tr.tick()
		// Let the calls through the relay arrive at this clock reading, as they would.
		settle(t, tr.sw, tr.hub, tr.a, tr.b)
		if m := pathOf(tr.a.b, "edge-b").Mode; m != "relayed" {
			t.Fatalf("path became %s", m)
		}
	}
	// 4 rounds (0, 60, 120, 180 s) of 5 volleys to 1 candidate.
	if got := tr.a.b.Stats().Pings - start; got > 4*5 {
		t.Fatalf("edge-a sent %d pings in 3 minutes, want ≤ 20 (a round a minute)", got)
	}
	send(t, tr.a, tr.b.ip, wgMessage(64, 4))
	if got := recvOne(t, tr.b); len(got.data) != 64 {
		t.Fatalf("relayed message of %d bytes", len(got.data))
	}
}

func TestDirectDisabledAlwaysRelays(t *testing.T) {
	tr := newTrio(t, false)
	for range 20 {
		tr.clk.Add(250 * time.Millisecond)
		tr.tick()
	}
	if s := tr.a.b.Stats(); s.Pings != 0 || s.Calls != 0 {
		t.Fatalf("paths.direct=false sent %d pings, %d calls", s.Pings, s.Calls)
	}
	send(t, tr.a, tr.b.ip, wgMessage(64, 4))
	recvOne(t, tr.b)
	if p := pathOf(tr.a.b, "edge-b"); p.Mode != "relayed" {
		t.Fatalf("path %+v, want relayed", p)
	}
}

func TestOnlyADirectEndEnablesNoDirectPath(t *testing.T) {
	// edge-b has direct paths off: it answers no pings, so edge-a cannot prove one.
	a, b, clk := newPair(t, false, true)
	for range 12 {
		clk.Add(250 * time.Millisecond)
		a.b.Tick()
		b.b.Tick()
		time.Sleep(time.Millisecond)
	}
	if p := pathOf(a.b, "edge-b"); p.Mode != "relayed" {
		t.Fatalf("path %+v, want relayed", p)
	}
	if s := b.b.Stats(); s.Pongs != 0 {
		t.Fatalf("edge-b sent %d pongs with direct paths off", s.Pongs)
	}
}

func TestPingWithWrongKeyIsIgnored(t *testing.T) {
	tr := newTrio(t, true)
	// A third party that knows edge-a's overlay IP but not the pair key.
	var wrong [32]byte
	wrong[0] = 1
	pr := probe{kind: kindPing, src: tr.a.ip, dst: tr.b.ip, txid: randomTxid()}
	pkt := appendProbe(nil, pr, &wrong)
	ep, _ := tr.hub.f.ParseEndpoint(tr.b.addr.String())
	if err := tr.hub.f.Send([][]byte{pkt}, ep); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "probe rejected", func() bool { return tr.b.b.Stats().ProbeBad == 1 })
	if s := tr.b.b.Stats(); s.Pongs != 0 || s.Pings != 0 {
		t.Fatalf("a forged ping got %d pongs and started %d pings", s.Pongs, s.Pings)
	}
	// A forged pong for no outstanding ping proves nothing either.
	b := tr.b.b
	b.mu.Lock()
	key := b.peers[ip4(tr.a.ip)].key
	b.mu.Unlock()
	pong := appendProbe(nil, probe{kind: kindPong, src: tr.a.ip, dst: tr.b.ip, txid: randomTxid()}, &key)
	if err := tr.a.f.Send([][]byte{pong}, mustEP(t, tr.a, tr.b.addr)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if p := pathOf(b, "edge-a"); p.Mode != "relayed" {
		t.Fatalf("an unsolicited pong made the path %s", p.Mode)
	}
}

func mustEP(t *testing.T, n *node, a netip.AddrPort) conn.Endpoint {
	t.Helper()
	ep, err := n.f.ParseEndpoint(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

func TestPeerFromAPingIsProbedBack(t *testing.T) {
	// edge-b does not know edge-a's address (no candidate; say edge-a restarted on a new
	// port with the hub gone): edge-a's ping teaches it, and both paths become direct.
	a, b, _ := newPair(t, true, false)
	a.b.Tick()
	waitFor(t, "both direct", func() bool {
		return pathOf(a.b, "edge-b").Mode == "direct" && pathOf(b.b, "edge-a").Mode == "direct"
	})
	if p := pathOf(b.b, "edge-a"); p.Endpoint != a.addr.String() {
		t.Fatalf("edge-b's path %+v, want %v", p, a.addr)
	}
}

func TestSetPeersKeepsOtherPaths(t *testing.T) {
	tr := newTrio(t, true)
	tr.tick()
	waitFor(t, "direct", func() bool { return pathOf(tr.a.b, "edge-b").Mode == "direct" })
	since := pathOf(tr.a.b, "edge-b").Since
	// Add a third peer: edge-b's path is untouched.
	k := newKey(t)
	c := Peer{Name: "edge-c", OverlayIP: netip.MustParseAddr("100.64.12.1"), PublicKey: k.PublicKey()}
	if err := tr.a.b.SetPeers([]Peer{tr.b.peer("edge-b", tr.b.addr), c}); err != nil {
		t.Fatal(err)
	}
	if p := pathOf(tr.a.b, "edge-b"); p.Mode != "direct" || !p.Since.Equal(since) {
		t.Fatalf("edge-b's path after adding edge-c: %+v", p)
	}
	// Bad input changes nothing.
	if err := tr.a.b.SetPeers([]Peer{c, c}); err == nil {
		t.Fatal("duplicate peer accepted")
	}
	if len(tr.a.b.Paths()) != 2 {
		t.Fatalf("paths after a rejected SetPeers: %+v", tr.a.b.Paths())
	}
	// Removing edge-b drops its endpoint's route: sends are counted, not panics.
	ep, _ := tr.a.b.ParseEndpoint(PeerEndpoint(tr.b.ip))
	if err := tr.a.b.SetPeers([]Peer{c}); err != nil {
		t.Fatal(err)
	}
	if err := tr.a.b.Send([][]byte{wgMessage(64, 1)}, ep); err != nil {
		t.Fatal(err)
	}
	if s := tr.a.b.Stats(); s.NoPath != 1 {
		t.Fatalf("NoPath %d, want 1", s.NoPath)
	}
	if _, err := tr.a.b.ParseEndpoint(PeerEndpoint(tr.b.ip)); err == nil {
		t.Fatal("endpoint of a removed peer parsed")
	}
}

func TestRelayedSendWritesInPlaceOrCopies(t *testing.T) {
	tr := newTrio(t, false)
	roomy := wgMessage(100, 7)
	tight := make([]byte, 148) // a handshake initiation: no spare capacity
	tight[0] = wgInitiation
	send(t, tr.a, tr.b.ip, roomy)
	if roomy[1] != relayMark[0] || roomy[:108][100] != tr.a.ip.As4()[0] {
		t.Fatal("message with spare capacity was not marked in place")
	}
	send(t, tr.a, tr.b.ip, tight)
	if tight[1] != 0 {
		t.Fatal("message without spare capacity was modified")
	}
	if got := recvOne(t, tr.b); len(got.data) != 100 || got.data[1] != 0 {
		t.Fatalf("first relayed message: %d bytes, byte 1 = %#x", len(got.data), got.data[1])
	}
	if got := recvOne(t, tr.b); len(got.data) != 148 || got.data[0] != wgInitiation {
		t.Fatalf("second relayed message: %d bytes", len(got.data))
	}
}

func TestRelayedFromNonHubIsDropped(t *testing.T) {
	tr := newTrio(t, false)
	msg := markRelayed(make([]byte, 64+TrailerLen), wgMessage(64, 1), tr.a.ip, tr.b.ip)
	if err := tr.a.f.Send([][]byte{msg}, mustEP(t, tr.a, tr.b.addr)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drop", func() bool { return tr.b.b.Stats().RelayNotFromHub == 1 })
	expectNothing(t, tr.b)
}

func TestHandshakeSentAgainOnTheNewDirectPath(t *testing.T) {
	// edge-a restarted with the hub gone: its handshake initiation went nowhere. Once the
	// direct path is proven, the same initiation goes out on it at once.
	a, b, clk := newPair(t, true, false)
	init := make([]byte, wgInitiationLen)
	init[0] = wgInitiation
	init[100] = 0x42
	send(t, a, b.ip, init)
	if s := a.b.Stats(); s.NoPath != 1 {
		t.Fatalf("NoPath %d: the initiation had somewhere to go", s.NoPath)
	}
	a.b.Tick()
	got := recvOne(t, b)
	if len(got.data) != wgInitiationLen || got.data[100] != 0x42 {
		t.Fatalf("edge-b got %d bytes, want the initiation", len(got.data))
	}
	// Once only.
	clk.Add(time.Second)
	a.b.Tick()
	b.b.Tick()
	expectNothing(t, b)
}

func TestKeyRotationKeepsProbesWorking(t *testing.T) {
	tr := newTrio(t, true)
	tr.tick()
	waitFor(t, "direct", func() bool { return pathOf(tr.a.b, "edge-b").Mode == "direct" })
	// Probes signed with the old key must not still be on the wire when the key changes:
	// one arriving after the rotation would fail its MAC and count as a failure of the
	// new key. (The round's calls cross the hub and pongs trail the path switch.)
	settle(t, tr.sw, tr.hub, tr.a, tr.b)
	if bad := tr.a.b.Stats().ProbeBad + tr.b.b.Stats().ProbeBad; bad != 0 {
		t.Fatalf("%d probes failed before the rotation", bad)
	}
	// edge-a rotates its key; edge-b learns the new public key (a new snapshot).
	nk := newKey(t)
	if err := tr.a.b.SetPrivateKey(nk); err != nil {
		t.Fatal(err)
	}
	tr.a.key = nk
	if err := tr.b.b.SetPeers([]Peer{tr.a.peer("edge-a", tr.a.addr)}); err != nil {
		t.Fatal(err)
	}
	// edge-b's peer is new (re-keyed): it probes again, and edge-a's pongs verify.
	tr.clk.Add(time.Second)
	tr.tick()
	waitFor(t, "edge-b direct with the new key", func() bool { return pathOf(tr.b.b, "edge-a").Mode == "direct" })
	settle(t, tr.sw, tr.hub, tr.a, tr.b) // every probe of the new round has been checked
	if bad := tr.a.b.Stats().ProbeBad + tr.b.b.Stats().ProbeBad; bad != 0 {
		t.Fatalf("%d probes failed after the rotation", bad)
	}
}
