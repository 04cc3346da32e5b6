package policy

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

func snap() *api.Snapshot {
	return &api.Snapshot{
		Revision: 3, Site: "site-a",
		Gateways: []api.GatewayRef{
			{Name: "edge-a", Site: "site-a", OverlayPrefix: mp("100.64.4.0/22")},
			{Name: "edge-b", Site: "site-b", OverlayPrefix: mp("100.64.8.0/22")},
			{Name: "edge-c", Site: "site-c", OverlayPrefix: mp("100.64.12.0/22")},
		},
		VIPs: []api.VIP{
			{VIP: ma("192.168.0.10"), Service: "nginx", Expose: "nx", Protocol: "TCP", Port: 8080,
				AllowedClients: []netip.Addr{ma("10.0.0.20")},
				Decisions:      []api.Decision{{Policy: "pol-servers", Server: "client1", IP: ma("10.0.0.20")}}},
			{VIP: ma("192.168.0.11"), Service: "dns", Expose: "dx", Protocol: "UDP", Port: 53, AllowSite: true,
				Decisions: []api.Decision{{Policy: "pol-site", Site: "site-a"}}},
			{VIP: ma("192.168.0.12"), Service: "any", Expose: "ax", Protocol: "ANY", AllowedClients: []netip.Addr{ma("10.0.0.20")}},
			{VIP: ma("192.168.0.13"), Service: "weird", Protocol: "SCTP", AllowSite: true},
		},
		Hosted: []api.Hosted{
			{Service: "web", Expose: "wx", ServiceOverlay: ma("100.64.4.2"), ServiceIP: ma("10.0.0.30"), Protocol: "TCP", Port: 80,
				AllowedSites: []string{"site-b"}},
			{Service: "db", Expose: "dbx", ServiceOverlay: ma("100.64.4.3"), ServiceIP: ma("10.0.0.31"), Protocol: "TCP", Port: 5432,
				AllowedPrefixes: []netip.Prefix{mp("100.64.12.0/22")}},
		},
	}
}

func u(s string) uint32 { return ip4.U32(ma(s)) }

