package controlplane

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"

	"github.com/egw-project/egw/api"
)

// world: hub "cloud-gw" at "cloud"; edges gw-a (site-a) and gw-b (site-b). web lives at
// site-b and is exposed to site-a, site-b and cloud.
const world = `
{"kind":"ESite","metadata":{"name":"cloud"}}
{"kind":"ESite","metadata":{"name":"site-a"}}
{"kind":"ESite","metadata":{"name":"site-b"}}
{"kind":"EGateway","metadata":{"name":"cloud-gw"},"virtualPresenceIPcidr":"192.168.9.0/24","eSiteName":"cloud","publicKey":"HUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBA=","endpoint":"198.51.100.1:51820"}
{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
{"kind":"EGateway","metadata":{"name":"gw-b"},"virtualPresenceIPcidr":"172.16.5.0/24","eSiteName":"site-b","publicKey":"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="}
{"kind":"EService","metadata":{"name":"web"},"protocol":"TCP","port":8080,"ip":"10.0.0.10","domainName":"web","eSiteName":"site-b"}
{"kind":"EServer","metadata":{"name":"c1"},"ip":"10.0.0.20","eSiteName":"site-a"}
{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
{"kind":"EServer","metadata":{"name":"b1"},"ip":"10.0.0.30","eSiteName":"site-b"}
{"kind":"VirtualPresence","metadata":{"name":"web-site-a","labels":{"egw.io/managed":"true","egw.io/expose":"web"}},"virtualIp":"192.168.0.2","eServiceName":"web","eSiteName":"site-a"}
{"kind":"VirtualPresence","metadata":{"name":"web-site-b","labels":{"egw.io/managed":"true","egw.io/expose":"web"}},"virtualIp":"172.16.5.2","eServiceName":"web","eSiteName":"site-b"}
{"kind":"VirtualPresence","metadata":{"name":"web-cloud","labels":{"egw.io/managed":"true","egw.io/expose":"web"}},"virtualIp":"192.168.9.2","eServiceName":"web","eSiteName":"cloud"}
`

var worldIPAM = IPAM{
	Gateways: map[string]netip.Prefix{"cloud-gw": prefix("100.64.0.0/22"), "gw-a": prefix("100.64.4.0/22"), "gw-b": prefix("100.64.8.0/22")},
	Services: map[string]ServiceAddr{"web": {Gateway: "gw-b", Addr: addr("100.64.8.2")}},
}

func expose(policies string) string {
	return `{"kind":"ServiceExpose","metadata":{"name":"web"},"eServiceName":"web","dnsName":"web.example.com","eSites":["site-a","site-b","cloud"],"ePolicys":` + policies + `}`
}

func vipAt(s *api.Snapshot, service string) *api.VIP {
	for i := range s.VIPs {
		if s.VIPs[i].Service == service {
			return &s.VIPs[i]
		}
	}
	return nil
}

