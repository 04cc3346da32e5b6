package snapidx

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
)

func snap(vp string) *api.Snapshot {
	s := &api.Snapshot{Gateways: []api.GatewayRef{
		{Name: "a", Site: "site-a", OverlayPrefix: netip.MustParsePrefix("100.64.4.0/22")},
		{Name: "a2", Site: "site-a", OverlayPrefix: netip.MustParsePrefix("100.64.12.0/22")},
		{Name: "b", Site: "site-b", OverlayPrefix: netip.MustParsePrefix("100.64.8.0/22")},
	}}
	if vp != "" {
		s.VPCIDR = netip.MustParsePrefix(vp)
	}
	for _, a := range []string{"192.168.0.10", "192.168.0.11", "192.168.0.200"} {
		s.VIPs = append(s.VIPs, api.VIP{VIP: netip.MustParseAddr(a), Service: a})
	}
	return s
}

// TestVIPArrayAndMapAgree: the array (small VP CIDR) and the map give the same answers.
func TestVIPArrayAndMapAgree(t *testing.T) {
	withMap, err := Build(snap(""))
	if err != nil {
		t.Fatal(err)
	}
	withArr, err := Build(snap("192.168.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if withMap.arr != nil || withArr.arr == nil {
		t.Fatal("lookups not built as expected")
	}
	base := ip4.U32(netip.MustParseAddr("192.168.0.0"))
	for a := base - 20; a < base+300; a++ {
		i, ok := withMap.VIP(a)
		j, ok2 := withArr.VIP(a)
		if i != j || ok != ok2 {
			t.Fatalf("%s: map %d %v, array %d %v", ip4.Addr(a), i, ok, j, ok2)
		}
		if ok && snap("").VIPs[i].VIP != ip4.Addr(a) {
			t.Fatalf("%s: index %d is another VIP", ip4.Addr(a), i)
		}
	}
}

func TestSites(t *testing.T) {
	x, err := Build(snap("192.168.0.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	for a, want := range map[string]string{"100.64.13.1": "site-a", "100.64.4.200": "site-a", "100.64.9.9": "site-b"} {
		if i, ok := x.SiteOf(ip4.U32(netip.MustParseAddr(a))); !ok || x.SiteName(i) != want {
			t.Errorf("%s: site %v %v, want %s", a, i, ok, want)
		}
	}
	if _, ok := x.SiteOf(ip4.U32(netip.MustParseAddr("100.64.0.1"))); ok {
		t.Error("an address of no gateway has a site")
	}
	if _, ok := x.SiteIndex("site-z"); ok {
		t.Error("a site without a gateway has an index")
	}
}

func TestBuildRefuses(t *testing.T) {
	dup := snap("")
	dup.VIPs[1].VIP = dup.VIPs[0].VIP
	v6 := snap("")
	v6.VIPs[0].VIP = netip.MustParseAddr("::1")
	gw := snap("")
	gw.Gateways[0].OverlayPrefix = netip.Prefix{}
	for name, c := range map[string]struct {
		s    *api.Snapshot
		want string
	}{
		"duplicate VIP": {dup, "given to two services"},
		"IPv6 VIP":      {v6, "not an IPv4 address"},
		"gateway":       {gw, `gateway "a"`},
		"nil":           {nil, "nil snapshot"},
	} {
		if _, err := Build(c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
