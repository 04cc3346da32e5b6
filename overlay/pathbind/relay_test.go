package pathbind

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/membind"
	"github.com/egw-project/egw/internal/testclock"
)

// capture is an inner bind that records what is sent.
type capture struct {
	membind.Bind
	sent []sentBatch
}

type sentBatch struct {
	to   netip.AddrPort
	bufs [][]byte
}

func (c *capture) Send(bufs [][]byte, ep conn.Endpoint) error {
	cp := make([][]byte, len(bufs))
	for i, b := range bufs {
		cp[i] = append([]byte(nil), b...)
	}
	c.sent = append(c.sent, sentBatch{to: addrOf(ep), bufs: cp})
	return nil
}

func (c *capture) ParseEndpoint(s string) (conn.Endpoint, error) {
	a, err := netip.ParseAddrPort(s)
	return membind.Endpoint(a), err
}

var (
	ovA   = netip.MustParseAddr("100.64.4.1")
	ovB   = netip.MustParseAddr("100.64.8.1")
	ovC   = netip.MustParseAddr("100.64.12.1")
	ovOff = netip.MustParseAddr("100.64.16.1") // linked, but no session with the hub
	udpA  = netip.MustParseAddrPort("198.51.100.10:40001")
	udpB  = netip.MustParseAddrPort("203.0.113.20:40002")
	udpC  = netip.MustParseAddrPort("203.0.113.30:40003")
)

func newTestRelay(clk *testclock.Clock, cfg RelayConfig) (*Relay, *capture, *Bind) {
	cfg.Now = clk.Now
	r := NewRelay(cfg)
	c := &capture{}
	b := New(c, Config{Self: netip.MustParseAddr("100.64.0.1"), Relay: r, Now: clk.Now, ManualTick: true})
	r.SetEndpoints(map[netip.Addr]netip.AddrPort{ovA: udpA, ovB: udpB, ovC: udpC})
	r.SetLinks([]api.Link{{A: ovA, B: ovB}, {A: ovA, B: ovOff}})
	return r, c, b
}

// deliver runs one received batch through the hub's demux.
func deliver(b *Bind, from netip.AddrPort, pkts ...[]byte) []int {
	bufs := make([][]byte, len(pkts))
	sizes := make([]int, len(pkts))
	eps := make([]conn.Endpoint, len(pkts))
	for i, p := range pkts {
		bufs[i] = make([]byte, len(p), 65535)
		copy(bufs[i], p)
		sizes[i] = len(p)
		eps[i] = &conn.StdNetEndpoint{AddrPort: from}
	}
	b.demux(bufs, sizes, eps, &rxScratch{})
	return sizes
}

func relayed(src, dst netip.Addr, size int) []byte {
	m := wgMessage(size, 9)
	return markRelayed(m[:size+TrailerLen], m, src, dst)
}

func TestRelayDecisions(t *testing.T) {
	clk := newClock()
	for _, tc := range []struct {
		name   string
		from   netip.AddrPort
		pkt    []byte
		reason string // "" = forwarded
		to     netip.AddrPort
	}{
		{"linked pair", udpA, relayed(ovA, ovB, 100), "", udpB},
		{"linked pair, other way", udpB, relayed(ovB, ovA, 100), "", udpA},
		{"sender's source is not its session's", udpC, relayed(ovA, ovB, 100), DropForgedSender, netip.AddrPort{}},
		{"unknown sender", udpA, relayed(netip.MustParseAddr("100.64.40.1"), ovB, 100), DropForgedSender, netip.AddrPort{}},
		{"rogue edge to an unlinked gateway", udpC, relayed(ovC, ovA, 100), DropUnlinked, netip.AddrPort{}},
		{"linked destination without a session", udpA, relayed(ovA, ovOff, 100), DropUnknownDestination, netip.AddrPort{}},
		{"source equals destination", udpA, relayed(ovA, ovA, 100), DropMalformed, netip.AddrPort{}},
		{"too short", udpA, relayed(ovA, ovB, 100)[:20], DropMalformed, netip.AddrPort{}},
		{"unknown inner type", udpA, func() []byte { p := relayed(ovA, ovB, 100); p[0] = 0x77; return p }(), DropMalformed, netip.AddrPort{}},
		{"relayed ping (pings go direct only)", udpA, func() []byte { p := relayed(ovA, ovB, 100); p[0] = kindPing; return p }(), DropMalformed, netip.AddrPort{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, c, b := newTestRelay(clk, RelayConfig{})
			sizes := deliver(b, tc.from, tc.pkt)
			if sizes[0] != 0 {
				t.Fatalf("relayed datagram handed to WireGuard (size %d)", sizes[0])
			}
			st := r.Stats()
			if tc.reason == "" {
				if st.Forwarded != 1 || len(c.sent) != 1 || c.sent[0].to != tc.to {
					t.Fatalf("forwarded %d, sent %+v; want one datagram to %v", st.Forwarded, c.sent, tc.to)
				}
				if string(c.sent[0].bufs[0]) != string(tc.pkt) {
					t.Fatal("forwarded datagram differs from the received one")
				}
				return
			}
			if st.Drops[tc.reason] != 1 || st.Forwarded != 0 || len(c.sent) != 0 {
				t.Fatalf("stats %+v, sent %d; want one %q drop", st, len(c.sent), tc.reason)
			}
		})
	}
}

