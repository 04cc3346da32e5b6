package controlplane

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
)

func gatewayJSON(name, site, cidr string) string {
	return fmt.Sprintf(`{"kind":"ESite","metadata":{"name":%q}}{"kind":"EGateway","metadata":{"name":%q},"virtualPresenceIPcidr":%q,"eSiteName":%q}`, site, name, cidr, site)
}

func vipOf(t *testing.T, s *Store, service, site string) string {
	t.Helper()
	vps, _, err := s.List("vp")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range vps {
		vp := o.(*api.VirtualPresence)
		if vp.EServiceName == service && vp.Status.ESiteName == site {
			return vp.VirtualIP
		}
	}
	return ""
}

func TestHubGetsFirstPrefixWhateverTheOrder(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, gatewayJSON("edge-1", "e1", "192.168.1.0/24"))
	mustApply(t, s, gatewayJSON("cloud-gw", "cloud", "192.168.9.0/24"))
	mustApply(t, s, gatewayJSON("edge-2", "e2", "192.168.1.0/24"))
	st, _ := s.Load()
	want := map[string]netip.Prefix{"cloud-gw": prefix("100.64.0.0/22"), "edge-1": prefix("100.64.4.0/22"), "edge-2": prefix("100.64.8.0/22")}
	for gw, p := range want {
		if st.IPAM.Gateways[gw] != p {
			t.Errorf("%s: overlay prefix %s, want %s", gw, st.IPAM.Gateways[gw], p)
		}
	}
	g, _ := s.Get("EGateway", "edge-1")
	if g.GetStatus().OverlayPrefix != "100.64.4.0/22" || g.GetStatus().OverlayIP != "100.64.4.1" {
		t.Errorf("status %+v", g.GetStatus())
	}
}

func TestAllocationsStableAcrossReopenAndReapply(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, twoSites)
	st1, _ := s.Load()
	vip1 := vipOf(t, s, "web", "site-a")
	if vip1 != "192.168.0.2" {
		t.Fatalf("first VIP %q, want 192.168.0.2 (lower half, first two excluded)", vip1)
	}
	if a := st1.IPAM.Services["web"]; a.Addr != addr("100.64.8.2") || a.Gateway != "gw-b" {
		t.Fatalf("ov(web) = %+v, want 100.64.8.2 at gw-b", a)
	}
	s.Close()
	s = openStore(t, dir, testConfig())
	rev, res, err := s.Apply(decode(t, twoSites))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Action != "unchanged" {
			t.Errorf("re-apply after reopen: %v", r)
		}
	}
	st2, _ := s.Load()
	if rev != st1.Revision || !st2.IPAM.equal(st1.IPAM) || vipOf(t, s, "web", "site-a") != vip1 {
		t.Fatalf("allocations moved across reopen: %+v -> %+v", st1.IPAM, st2.IPAM)
	}
	// An exposure to a second site keeps the first VIP.
	mustApply(t, s, `{"kind":"ServiceExpose","metadata":{"name":"web"},"eServiceName":"web","dnsName":"web.example.com","eSites":["site-b","site-a"],"ePolicys":["p1"]}`)
	if got := vipOf(t, s, "web", "site-a"); got != vip1 {
		t.Fatalf("VIP at site-a moved to %s", got)
	}
	if got := vipOf(t, s, "web", "site-b"); got != "192.168.0.2" {
		t.Fatalf("VIP at site-b %s, want 192.168.0.2 (per-gateway pools)", got)
	}
}