func TestCheckVIP(t *testing.T) {
	c, err := Compile(snap())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name        string
		vip, client string
		proto       uint8
		port        uint16
		echo        bool
		want        Verdict
	}{
		{"allowed server", "192.168.0.10", "10.0.0.20", ip4.ProtoTCP, 8080, false, Allow},
		{"other server", "192.168.0.10", "10.0.0.21", ip4.ProtoTCP, 8080, false, DenyClient},
		{"wrong port", "192.168.0.10", "10.0.0.20", ip4.ProtoTCP, 80, false, DenyPort},
		{"wrong proto", "192.168.0.10", "10.0.0.20", ip4.ProtoUDP, 8080, false, DenyPort},
		{"echo allowed client", "192.168.0.10", "10.0.0.20", ip4.ProtoICMP, 0, true, Allow},
		{"echo denied client", "192.168.0.10", "10.0.0.21", ip4.ProtoICMP, 0, true, DenyClient},
		{"other icmp", "192.168.0.10", "10.0.0.20", ip4.ProtoICMP, 0, false, DenyPort},
		{"whole site", "192.168.0.11", "10.0.0.99", ip4.ProtoUDP, 53, false, Allow},
		{"any proto", "192.168.0.12", "10.0.0.20", 47, 0, false, Allow},
		{"unknown proto allows nothing", "192.168.0.13", "10.0.0.20", ip4.ProtoTCP, 1, false, DenyPort},
		{"no such VIP", "192.168.0.99", "10.0.0.20", ip4.ProtoTCP, 8080, false, DenyNoRule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.CheckVIP(u(tc.vip), u(tc.client), tc.proto, tc.port, tc.echo); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckHosted(t *testing.T) {
	c, _ := Compile(snap())
	cases := []struct {
		name    string
		ov, src string
		port    uint16
		want    Verdict
	}{
		{"allowed site", "100.64.4.2", "100.64.10.5", 80, Allow},
		{"site not allowed", "100.64.4.2", "100.64.13.5", 80, DenyClient},
		{"wrong port", "100.64.4.2", "100.64.10.5", 81, DenyPort},
		{"allowed prefix", "100.64.4.3", "100.64.13.5", 5432, Allow},
		{"unknown source", "100.64.4.2", "100.99.0.1", 80, DenyUnknownSrc},
		{"not hosted", "100.64.4.9", "100.64.10.5", 80, DenyNoRule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.CheckHosted(u(tc.ov), u(tc.src), ip4.ProtoTCP, tc.port, false); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	c, _ := Compile(snap())
	cases := []struct {
		src, dst string
		allowed  bool
		by       string
		pol, who string
	}{
		{"10.0.0.20", "192.168.0.10", true, ByServer, "pol-servers", "client1"},
		{"10.0.0.21", "192.168.0.10", false, ByNoPolicy, "", ""},
		{"10.0.0.21", "192.168.0.11", true, BySite, "pol-site", "site-a"},
		{"100.64.9.1", "100.64.4.2", true, BySite, "", "site-b"},
		{"100.64.13.1", "100.64.4.2", false, ByNoPolicy, "", "site-c"},
		{"100.64.5.1", "100.64.8.2", false, ByNoTarget, "", ""}, // another gateway's overlay address
		{"10.0.0.20", "1.2.3.4", false, ByNoTarget, "", ""},
	}
	for _, tc := range cases {
		e := c.Explain(ma(tc.src), ma(tc.dst))
		who := e.Server
		if e.DecidedBy != ByServer {
			who = e.Site
		}
		if e.Allowed != tc.allowed || e.DecidedBy != tc.by || e.Policy != tc.pol || who != tc.who {
			t.Errorf("%s -> %s: %+v", tc.src, tc.dst, e)
		}
		if e.String() == "" {
			t.Error("empty string")
		}
	}
}

func TestCompileErrors(t *testing.T) {
	if _, err := Compile(nil); err == nil {
		t.Fatal("nil snapshot compiled")
	}
	s := snap()
	s.VIPs = append(s.VIPs, s.VIPs[0])
	if _, err := Compile(s); err == nil {
		t.Fatal("duplicate VIP compiled")
	}
	s = snap()
	s.VIPs[0].AllowedClients = []netip.Addr{ma("2001:db8::1")}
	if _, err := Compile(s); err == nil {
		t.Fatal("IPv6 client compiled")
	}
}

func bigSnapshot() *api.Snapshot {
	s := &api.Snapshot{Site: "site-a", VPCIDR: mp("10.128.0.0/16")}
	for i := 0; i < 10000; i++ {
		v := api.VIP{VIP: netip.AddrFrom4([4]byte{10, 128, byte(i >> 8), byte(i)}), Service: fmt.Sprint("s", i), Protocol: "TCP", Port: 443}
		for j := 0; j < 10; j++ {
			k := i*10 + j
			v.AllowedClients = append(v.AllowedClients, netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}))
		}
		s.VIPs = append(s.VIPs, v)
	}
	return s
}

func TestVIPIndexAndMapAgree(t *testing.T) {
	s := snap()
	withMap, _ := Compile(s)
	s.VPCIDR = mp("192.168.0.0/24")
	withIdx, _ := Compile(s)
	// (snapidx's own test checks which of the two lookups each index uses.)
	for i := uint32(0); i < 300; i++ {
		vip := u("192.168.0.0") + i - 20
		for _, cl := range []string{"10.0.0.20", "10.0.0.21"} {
			if a, b := withMap.CheckVIP(vip, u(cl), ip4.ProtoTCP, 8080, false), withIdx.CheckVIP(vip, u(cl), ip4.ProtoTCP, 8080, false); a != b {
				t.Fatalf("%s: map %v, index %v", ip4.Addr(vip), a, b)
			}
		}
	}
}

func TestLookupsAllocateNothing(t *testing.T) {
	c, err := Compile(bigSnapshot())
	if err != nil {
		t.Fatal(err)
	}
	n := testing.AllocsPerRun(1000, func() {
		c.CheckVIP(u("10.128.19.136"), u("10.0.195.83"), ip4.ProtoTCP, 443, false)
		c.CheckHosted(1, 2, ip4.ProtoTCP, 1, false)
	})
	if n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

// BenchmarkCheckVIP: 10,000 VIPs, 100,000 allowed servers; hits and misses.
//
//	go test -run '^$' -bench . -benchmem ./policy/
func BenchmarkCheckVIP(b *testing.B) {
	c, err := Compile(bigSnapshot())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	i := 0
	for b.Loop() {
		vi := i % 10000
		k := vi*10 + i%13
		vip := uint32(10)<<24 | uint32(128)<<16 | uint32(vi)
		cl := uint32(10)<<24 | uint32(k)
		c.CheckVIP(vip, cl, ip4.ProtoTCP, 443, false)
		i++
	}
	// CPU time per lookup beside wall time (the machine is shared).
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu := ru1.Utime.Nano() + ru1.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