func TestRelayPassesWireGuardToHub(t *testing.T) {
	clk := newClock()
	r, c, b := newTestRelay(clk, RelayConfig{})
	sizes := deliver(b, udpA, wgMessage(100, 1), relayed(ovA, ovB, 100), wgMessage(60, 2))
	if sizes[0] != 100 || sizes[1] != 0 || sizes[2] != 60 {
		t.Fatalf("sizes %v, want [100 0 60]", sizes)
	}
	if r.Stats().Forwarded != 1 || len(c.sent) != 1 {
		t.Fatalf("forwarded %d", r.Stats().Forwarded)
	}
}

func TestRelayBatchesPerDestination(t *testing.T) {
	clk := newClock()
	r, c, b := newTestRelay(clk, RelayConfig{})
	r.SetLinks([]api.Link{{A: ovA, B: ovB}, {A: ovA, B: ovC}})
	deliver(b, udpA, relayed(ovA, ovB, 100), relayed(ovA, ovC, 100), relayed(ovA, ovB, 100), relayed(ovA, ovB, 100))
	if len(c.sent) != 2 || len(c.sent[0].bufs) != 3 || c.sent[0].to != udpB || len(c.sent[1].bufs) != 1 || c.sent[1].to != udpC {
		t.Fatalf("sends %+v; want 3 datagrams to B in one Send, then 1 to C", c.sent)
	}
	if r.Stats().Forwarded != 4 {
		t.Fatalf("forwarded %d", r.Stats().Forwarded)
	}
}

func TestRelayRateLimit(t *testing.T) {
	clk := newClock()
	// 10 kB/s, burst 2 kB, each packet costs ≥ 256 bytes.
	r, _, b := newTestRelay(clk, RelayConfig{Rate: 10000, Burst: 2000})
	var fwd, limited int
	for range 20 {
		deliver(b, udpA, relayed(ovA, ovB, 100)) // 108 bytes, charged 256
	}
	st := r.Stats()
	fwd, limited = int(st.Forwarded), int(st.Drops[DropRateLimited])
	if fwd != 7 || limited != 13 {
		t.Fatalf("forwarded %d, rate-limited %d; want 7 and 13 (burst 2000 / 256)", fwd, limited)
	}
	// Another sender has its own bucket.
	deliver(b, udpB, relayed(ovB, ovA, 100))
	if r.Stats().Forwarded != 8 {
		t.Fatal("edge-b was limited by edge-a's traffic")
	}
	clk.Add(time.Second) // refills 10000 bytes, capped at the burst
	for range 20 {
		deliver(b, udpA, relayed(ovA, ovB, 100))
	}
	if got := r.Stats().Forwarded - 8; got != 7 {
		t.Fatalf("forwarded %d after a second, want 7", got)
	}
}

