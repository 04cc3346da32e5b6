package controlplane

import (
	"strings"
	"testing"
)

// base is a site with a gateway and a service exposed to it, for the pin rules.
const base = `
{"kind":"ESite","metadata":{"name":"s1"}}
{"kind":"EGateway","metadata":{"name":"g1"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s1"}
{"kind":"EService","metadata":{"name":"nginx"},"protocol":"TCP","port":8080,"ip":"10.0.0.10","eSiteName":"s1"}
{"kind":"EService","metadata":{"name":"redis"},"protocol":"TCP","port":6379,"ip":"10.0.0.11","eSiteName":"s1"}
{"kind":"ServiceExpose","metadata":{"name":"nginx"},"eServiceName":"nginx","eSites":["s1"]}
{"kind":"ServiceExpose","metadata":{"name":"redis"},"eServiceName":"redis","eSites":["s1"]}
`

// Two WireGuard keys for the duplicate-key rules: g1 has key1, the hub key2.
const (
	key1    = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="
	key1Alt = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyB=" // key1's bytes, non-zero padding bits
	key2    = "AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE="
	keyed   = `
{"kind":"ESite","metadata":{"name":"s1"}}
{"kind":"ESite","metadata":{"name":"s2"}}
{"kind":"ESite","metadata":{"name":"cloud"}}
{"kind":"EGateway","metadata":{"name":"cloud-gw"},"virtualPresenceIPcidr":"192.168.9.0/24","eSiteName":"cloud","publicKey":"` + key2 + `"}
{"kind":"EGateway","metadata":{"name":"g1"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s1","publicKey":"` + key1 + `"}
`
)

