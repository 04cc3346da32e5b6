package vpresence

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/snapidx"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func u(s string) uint32 { return ip4.U32(ma(s)) }

func snap() *api.Snapshot {
	return &api.Snapshot{
		Revision: 7, Site: "site-a",
		OverlayCIDR: mp("100.64.0.0/10"), OverlayPrefix: mp("100.64.4.0/22"), OverlayIP: ma("100.64.4.1"),
		VPCIDR: mp("192.168.0.0/24"), VPAddr: ma("192.168.0.1"),
		Gateways: []api.GatewayRef{
			{Name: "edge-a", Site: "site-a", OverlayPrefix: mp("100.64.4.0/22")},
			{Name: "edge-b", Site: "site-b", OverlayPrefix: mp("100.64.8.0/22")},
		},
		VIPs: []api.VIP{
			{VIP: ma("192.168.0.10"), Service: "nginx", Protocol: "TCP", Port: 8080, ServiceOverlay: ma("100.64.8.2")},
			{VIP: ma("192.168.0.12"), Service: "web", Protocol: "TCP", Port: 80, Local: true, ServiceIP: ma("10.0.0.30")},
		},
		Hosted: []api.Hosted{
			{Service: "web", ServiceOverlay: ma("100.64.4.2"), ServiceIP: ma("10.0.0.30"), Protocol: "TCP", Port: 80},
			{Service: "web-udp", ServiceOverlay: ma("100.64.4.3"), ServiceIP: ma("10.0.0.30"), Protocol: "UDP", Port: 80},
		},
	}
}

// newTable builds s's table with its own index, as the engine does.
func newTable(s *api.Snapshot) (*Table, error) {
	idx, err := snapidx.Build(s)
	if err != nil {
		return nil, err
	}
	return NewTable(s, idx)
}

func TestTableLookups(t *testing.T) {
	tb, err := newTable(snap())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := tb.VIP(u("192.168.0.10")); !ok || e.Overlay != u("100.64.8.2") || e.Local {
		t.Fatalf("VIP: %+v", e)
	}
	if e, ok := tb.RemoteByOverlay(u("100.64.8.2")); !ok || e.VIP != u("192.168.0.10") {
		t.Fatal("ov(S) -> VIP")
	}
	if e, ok := tb.Hosted(u("100.64.4.3")); !ok || e.Proto != ip4.ProtoUDP {
		t.Fatal("hosted")
	}
	if e, ok := tb.HostedByService(u("10.0.0.30"), ip4.ProtoUDP, 80); !ok || e.Overlay != u("100.64.4.3") {
		t.Fatal("reverse (ip, udp, 80)")
	}
	// An echo reply names no service: the host runs two, so the table must not pick one
	// (nat attributes echo replies through the EchoTable).
	if e, ok := tb.HostedByService(u("10.0.0.30"), ip4.ProtoICMP, 1234); ok {
		t.Fatalf("ICMP from a host with only TCP/UDP services matched %q", e.Name)
	}
	if _, ok := tb.HostedByService(u("10.0.0.30"), ip4.ProtoTCP, 81); ok {
		t.Fatal("wrong port matched")
	}
	if e, ok := tb.LocalByService(u("10.0.0.30"), ip4.ProtoTCP, 80); !ok || e.VIP != u("192.168.0.12") {
		t.Fatal("local reverse")
	}
	if tb.ClientRange != (Range{u("100.64.6.0"), u("100.64.7.254")}) || tb.PresenceRange != (Range{u("192.168.0.128"), u("192.168.0.254")}) {
		t.Fatalf("ranges %+v %+v", tb.ClientRange, tb.PresenceRange)
	}
	if !tb.InOverlay(u("100.100.0.1")) || tb.InOverlay(u("192.168.0.1")) || !tb.InOwnPrefix(u("100.64.7.1")) {
		t.Fatal("prefix tests")
	}
}

