package pathbind

import (
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/testclock"
)

// nullBind is an inner bind whose Send does nothing.
type nullBind struct{ capture }

func (*nullBind) Send([][]byte, conn.Endpoint) error { return nil }

// newNullHub is a hub whose sends go nowhere, relaying between ovA (at udpA) and ovB (at
// udpB).
func newNullHub(clk *testclock.Clock) (*Bind, *Relay) {
	r := NewRelay(RelayConfig{Now: clk.Now})
	hub := New(&nullBind{}, Config{Self: netip.MustParseAddr("100.64.0.1"), Relay: r, Now: clk.Now, ManualTick: true})
	r.SetEndpoints(map[netip.Addr]netip.AddrPort{ovA: udpA, ovB: udpB})
	r.SetLinks([]api.Link{{A: ovA, B: ovB}})
	return hub, r
}

// The packet path allocates nothing per packet: the hub's forward, an edge's relayed
// send and its relayed receive.
func TestPacketPathAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	clk := newClock()
	hub, r := newNullHub(clk)

	const batch = 64
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	from := &conn.StdNetEndpoint{AddrPort: udpA}
	pkt := relayed(ovA, ovB, 1400)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	sc := &rxScratch{}
	fill := func() {
		for i := range bufs {
			sizes[i] = copy(bufs[i], pkt)
			eps[i] = from
		}
	}
	if n := testing.AllocsPerRun(50, func() { fill(); hub.demux(bufs, sizes, eps, sc) }); n != 0 {
		t.Errorf("hub forward: %v allocs per batch of %d", n, batch)
	}
	if r.Stats().Forwarded == 0 {
		t.Fatal("nothing forwarded")
	}

	edge := New(&nullBind{}, Config{Self: ovA, Now: clk.Now, ManualTick: true})
	if err := edge.SetHubs([]netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:51820")}); err != nil {
		t.Fatal(err)
	}
	if err := edge.SetPeers([]Peer{{Name: "edge-b", OverlayIP: ovB, PublicKey: [32]byte{9}}}); err != nil {
		t.Fatal(err)
	}
	ep, err := edge.ParseEndpoint(PeerEndpoint(ovB))
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, batch)
	for i := range out {
		out[i] = wgMessage(1400, 1)
	}
	if n := testing.AllocsPerRun(50, func() {
		for i := range out {
			out[i] = out[i][:1400]
		}
		_ = edge.Send(out, ep)
	}); n != 0 {
		t.Errorf("edge relayed send: %v allocs per batch of %d", n, batch)
	}

	fromHub := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("192.0.2.1:51820")}
	in := relayed(ovB, ovA, 1400)
	if n := testing.AllocsPerRun(50, func() {
		for i := range bufs {
			sizes[i] = copy(bufs[i], in)
			eps[i] = fromHub
		}
		edge.demux(bufs, sizes, eps, sc)
	}); n != 0 {
		t.Errorf("edge relayed receive: %v allocs per batch of %d", n, batch)
	}
	if sizes[0] != 1400 {
		t.Fatalf("relayed receive size %d", sizes[0])
	}
}

// BenchmarkHubForward is the hub's per-datagram work on the relay path (parse, checks,
// rate limit, grouping; the send itself is a no-op here).
func BenchmarkHubForward(b *testing.B) {
	clk := newClock()
	hub, _ := newNullHub(clk)
	const batch = 64
	bufs := make([][]byte, batch)
	sizes := make([]int, batch)
	eps := make([]conn.Endpoint, batch)
	pkt := relayed(ovA, ovB, 1400)
	from := &conn.StdNetEndpoint{AddrPort: udpA}
	for i := range bufs {
		bufs[i] = append(make([]byte, 0, 65535), pkt...)
	}
	sc := &rxScratch{}
	b.SetBytes(int64(len(pkt)) * batch)
	b.ReportAllocs()
	for b.Loop() {
		for i := range bufs {
			sizes[i] = len(pkt)
			eps[i] = from
		}
		hub.demux(bufs, sizes, eps, sc)
	}
}