func TestCrossObjectValidation(t *testing.T) {
	cases := []struct {
		name          string
		before, apply string
		object, field string
		msg           string
	}{
		{"VP CIDR overlaps the overlay", "",
			`{"kind":"EGateway","metadata":{"name":"g"},"virtualPresenceIPcidr":"100.64.8.0/24","eSiteName":"x"}`,
			"EGateway/g", "virtualPresenceIPcidr", "VP CIDR 100.64.8.0/24 overlaps the overlay CIDR 100.64.0.0/10"},
		{"second gateway of a site", base,
			`{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s1"}`,
			"EGateway/g2", "eSiteName", `site "s1" already has EGateway "g1"; a site has one gateway`},
		{"service IP inside its own gateway's VP CIDR", base,
			`{"kind":"EService","metadata":{"name":"bad"},"protocol":"UDP","port":53,"ip":"192.168.0.77","eSiteName":"s1"}`,
			"EService/bad", "ip", "192.168.0.77 is inside the VP CIDR 192.168.0.0/24 of its own site's gateway EGateway/g1"},
		{"gateway whose VP CIDR holds an existing service", `{"kind":"EService","metadata":{"name":"svc"},"protocol":"TCP","port":1,"ip":"172.16.0.5","eSiteName":"s2"}`,
			`{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2"}`,
			"EService/svc", "ip", "172.16.0.5 is inside the VP CIDR 172.16.0.0/24 of its own site's gateway EGateway/g2"},
		{"service exposed twice to one site", base,
			`{"kind":"ServiceExpose","metadata":{"name":"nginx2"},"eServiceName":"nginx","eSites":["s1"]}`,
			"ServiceExpose/nginx2", "eSites", `EService "nginx" is already exposed to site "s1" by ServiceExpose "nginx"`},
		{"pin outside the VP CIDR", base,
			`{"kind":"VirtualPresence","metadata":{"name":"vp"},"virtualIp":"192.168.1.10","eServiceName":"nginx","eSiteName":"s1"}`,
			"VirtualPresence/vp", "virtualIp", `192.168.1.10 is not inside the VP CIDR 192.168.0.0/24 of EGateway/g1 (site "s1")`},
		{"pin on the network address", base,
			`{"kind":"VirtualPresence","metadata":{"name":"vp"},"virtualIp":"192.168.0.0","eServiceName":"nginx"}`,
			"VirtualPresence/vp", "virtualIp", "192.168.0.0 is the network address of the VP CIDR 192.168.0.0/24"},
		{"pin on the gateway's own address", base,
			`{"kind":"VirtualPresence","metadata":{"name":"vp"},"virtualIp":"192.168.0.1","eServiceName":"nginx"}`,
			"VirtualPresence/vp", "virtualIp", "192.168.0.1 is the gateway's own address in the VP CIDR 192.168.0.0/24"},
		{"pin in the upper half", base,
			`{"kind":"VirtualPresence","metadata":{"name":"vp"},"virtualIp":"192.168.0.200","eServiceName":"nginx"}`,
			"VirtualPresence/vp", "virtualIp", "192.168.0.200 is in the upper half of the VP CIDR 192.168.0.0/24 of EGateway/g1 (site \"s1\"), where the gateway leases presence IPs; VIPs come from the lower half 192.168.0.2-192.168.0.127"},
		{"pin taken by another pin", base + `{"kind":"VirtualPresence","metadata":{"name":"vp1"},"virtualIp":"192.168.0.10","eServiceName":"nginx"}`,
			`{"kind":"VirtualPresence","metadata":{"name":"vp2"},"virtualIp":"192.168.0.10","eServiceName":"redis"}`,
			"VirtualPresence/vp2", "virtualIp", `192.168.0.10 is already taken by VirtualPresence "vp1" at site "s1"`},
		{"service pinned twice at one site", base + `{"kind":"VirtualPresence","metadata":{"name":"vp1"},"virtualIp":"192.168.0.10","eServiceName":"nginx"}`,
			`{"kind":"VirtualPresence","metadata":{"name":"vp2"},"virtualIp":"192.168.0.11","eServiceName":"nginx"}`,
			"VirtualPresence/vp2", "eServiceName", `the VIP of EService "nginx" at site "s1" is already pinned by VirtualPresence "vp1"`},
		// Order does not matter: a pin applied first (dangling) makes the gateway that
		// would contradict it fail, naming the pin.
		{"gateway contradicting an earlier pin", `{"kind":"ESite","metadata":{"name":"s1"}}
			{"kind":"VirtualPresence","metadata":{"name":"vp"},"virtualIp":"10.9.9.9","eServiceName":"nginx","eSiteName":"s1"}`,
			`{"kind":"EGateway","metadata":{"name":"g1"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s1"}`,
			"VirtualPresence/vp", "virtualIp", "10.9.9.9 is not inside the VP CIDR 192.168.0.0/24 of EGateway/g1"},
		{"WireGuard key of another edge", keyed,
			`{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2","publicKey":"` + key1 + `"}`,
			"EGateway/g2", "publicKey", `is already the WireGuard key of EGateway "g1"; every gateway needs its own key`},
		// Another base64 spelling of the same 32 bytes (non-zero padding bits) is the same key.
		{"WireGuard key of another edge, spelled differently", keyed,
			`{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2","publicKey":"` + key1Alt + `"}`,
			"EGateway/g2", "publicKey", `is already the WireGuard key of EGateway "g1"`},
		// The hub keeps its key even though the edge sorts first by name.
		{"WireGuard key of the hub", keyed,
			`{"kind":"EGateway","metadata":{"name":"a-edge"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2","publicKey":"` + key2 + `"}`,
			"EGateway/a-edge", "publicKey", `is already the WireGuard key of EGateway "cloud-gw" (the cloud hub)`},
		// A hub registered without a key has the configured one (Config.PublicKey).
		{"WireGuard key of the hub from the config", `{"kind":"ESite","metadata":{"name":"cloud"}}
			{"kind":"EGateway","metadata":{"name":"cloud-gw"},"virtualPresenceIPcidr":"192.168.9.0/24","eSiteName":"cloud"}`,
			`{"kind":"EGateway","metadata":{"name":"a-edge"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2","publicKey":"` + testConfig().PublicKey + `"}`,
			"EGateway/a-edge", "publicKey", `is already the WireGuard key of EGateway "cloud-gw" (the cloud hub)`},
		// Changing an edge's key to another's is refused as well.
		{"key changed to another edge's", keyed + `{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2"}`,
			`{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2","publicKey":"` + key1 + `"}`,
			"EGateway/g2", "publicKey", `is already the WireGuard key of EGateway "g1"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openStore(t, t.TempDir(), testConfig())
			var rev int64
			if c.before != "" {
				rev = mustApply(t, s, c.before)
			}
			_, _, err := s.Apply(decode(t, c.apply))
			wantErr(t, err, CodeInvalid, c.object, c.field, c.msg)
			if now, _ := s.Revision(); now != rev {
				t.Fatalf("revision moved from %d to %d on a refused write", rev, now)
			}
		})
	}
}

func TestOverlappingVPCIDRsOfGatewaysAreFine(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, twoSites) // gw-a and gw-b both use 192.168.0.0/24
	vps, _, _ := s.List("vp")
	if len(vps) != 1 {
		t.Fatalf("want one VirtualPresence, got %d", len(vps))
	}
}

func TestDanglingReferencesShowAsConditions(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, `
{"kind":"EGateway","metadata":{"name":"g"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"nosite"}
{"kind":"EServer","metadata":{"name":"srv"},"ip":"10.0.0.1","eSiteName":"nosite"}
{"kind":"EPolicy","metadata":{"name":"p"},"allowedServers":["ghost"],"allowedSites":["nowhere"]}
{"kind":"ServiceExpose","metadata":{"name":"e"},"eServiceName":"missing","eSites":["nosite"],"ePolicys":["p","Policy2"]}
{"kind":"VirtualPresence","metadata":{"name":"vp"},"virtualIp":"192.168.0.10","eServiceName":"missing"}
{"kind":"VirtualPresence","metadata":{"name":"novip"},"eServiceName":"missing"}
`)
	cases := []struct{ kind, name, msg string }{
		{"EGateway", "g", `ESite "nosite" not found (grants nothing until it exists)`},
		{"EServer", "srv", `ESite "nosite" not found`},
		{"EPolicy", "p", `EServer "ghost" not found; ESite "nowhere" not found`},
		{"ServiceExpose", "e", `EService "missing" not found; ESite "nosite" not found; EPolicy "Policy2" not found`},
		{"VirtualPresence", "vp", `EService "missing" not found; no site the EService "missing" is exposed to has a gateway whose VP CIDR holds 192.168.0.10; set eSiteName`},
		{"VirtualPresence", "novip", "no virtualIp"},
	}
	for _, c := range cases {
		o, err := s.Get(c.kind, c.name)
		if err != nil {
			t.Fatal(err)
		}
		cond := condition(o, CondResolvedRefs)
		if cond == nil || cond.Status != "False" || cond.Reason != "NotFound" || !strings.Contains(cond.Message, c.msg) {
			t.Errorf("%s/%s: ResolvedRefs = %+v, want False with %q", c.kind, c.name, cond, c.msg)
		}
	}
	// Once everything exists, the conditions turn True.
	mustApply(t, s, `
{"kind":"ESite","metadata":{"name":"nosite"}}
{"kind":"ESite","metadata":{"name":"nowhere"}}
{"kind":"EServer","metadata":{"name":"ghost"},"ip":"10.0.0.2","eSiteName":"nosite"}
{"kind":"EPolicy","metadata":{"name":"Policy2"}}
{"kind":"EService","metadata":{"name":"missing"},"protocol":"TCP","port":80,"ip":"10.0.0.3","eSiteName":"nosite"}
`)
	for _, c := range cases[:5] {
		o, _ := s.Get(c.kind, c.name)
		if cond := condition(o, CondResolvedRefs); cond == nil || cond.Status != "True" {
			t.Errorf("%s/%s: ResolvedRefs = %+v after the references were created", c.kind, c.name, cond)
		}
	}
}

// A gateway without a key, and the same gateway applied again with its own key, are fine.
func TestOwnKeyIsNotADuplicate(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, keyed+`{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2"}`)
	mustApply(t, s, `{"kind":"EGateway","metadata":{"name":"g1"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s1","publicKey":"`+key1+`","endpoint":"198.51.100.1:51820"}`)
}

// Over the API a duplicate key is a 422 naming the object and the field.
func TestDuplicateKeyOverAPI(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	if rec := do(t, h, "POST", "/v1/apply", keyed); rec.Code != 200 {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	rec := do(t, h, "POST", "/v1/egateways", `{"kind":"EGateway","metadata":{"name":"g2"},"virtualPresenceIPcidr":"172.16.0.0/24","eSiteName":"s2","publicKey":"`+key2+`"}`)
	body := decodeJSON[errorBody](t, rec)
	if rec.Code != 422 || body.Object != "EGateway/g2" || body.Field != "publicKey" || !strings.Contains(body.Error, `EGateway "cloud-gw" (the cloud hub)`) {
		t.Fatalf("duplicate key: %d %+v", rec.Code, body)
	}
}