func TestTableErrors(t *testing.T) {
	cases := map[string]func(*api.Snapshot){
		"nil overlay":      func(s *api.Snapshot) { s.OverlayCIDR = netip.Prefix{} },
		"vp overlaps":      func(s *api.Snapshot) { s.VPCIDR = mp("100.64.128.0/24") },
		"VIP outside":      func(s *api.Snapshot) { s.VIPs[0].VIP = ma("10.9.9.9") },
		"VIP in pool":      func(s *api.Snapshot) { s.VIPs[0].VIP = ma("192.168.0.200") },
		"duplicate VIP":    func(s *api.Snapshot) { s.VIPs[1].VIP = s.VIPs[0].VIP },
		"duplicate hosted": func(s *api.Snapshot) { s.Hosted[1].ServiceOverlay = s.Hosted[0].ServiceOverlay },
		"ipv6 overlay":     func(s *api.Snapshot) { s.OverlayPrefix = mp("fd00::/64") },
		"local without IP": func(s *api.Snapshot) { s.VIPs[1].ServiceIP = netip.Addr{} },
	}
	for name, mod := range cases {
		s := snap()
		mod(s)
		if _, err := newTable(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := newTable(nil); err == nil {
		t.Error("nil accepted")
	}
}

func TestPoolLeaseGetPeer(t *testing.T) {
	p := NewPool(Range{100, 103}, PoolConfig{Idle: time.Minute, Quiet: time.Minute})
	a, err := p.Lease(7, t0)
	if err != nil || a != 100 {
		t.Fatal(a, err)
	}
	if b, _ := p.Lease(7, t0); b != a {
		t.Fatal("same key, new address")
	}
	if b, ok := p.Get(7, t0); !ok || b != a {
		t.Fatal("get")
	}
	if k, ok := p.Peer(a, t0); !ok || k != 7 {
		t.Fatal("peer")
	}
	if _, ok := p.Peer(99, t0); ok {
		t.Fatal("address outside the pool")
	}
	if _, ok := p.Peer(101, t0); ok {
		t.Fatal("unleased address has a peer")
	}
}

func TestPoolIdleRefreshQuietLongestFree(t *testing.T) {
	p := NewPool(Range{100, 102}, PoolConfig{Idle: time.Minute, Quiet: 5 * time.Minute})
	now := t0
	a1, _ := p.Lease(1, now)
	a2, _ := p.Lease(2, now)
	a3, _ := p.Lease(3, now)
	if _, err := p.Lease(4, now); !errors.Is(err, ErrExhausted) {
		t.Fatal("exhaustion not reported", err)
	}
	// Traffic either way refreshes: key 1 by Get, key 2 by Peer; key 3 idles.
	for i := 0; i < 3; i++ {
		now = now.Add(40 * time.Second)
		p.Get(1, now)
		p.Peer(a2, now)
	}
	if _, ok := p.Peer(a3, now); ok {
		t.Fatal("idle lease still answers")
	}
	if _, ok := p.Get(1, now); !ok {
		t.Fatal("refreshed lease expired")
	}
	// a3 expired at t0+1m; it rests until t0+6m.
	if _, err := p.Lease(4, now); err == nil {
		t.Fatal("address reused inside its quiet period")
	}
	// Let 1 and 2 expire later than 3: at reuse time the longest-free (a3) goes first.
	now = t0.Add(7 * time.Minute)
	if n := p.Sweep(now); n != 2 {
		t.Fatalf("swept %d", n)
	}
	st := p.Stats(now)
	if st.InUse != 0 || st.Size != 3 || st.Quiet != 2 {
		t.Fatalf("stats %+v", st)
	}
	b, err := p.Lease(5, now)
	if err != nil || b != a3 {
		t.Fatalf("got %d %v, want the longest-free %d", b, err, a3)
	}
	if _, err := p.Lease(6, now); err == nil {
		t.Fatal("a1/a2 reused inside their quiet period")
	}
	now = now.Add(10 * time.Minute)
	b1, _ := p.Lease(6, now)
	b2, _ := p.Lease(7, now)
	if !(b1 == a1 || b1 == a2) || b1 == b2 {
		t.Fatal("reuse order")
	}
	p.Release(6, now)
	if _, ok := p.Get(6, now); ok {
		t.Fatal("released lease still there")
	}
}

func TestPoolUpperHalf(t *testing.T) {
	r, err := UpperHalf(mp("172.16.5.0/24"))
	if err != nil || r != (Range{u("172.16.5.128"), u("172.16.5.254")}) || r.Size() != 127 {
		t.Fatal(r, err)
	}
	if _, err := UpperHalf(mp("10.0.0.0/31")); err == nil {
		t.Fatal("/31 accepted")
	}
}

func TestPoolConcurrent(t *testing.T) {
	p := NewPool(Range{1000, 1999}, PoolConfig{Idle: time.Minute})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := uint64(i % 500)
				a, err := p.Lease(k, t0)
				if err != nil {
					t.Error(err)
					return
				}
				if got, ok := p.Peer(a, t0); !ok || got != k {
					t.Errorf("address %d maps to %d, want %d", a, got, k)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if st := p.Stats(t0); st.InUse != 500 {
		t.Fatalf("in use %d", st.InUse)
	}
}

func TestPoolLookupsAllocateNothing(t *testing.T) {
	p := NewPool(Range{1000, 1999}, PoolConfig{})
	a, _ := p.Lease(1, t0)
	if n := testing.AllocsPerRun(1000, func() {
		p.Get(1, t0)
		p.Peer(a, t0)
		p.Lease(1, t0)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