func TestCompileACL(t *testing.T) {
	cases := []struct {
		name     string
		policies string // the exposure's ePolicys and the policies that exist
		objs     string
		// at site-a
		clients   []netip.Addr
		allowSite bool
		decisions []api.Decision
		// hosted at site-b: sites allowed
		hostedSites []string
	}{
		{name: "no policy: default deny", policies: `[]`, hostedSites: nil},
		{name: "dangling policy grants nothing", policies: `["ghost"]`, hostedSites: nil},
		{name: "policy naming a server", policies: `["p1"]`,
			objs:        `{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","b1","ghost"]}`,
			clients:     []netip.Addr{addr("10.0.0.20")},
			decisions:   []api.Decision{{Policy: "p1", Server: "c1", IP: addr("10.0.0.20")}},
			hostedSites: []string{"site-a", "site-b"}},
		{name: "policy naming the site", policies: `["p1","p2"]`,
			objs: `{"kind":"EPolicy","metadata":{"name":"p1"},"allowedSites":["site-a","nowhere"]}
				{"kind":"EPolicy","metadata":{"name":"p2"},"allowedServers":["c2"]}`,
			clients:     []netip.Addr{addr("10.0.0.21")},
			allowSite:   true,
			decisions:   []api.Decision{{Policy: "p1", Site: "site-a"}, {Policy: "p2", Server: "c2", IP: addr("10.0.0.21")}},
			hostedSites: []string{"site-a"}},
		{name: "policy not attached to the exposure grants nothing", policies: `[]`,
			objs: `{"kind":"EPolicy","metadata":{"name":"p1"},"allowedSites":["site-a"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs := decode(t, world+c.objs+expose(c.policies))
			snaps := Compile(objs, worldIPAM, testConfig())
			a := snaps["gw-a"]
			v := vipAt(a, "web")
			if v == nil {
				t.Fatal("no VIP for web at site-a")
			}
			if v.VIP != addr("192.168.0.2") || v.Local || v.ServiceOverlay != addr("100.64.8.2") || v.HomeGateway != "gw-b" ||
				v.Protocol != "TCP" || v.Port != 8080 || v.DNSName != "web.example.com." || v.DomainName != "web" {
				t.Fatalf("VIP %+v", v)
			}
			if !reflect.DeepEqual(v.AllowedClients, c.clients) || v.AllowSite != c.allowSite || !reflect.DeepEqual(v.Decisions, c.decisions) {
				t.Fatalf("ACL: clients %v site %v decisions %+v\nwant clients %v site %v decisions %+v",
					v.AllowedClients, v.AllowSite, v.Decisions, c.clients, c.allowSite, c.decisions)
			}
			b := snaps["gw-b"]
			if len(b.Hosted) != 1 {
				t.Fatalf("hosted at gw-b: %+v", b.Hosted)
			}
			h := b.Hosted[0]
			if !reflect.DeepEqual(h.AllowedSites, c.hostedSites) || h.ServiceIP != addr("10.0.0.10") || h.ServiceOverlay != addr("100.64.8.2") {
				t.Fatalf("hosted %+v, want sites %v", h, c.hostedSites)
			}
			var wantPrefixes []netip.Prefix
			for _, s := range c.hostedSites {
				wantPrefixes = append(wantPrefixes, map[string]netip.Prefix{"site-a": prefix("100.64.6.0/23"), "site-b": prefix("100.64.10.0/23")}[s]) // client halves
			}
			if !reflect.DeepEqual(h.AllowedPrefixes, wantPrefixes) {
				t.Fatalf("hosted prefixes %v, want %v", h.AllowedPrefixes, wantPrefixes)
			}
			// The hub decides no flows: its pair filter follows the exposure (site-b's
			// service exposed to site-a), whatever the policies say.
			hub := snaps["cloud-gw"]
			if want := []api.Link{{A: addr("100.64.4.1"), B: addr("100.64.8.1")}}; !reflect.DeepEqual(hub.Links, want) {
				t.Fatalf("hub links %+v, want %+v", hub.Links, want)
			}
			if len(a.Links) != 0 || len(b.Links) != 0 {
				t.Fatal("an edge got links")
			}
		})
	}
}

func TestCompileSnapshotShape(t *testing.T) {
	objs := decode(t, world+`{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["b1"]}`+expose(`["p1"]`))
	snaps := Compile(objs, worldIPAM, testConfig())
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots", len(snaps))
	}
	a := snaps["gw-a"]
	wantA := api.Snapshot{Gateway: "gw-a", Site: "site-a", OverlayCIDR: prefix("100.64.0.0/10"), OverlayPrefix: prefix("100.64.4.0/22"),
		OverlayIP: addr("100.64.4.1"), CloudOverlayIP: addr("100.64.0.1"), VPCIDR: prefix("192.168.0.0/24"), VPAddr: addr("192.168.0.1"),
		DNSZone: "egw.local."}
	got := *a
	got.Peers, got.Gateways, got.VIPs, got.Hosted = nil, nil, nil, nil
	if !reflect.DeepEqual(got, wantA) {
		t.Fatalf("gw-a:\n got %+v\nwant %+v", got, wantA)
	}
	wantPeers := []api.Peer{{Name: "cloud-gw", Site: "cloud", PublicKey: "HUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBA=", Endpoint: "198.51.100.1:51820",
		AllowedIPs: []netip.Prefix{prefix("100.64.0.0/10")}, OverlayIP: addr("100.64.0.1"), Hub: true},
		// web at site-b is exposed to site-a: gw-a reaches ov(web) on its own session with gw-b.
		{Name: "gw-b", Site: "site-b", PublicKey: "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=", AllowedIPs: []netip.Prefix{prefix("100.64.8.2/32")},
			OverlayIP: addr("100.64.8.1")}}
	if !reflect.DeepEqual(a.Peers, wantPeers) {
		t.Fatalf("edge peers %+v", a.Peers)
	}
	hub := snaps["cloud-gw"]
	if !hub.Hub || a.Hub {
		t.Fatal("Hub flag")
	}
	wantHubPeers := []api.Peer{
		{Name: "gw-a", Site: "site-a", PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", AllowedIPs: []netip.Prefix{prefix("100.64.4.0/22")}, OverlayIP: addr("100.64.4.1")},
		{Name: "gw-b", Site: "site-b", PublicKey: "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA=", AllowedIPs: []netip.Prefix{prefix("100.64.8.0/22")}, OverlayIP: addr("100.64.8.1")},
	}
	if !reflect.DeepEqual(hub.Peers, wantHubPeers) {
		t.Fatalf("hub peers %+v", hub.Peers)
	}
	// gw-a hosts nothing: it lists only itself and the hub.
	wantGateways := []api.GatewayRef{{Name: "cloud-gw", Site: "cloud", OverlayPrefix: prefix("100.64.0.0/22")}, {Name: "gw-a", Site: "site-a", OverlayPrefix: prefix("100.64.4.0/22")}}
	if !reflect.DeepEqual(a.Gateways, wantGateways) {
		t.Fatalf("gateways %+v", a.Gateways)
	}
	// Same-site exposure: local, with the service's own address.
	v := vipAt(snaps["gw-b"], "web")
	if v == nil || !v.Local || v.ServiceIP != addr("10.0.0.10") || v.VIP != addr("172.16.5.2") ||
		!reflect.DeepEqual(v.AllowedClients, []netip.Addr{addr("10.0.0.30")}) {
		t.Fatalf("local VIP %+v", v)
	}
	// The hub consumes web too, with nobody allowed there.
	if v := vipAt(hub, "web"); v == nil || v.VIP != addr("192.168.9.2") || len(v.AllowedClients) != 0 || v.AllowSite {
		t.Fatalf("hub VIP %+v", v)
	}
	// Pure: the same input compiles to the same output.
	again := Compile(decode(t, world+`{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["b1"]}`+expose(`["p1"]`)), worldIPAM, testConfig())
	j1, _ := json.Marshal(snaps)
	j2, _ := json.Marshal(again)
	if string(j1) != string(j2) {
		t.Fatal("Compile is not deterministic")
	}
}

func TestCompileFailsClosed(t *testing.T) {
	cases := []struct {
		name  string
		drop  string // object key removed from world
		check func(t *testing.T, snaps map[string]*api.Snapshot)
	}{
		{"service missing", "EService/web", func(t *testing.T, snaps map[string]*api.Snapshot) {
			if len(snaps["gw-a"].VIPs) != 0 || len(snaps["gw-b"].Hosted) != 0 {
				t.Fatal("a missing service is served")
			}
		}},
		{"consuming site missing", "ESite/site-a", func(t *testing.T, snaps map[string]*api.Snapshot) {
			if len(snaps["gw-a"].VIPs) != 0 {
				t.Fatal("a gateway of a missing site got VIPs")
			}
			if h := snaps["gw-b"].Hosted; len(h) != 1 || len(h[0].AllowedSites) != 1 || h[0].AllowedSites[0] != "site-b" {
				t.Fatalf("hosted %+v", h)
			}
		}},
		{"home site missing", "ESite/site-b", func(t *testing.T, snaps map[string]*api.Snapshot) {
			if len(snaps["gw-a"].VIPs) != 0 || len(snaps["cloud-gw"].Links) != 0 {
				t.Fatal("a service of a missing site is reachable")
			}
		}},
		{"managed VIP missing", "VirtualPresence/web-site-a", func(t *testing.T, snaps map[string]*api.Snapshot) {
			if len(snaps["gw-a"].VIPs) != 0 {
				t.Fatal("VIP without a VirtualPresence")
			}
		}},
		{"gateway without prefix", "", func(t *testing.T, snaps map[string]*api.Snapshot) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var objs []api.Object
			for _, o := range decode(t, world+`{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","b1"]}`+expose(`["p1"]`)) {
				if api.Key(o) != c.drop {
					objs = append(objs, o)
				}
			}
			ipam := worldIPAM
			if c.drop == "" {
				ipam = IPAM{Gateways: map[string]netip.Prefix{"cloud-gw": prefix("100.64.0.0/22")}}
				if snaps := Compile(objs, ipam, testConfig()); len(snaps) != 1 || snaps["cloud-gw"] == nil || len(snaps["cloud-gw"].Peers) != 0 {
					t.Fatalf("gateways without prefix compiled: %v", snaps)
				}
				return
			}
			c.check(t, Compile(objs, ipam, testConfig()))
		})
	}
}