func TestReleaseWhenExposureGoes(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, twoSites)
	mustApply(t, s, `
{"kind":"EService","metadata":{"name":"db"},"protocol":"TCP","port":5432,"ip":"10.0.0.11","eSiteName":"site-b"}
{"kind":"ServiceExpose","metadata":{"name":"db"},"eServiceName":"db","eSites":["site-a"]}`)
	if vipOf(t, s, "web", "site-a") != "192.168.0.2" || vipOf(t, s, "db", "site-a") != "192.168.0.3" {
		t.Fatalf("VIPs web %s db %s", vipOf(t, s, "web", "site-a"), vipOf(t, s, "db", "site-a"))
	}
	if _, err := s.Delete("ServiceExpose", "web"); err != nil {
		t.Fatal(err)
	}
	st, _ := s.Load()
	if _, ok := st.IPAM.Services["web"]; ok {
		t.Fatal("ov(web) not released")
	}
	if vipOf(t, s, "web", "site-a") != "" {
		t.Fatal("managed VirtualPresence of web not deleted")
	}
	if vipOf(t, s, "db", "site-a") != "192.168.0.3" {
		t.Fatal("db's VIP moved when web's was released")
	}
	// Removing a site from eSites releases that site's VIP only.
	mustApply(t, s, `{"kind":"ServiceExpose","metadata":{"name":"db"},"eServiceName":"db","eSites":["site-b"]}`)
	if vipOf(t, s, "db", "site-a") != "" || vipOf(t, s, "db", "site-b") != "192.168.0.2" {
		t.Fatalf("after moving the exposure: site-a %q site-b %q", vipOf(t, s, "db", "site-a"), vipOf(t, s, "db", "site-b"))
	}
	// A deleted gateway releases its prefix.
	mustApply(t, s, `{"kind":"ServiceExpose","metadata":{"name":"db"},"eServiceName":"db","eSites":["site-b"]}`)
	if _, err := s.Delete("EGateway", "gw-a"); err != nil {
		t.Fatal(err)
	}
	st, _ = s.Load()
	if _, ok := st.IPAM.Gateways["gw-a"]; ok {
		t.Fatal("gw-a's overlay prefix not released")
	}
}

func TestPinWinsOverManagedAllocation(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, twoSites)
	if vipOf(t, s, "web", "site-a") != "192.168.0.2" {
		t.Fatal("setup")
	}
	mustApply(t, s, `
{"kind":"EService","metadata":{"name":"db"},"protocol":"TCP","port":5432,"ip":"10.0.0.11","eSiteName":"site-b"}
{"kind":"ServiceExpose","metadata":{"name":"db"},"eServiceName":"db","eSites":["site-a"]}
{"kind":"VirtualPresence","metadata":{"name":"db-pin"},"virtualIp":"192.168.0.2","eServiceName":"db"}`)
	if got := vipOf(t, s, "db", "site-a"); got != "192.168.0.2" {
		t.Fatalf("pinned VIP %q", got)
	}
	if got := vipOf(t, s, "web", "site-a"); got != "192.168.0.3" {
		t.Fatalf("managed VIP of web %q, want it moved to 192.168.0.3", got)
	}
	// No managed VirtualPresence for a pinned pair.
	vps, _, _ := s.List("vp")
	if len(vps) != 2 {
		t.Fatalf("%d VirtualPresences, want 2 (one managed, one pinned)", len(vps))
	}
}