func TestRelayRefreshesOnMismatch(t *testing.T) {
	clk := newClock()
	calls := make(chan struct{}, 10)
	r, _, b := newTestRelay(clk, RelayConfig{Refresh: func() { calls <- struct{}{} }})
	newA := netip.MustParseAddrPort("198.51.100.10:50000") // edge-a's NAT rebound
	deliver(b, newA, relayed(ovA, ovB, 100))
	select {
	case <-calls:
	case <-time.After(2 * time.Second):
		t.Fatal("no refresh after a source mismatch")
	}
	r.SetEndpoints(map[netip.Addr]netip.AddrPort{ovA: newA, ovB: udpB})
	deliver(b, newA, relayed(ovA, ovB, 100))
	if r.Stats().Forwarded != 1 {
		t.Fatalf("not forwarded after the refresh: %+v", r.Stats())
	}
	// A flood of forged packets refreshes at most every 500 ms.
	for range 100 {
		deliver(b, udpC, relayed(ovA, ovB, 100))
	}
	time.Sleep(20 * time.Millisecond)
	if len(calls) != 0 {
		t.Fatalf("%d refreshes within 500 ms", len(calls))
	}
}

func TestRelayKeepsBucketsAcrossRefresh(t *testing.T) {
	clk := newClock()
	r, _, b := newTestRelay(clk, RelayConfig{Rate: 1, Burst: 300})
	deliver(b, udpA, relayed(ovA, ovB, 100))
	r.SetEndpoints(map[netip.Addr]netip.AddrPort{ovA: udpA, ovB: udpB})
	deliver(b, udpA, relayed(ovA, ovB, 100))
	if st := r.Stats(); st.Forwarded != 1 || st.Drops[DropRateLimited] != 1 {
		t.Fatalf("stats %+v: a table refresh refilled the bucket", st)
	}
}

func TestRelayRefreshesOnNewHandshake(t *testing.T) {
	clk := newClock()
	calls := make(chan struct{}, 10)
	_, _, b := newTestRelay(clk, RelayConfig{Refresh: func() { calls <- struct{}{} }})
	init := make([]byte, 148)
	init[0] = wgInitiation
	// From a known endpoint: nothing to learn.
	if sizes := deliver(b, udpA, init); sizes[0] != 148 {
		t.Fatalf("handshake not handed to WireGuard (size %d)", sizes[0])
	}
	time.Sleep(100 * time.Millisecond)
	if len(calls) != 0 {
		t.Fatal("refresh after a handshake from a known endpoint")
	}
	// From a new address (a new session, or a NAT rebinding).
	deliver(b, netip.MustParseAddrPort("198.51.100.10:50000"), init)
	select {
	case <-calls:
	case <-time.After(2 * time.Second):
		t.Fatal("no refresh after a handshake from a new address")
	}
}

func TestRelayParksHandshakesUntilTheTableKnowsTheSender(t *testing.T) {
	clk := newClock()
	r, c, b := newTestRelay(clk, RelayConfig{})
	newA := netip.MustParseAddrPort("198.51.100.10:50000") // edge-a restarted on a new port
	init := relayed(ovA, ovB, 148)
	init[0] = wgInitiation
	deliver(b, newA, init)
	deliver(b, newA, relayed(ovA, ovB, 100)) // a transport message is never parked
	if st := r.Stats(); st.Forwarded != 0 || st.Drops[DropForgedSender] != 1 {
		t.Fatalf("stats %+v: want the transport message dropped and the handshake parked", st)
	}
	r.SetEndpoints(map[netip.Addr]netip.AddrPort{ovA: newA, ovB: udpB})
	if st := r.Stats(); st.Forwarded != 1 || len(c.sent) != 1 || c.sent[0].to != udpB || c.sent[0].bufs[0][0] != wgInitiation {
		t.Fatalf("stats %+v, sent %+v: want the parked handshake forwarded to edge-b", st, c.sent)
	}

	// A forged one is parked, then dropped and counted when the table still disagrees.
	deliver(b, udpC, init)
	r.SetEndpoints(map[netip.Addr]netip.AddrPort{ovA: newA, ovB: udpB})
	if st := r.Stats(); st.Forwarded != 1 || st.Drops[DropForgedSender] != 2 {
		t.Fatalf("stats %+v: want the forged handshake counted after the refresh", st)
	}
	// Parked ones expire: counted when the next one is parked after parkFor.
	deliver(b, udpC, init)
	clk.Add(parkFor + time.Second)
	deliver(b, udpC, init)
	if st := r.Stats(); st.Drops[DropForgedSender] != 3 {
		t.Fatalf("stats %+v: an expired parked handshake was not counted", st)
	}
	// Room is bounded.
	for range 2 * maxParked {
		deliver(b, udpC, init)
	}
	r.parkMu.Lock()
	n := len(r.parked)
	r.parkMu.Unlock()
	if n > maxParked {
		t.Fatalf("%d parked", n)
	}
}