func TestCompilePinnedVIP(t *testing.T) {
	objs := decode(t, world+expose(`[]`)+
		`{"kind":"VirtualPresence","metadata":{"name":"pin"},"virtualIp":"192.168.0.50","eServiceName":"web"}`)
	// The store removes the managed one of a pinned pair; Compile prefers the pin anyway.
	snaps := Compile(objs, worldIPAM, testConfig())
	if v := vipAt(snaps["gw-a"], "web"); v == nil || v.VIP != addr("192.168.0.50") {
		t.Fatalf("pinned VIP %+v", v)
	}
}

// TestCompileGatewaysList: the hub lists every gateway; an edge lists itself, the hub and
// the gateways of the sites its hosted services are exposed to, whatever the policies say.
func TestCompileGatewaysList(t *testing.T) {
	const siteC = `{"kind":"ESite","metadata":{"name":"site-c"}}
{"kind":"EGateway","metadata":{"name":"gw-c"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-c"}
`
	ipam := IPAM{Gateways: map[string]netip.Prefix{}, Services: worldIPAM.Services}
	for k, v := range worldIPAM.Gateways {
		ipam.Gateways[k] = v
	}
	ipam.Gateways["gw-c"] = prefix("100.64.12.0/22")
	all := []string{"cloud-gw", "gw-a", "gw-b", "gw-c"}
	cases := []struct {
		name string
		objs string
		want map[string][]string // gateway -> names listed
	}{
		{name: "web exposed to site-a, site-b, cloud under a policy",
			objs: world + siteC + `{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1"]}` + expose(`["p1"]`),
			want: map[string][]string{"cloud-gw": all, "gw-a": {"cloud-gw", "gw-a"}, "gw-b": {"cloud-gw", "gw-a", "gw-b"}, "gw-c": {"cloud-gw", "gw-c"}}},
		{name: "no policy allows anyone: the exposed sites are listed all the same",
			objs: world + siteC + expose(`[]`),
			want: map[string][]string{"cloud-gw": all, "gw-a": {"cloud-gw", "gw-a"}, "gw-b": {"cloud-gw", "gw-a", "gw-b"}, "gw-c": {"cloud-gw", "gw-c"}}},
		{name: "nothing exposed",
			objs: world + siteC,
			want: map[string][]string{"cloud-gw": all, "gw-a": {"cloud-gw", "gw-a"}, "gw-b": {"cloud-gw", "gw-b"}, "gw-c": {"cloud-gw", "gw-c"}}},
		{name: "exposed to a site without a gateway prefix and a missing site",
			objs: world + `{"kind":"ESite","metadata":{"name":"site-c"}}` +
				`{"kind":"ServiceExpose","metadata":{"name":"web"},"eServiceName":"web","eSites":["site-c","nowhere","site-a"],"ePolicys":[]}`,
			want: map[string][]string{"cloud-gw": {"cloud-gw", "gw-a", "gw-b"}, "gw-a": {"cloud-gw", "gw-a"}, "gw-b": {"cloud-gw", "gw-a", "gw-b"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snaps := Compile(decode(t, c.objs), ipam, testConfig())
			if len(snaps) != len(c.want) {
				t.Fatalf("%d snapshots, want %d", len(snaps), len(c.want))
			}
			for gw, want := range c.want {
				s := snaps[gw]
				if s == nil {
					t.Fatalf("no snapshot of %s", gw)
				}
				var got []string
				for _, g := range s.Gateways {
					if g.OverlayPrefix != ipam.Gateways[g.Name] {
						t.Errorf("%s lists %s at %s, want %s", gw, g.Name, g.OverlayPrefix, ipam.Gateways[g.Name])
					}
					got = append(got, g.Name)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s lists %v, want %v", gw, got, want)
				}
			}
		})
	}
}

// linkWorld: hub cloud-gw; edges gw-a, gw-b, gw-c at site-a, site-b, site-c; site-d has no
// gateway. web lives at site-b, api at site-a, cache at site-c (no overlay address), ui at
// the cloud site.
const linkWorld = `
{"kind":"ESite","metadata":{"name":"cloud"}}
{"kind":"ESite","metadata":{"name":"site-a"}}
{"kind":"ESite","metadata":{"name":"site-b"}}
{"kind":"ESite","metadata":{"name":"site-c"}}
{"kind":"ESite","metadata":{"name":"site-d"}}
{"kind":"EGateway","metadata":{"name":"cloud-gw"},"virtualPresenceIPcidr":"192.168.9.0/24","eSiteName":"cloud","endpoint":"198.51.100.1:51820"}
{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}
{"kind":"EGateway","metadata":{"name":"gw-b"},"virtualPresenceIPcidr":"172.16.5.0/24","eSiteName":"site-b","publicKey":"BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBA="}
{"kind":"EGateway","metadata":{"name":"gw-c"},"virtualPresenceIPcidr":"172.16.6.0/24","eSiteName":"site-c","publicKey":"CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA="}
{"kind":"EService","metadata":{"name":"web"},"protocol":"TCP","port":80,"ip":"10.0.0.10","eSiteName":"site-b"}
{"kind":"EService","metadata":{"name":"api"},"protocol":"TCP","port":443,"ip":"10.0.0.11","eSiteName":"site-a"}
{"kind":"EService","metadata":{"name":"cache"},"protocol":"UDP","port":11211,"ip":"10.0.0.12","eSiteName":"site-c"}
{"kind":"EService","metadata":{"name":"ui"},"protocol":"TCP","port":443,"ip":"10.9.0.10","eSiteName":"cloud"}
`

var linkIPAM = IPAM{
	Gateways: map[string]netip.Prefix{"cloud-gw": prefix("100.64.0.0/22"), "gw-a": prefix("100.64.4.0/22"),
		"gw-b": prefix("100.64.8.0/22"), "gw-c": prefix("100.64.12.0/22")},
	Services: map[string]ServiceAddr{"web": {Gateway: "gw-b", Addr: addr("100.64.8.2")},
		"api": {Gateway: "gw-a", Addr: addr("100.64.4.2")}, "ui": {Gateway: "cloud-gw", Addr: addr("100.64.0.2")}},
}

// TestCompilePeersAndLinks: an edge holds the hub and every gateway linked with it (an
// exposure between their sites, whatever the policies say), each with exactly the
// overlay addresses their traffic uses; the hub lists the linked pairs.
func TestCompilePeersAndLinks(t *testing.T) {
	exp := func(name, svc, sites, policies string) string {
		return `{"kind":"ServiceExpose","metadata":{"name":"` + name + `"},"eServiceName":"` + svc + `","eSites":` + sites + `,"ePolicys":` + policies + `}`
	}
	type peerIPs map[string][]string // peer -> AllowedIPs
	cases := []struct {
		name  string
		objs  string
		eps   map[string]GatewayEndpoints
		peers map[string]peerIPs // gateway -> linked peers (the hub is checked apart)
		links [][2]string
		cands map[[2]string][]netip.AddrPort // (gateway, peer) -> Candidates
	}{
		{name: "nothing exposed: only the hub", peers: map[string]peerIPs{"gw-a": {}, "gw-b": {}, "gw-c": {}}},
		{name: "exposed without a policy still links", objs: exp("web", "web", `["site-a"]`, `[]`),
			peers: map[string]peerIPs{"gw-a": {"gw-b": {"100.64.8.2/32"}}, "gw-b": {"gw-a": {"100.64.6.0/23"}}, "gw-c": {}},
			links: [][2]string{{"100.64.4.1", "100.64.8.1"}}},
		{name: "both ways", objs: exp("web", "web", `["site-a","site-c"]`, `["ghost"]`) + exp("api", "api", `["site-b"]`, `[]`),
			peers: map[string]peerIPs{
				"gw-a": {"gw-b": {"100.64.8.2/32", "100.64.10.0/23"}},
				"gw-b": {"gw-a": {"100.64.4.2/32", "100.64.6.0/23"}, "gw-c": {"100.64.14.0/23"}},
				"gw-c": {"gw-b": {"100.64.8.2/32"}}},
			links: [][2]string{{"100.64.4.1", "100.64.8.1"}, {"100.64.8.1", "100.64.12.1"}}},
		{name: "same site, cloud site, site without gateway, no overlay address: no link",
			objs: exp("web", "web", `["site-b","cloud","site-d","nowhere"]`, `[]`) + exp("ui", "ui", `["site-a"]`, `[]`) +
				exp("cache", "cache", `["site-a"]`, `[]`),
			peers: map[string]peerIPs{"gw-a": {}, "gw-b": {}, "gw-c": {}}},
		{name: "candidates: observed first, then reported, no repeat",
			objs: exp("web", "web", `["site-a"]`, `[]`),
			eps: map[string]GatewayEndpoints{
				"gw-b": {Observed: netip.MustParseAddrPort("198.51.100.7:40000"),
					Reported: []netip.AddrPort{netip.MustParseAddrPort("10.1.0.5:51820"), netip.MustParseAddrPort("198.51.100.7:40000")}},
				"gw-a": {Reported: []netip.AddrPort{netip.MustParseAddrPort("10.2.0.5:51820")}},
				"gw-c": {Observed: netip.MustParseAddrPort("198.51.100.9:1")}},
			peers: map[string]peerIPs{"gw-a": {"gw-b": {"100.64.8.2/32"}}, "gw-b": {"gw-a": {"100.64.6.0/23"}}, "gw-c": {}},
			links: [][2]string{{"100.64.4.1", "100.64.8.1"}},
			cands: map[[2]string][]netip.AddrPort{
				{"gw-a", "gw-b"}: {netip.MustParseAddrPort("198.51.100.7:40000"), netip.MustParseAddrPort("10.1.0.5:51820")},
				{"gw-b", "gw-a"}: {netip.MustParseAddrPort("10.2.0.5:51820")}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snaps := CompileWith(decode(t, linkWorld+c.objs), linkIPAM, c.eps, testConfig())
			for gw, want := range c.peers {
				s := snaps[gw]
				if len(s.Peers) == 0 || !s.Peers[0].Hub || s.Peers[0].Name != "cloud-gw" || s.Peers[0].OverlayIP != addr("100.64.0.1") ||
					!reflect.DeepEqual(s.Peers[0].AllowedIPs, []netip.Prefix{prefix("100.64.0.0/10")}) || s.Peers[0].Candidates != nil {
					t.Fatalf("%s: first peer is not the hub: %+v", gw, s.Peers)
				}
				got := peerIPs{}
				for _, p := range s.Peers[1:] {
					if p.Hub || p.OverlayIP != firstAddr(linkIPAM.Gateways[p.Name]) || p.PublicKey == "" {
						t.Errorf("%s: peer %+v", gw, p)
					}
					for _, a := range p.AllowedIPs {
						got[p.Name] = append(got[p.Name], a.String())
					}
					if want := c.cands[[2]string{gw, p.Name}]; !reflect.DeepEqual(p.Candidates, want) {
						t.Errorf("%s: candidates of %s %v, want %v", gw, p.Name, p.Candidates, want)
					}
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s: peers %v, want %v", gw, got, want)
				}
			}
			hub := snaps["cloud-gw"]
			var links [][2]string
			for _, l := range hub.Links {
				links = append(links, [2]string{l.A.String(), l.B.String()})
			}
			if !reflect.DeepEqual(links, c.links) {
				t.Errorf("hub links %v, want %v", links, c.links)
			}
			for _, p := range hub.Peers {
				if p.Hub || len(p.Candidates) != 0 || p.OverlayIP != firstAddr(linkIPAM.Gateways[p.Name]) {
					t.Errorf("hub peer %+v", p)
				}
			}
			for gw, s := range snaps {
				if gw != "cloud-gw" && s.Links != nil {
					t.Errorf("%s has links", gw)
				}
			}
		})
	}
}