func TestExhaustionIsAConditionNotACrash(t *testing.T) {
	cfg := testConfig()
	cfg.OverlayCIDR = prefix("100.64.0.0/20") // room for 4 /22: the hub's and 3 more
	s := openStore(t, t.TempDir(), cfg)
	for i := 1; i <= 4; i++ {
		mustApply(t, s, gatewayJSON(fmt.Sprintf("edge-%d", i), fmt.Sprintf("e%d", i), "192.168.0.0/29"))
	}
	g, _ := s.Get("EGateway", "edge-4")
	c := condition(g, CondAllocated)
	if c == nil || c.Status != "False" || c.Message != "no free /22 left in the overlay CIDR 100.64.0.0/20" {
		t.Fatalf("edge-4 condition %+v", c)
	}
	if g.GetStatus().OverlayPrefix != "" {
		t.Fatal("edge-4 got a prefix")
	}
	// Freeing one lets the next write allocate it.
	if _, err := s.Delete("EGateway", "edge-1"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, `{"kind":"ESite","metadata":{"name":"e4","labels":{"touch":"1"}}}`)
	g, _ = s.Get("EGateway", "edge-4")
	if g.GetStatus().OverlayPrefix != "100.64.4.0/22" {
		t.Fatalf("edge-4 after release: %q", g.GetStatus().OverlayPrefix)
	}

	// VIPs: a /29 has 192.168.0.2-3 in its lower half.
	var b strings.Builder
	for i := 1; i <= 3; i++ {
		fmt.Fprintf(&b, `{"kind":"EService","metadata":{"name":"svc%d"},"protocol":"TCP","port":80,"ip":"10.0.0.%d","eSiteName":"e2"}
{"kind":"ServiceExpose","metadata":{"name":"svc%d"},"eServiceName":"svc%d","eSites":["e3"]}`, i, i, i, i)
	}
	mustApply(t, s, b.String())
	vp, err := s.Get("VirtualPresence", "svc3-e3")
	if err != nil {
		t.Fatal(err)
	}
	c = condition(vp, CondAllocated)
	want := `no free VIP left in 192.168.0.2-192.168.0.3, the lower half of the VP CIDR 192.168.0.0/29 of EGateway "edge-3"`
	if c == nil || c.Status != "False" || c.Message != want {
		t.Fatalf("svc3-e3 condition %+v, want %q", c, want)
	}
	// Overlay addresses of services: cut the prefix to /29 so only 2 fit.
	cfg2 := testConfig()
	cfg2.OverlayPrefixLen = 29
	s2 := openStore(t, t.TempDir(), cfg2)
	mustApply(t, s2, gatewayJSON("g", "site", "192.168.0.0/24")+b.String())
	for _, n := range []string{"svc1", "svc2", "svc3"} {
		mustApply(t, s2, fmt.Sprintf(`{"kind":"ServiceExpose","metadata":{"name":%q},"eServiceName":%q,"eSites":["site"]}`, n, n))
	}
	mustApply(t, s2, `{"kind":"ESite","metadata":{"name":"e2"}}`)
	mustApply(t, s2, `{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"192.168.1.0/24","eSiteName":"e2"}`)
	svc, _ := s2.Get("EService", "svc3")
	c = condition(svc, CondAllocated)
	if c == nil || c.Status != "False" || !strings.Contains(c.Message, `no free overlay address left in 100.64.0.18-100.64.0.19 of EGateway "g2"`) {
		t.Fatalf("svc3 condition %+v", c)
	}
}

func TestManagedName(t *testing.T) {
	none := func(string) bool { return false }
	cases := []struct {
		expose, site string
		taken        func(string) bool
		want         string
	}{
		{"web", "site-a", none, "web-site-a"},
		{"web", "site-a", func(n string) bool { return n == "web-site-a" }, "web-site-a-2"},
		{strings.Repeat("e", 40), strings.Repeat("s", 40), none, strings.Repeat("e", 40) + "-" + strings.Repeat("s", 13) + "-" + hash8(strings.Repeat("e", 40)+"-"+strings.Repeat("s", 40))},
	}
	for _, c := range cases {
		got := managedName(c.expose, c.site, c.taken)
		if got != c.want || len(got) > 63 {
			t.Errorf("managedName(%q, %q) = %q, want %q", c.expose, c.site, got, c.want)
		}
		if err := api.CheckName(got); err != nil {
			t.Errorf("%q: %v", got, err)
		}
	}
}

// TestDuplicateManagedKeepsFirstByName: of two VirtualPresences labelled managed for one
// exposure and site, reconcile keeps the first by name (with its VIP) and deletes the
// other, whatever order the store holds them in.
func TestDuplicateManagedKeepsFirstByName(t *testing.T) {
	cases := []struct {
		name, dup string
		keep      string
		vip       string
	}{
		{name: "hand-made one sorts first", dup: "aaa-web", keep: "aaa-web", vip: "192.168.0.9"},
		{name: "hand-made one sorts last", dup: "zzz-web", keep: "web-site-a", vip: "192.168.0.2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), testConfig())
			mustApply(t, s, twoSites)
			mustApply(t, s, `{"kind":"VirtualPresence","metadata":{"name":"`+c.dup+`","labels":{"egw.io/managed":"true","egw.io/expose":"web"}},"virtualIp":"192.168.0.9","eServiceName":"web","eSiteName":"site-a"}`)
			vps, _, err := s.List("vp")
			if err != nil {
				t.Fatal(err)
			}
			if len(vps) != 1 || vps[0].GetMeta().Name != c.keep || vps[0].(*api.VirtualPresence).VirtualIP != c.vip {
				var got []string
				for _, o := range vps {
					got = append(got, o.GetMeta().Name+"="+o.(*api.VirtualPresence).VirtualIP)
				}
				t.Fatalf("VirtualPresences %v, want only %s=%s", got, c.keep, c.vip)
			}
		})
	}
}
