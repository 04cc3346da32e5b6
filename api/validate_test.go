package api

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

const testKey = "uXf5DPNLbzFDzwE1eIgTBmr8kpNcYtXhSqTBzCfTNVI=" // 32 bytes

func validObjects() map[string]Object {
	tm := func(k string) TypeMeta { return TypeMeta{Kind: k, APIVersion: "v1"} }
	return map[string]Object{
		KindESite: &ESite{TypeMeta: tm(KindESite), Metadata: ObjectMeta{Name: "TokyoChibaSite1"}},
		KindEGateway: &EGateway{TypeMeta: tm(KindEGateway), Metadata: ObjectMeta{Name: "gw"},
			IP: "202.168.0.10", VirtualPresenceIPcidr: "192.168.0.0/24", ESiteName: "site",
			PublicKey: testKey, Endpoint: "203.0.113.1:51820"},
		KindEService: &EService{TypeMeta: tm(KindEService), Metadata: ObjectMeta{Name: "nginx"},
			Protocol: "TCP", Port: 8080, IP: "10.0.0.10", DomainName: "EServiceNginx", ESiteName: "site"},
		KindEServer: &EServer{TypeMeta: tm(KindEServer), Metadata: ObjectMeta{Name: "srv"},
			EServerName: "srv", IP: "10.0.0.20", ESiteName: "site"},
		KindEPolicy: &EPolicy{TypeMeta: tm(KindEPolicy), Metadata: ObjectMeta{Name: "pol"},
			AllowedServers: []string{"srv"}, AllowedSites: []string{"site"}},
		KindServiceExpose: &ServiceExpose{TypeMeta: tm(KindServiceExpose), Metadata: ObjectMeta{Name: "nginx"},
			EServiceName: "nginx", DNSName: "url1.test.com.", ESites: []string{"site"}, EPolicys: []string{"pol"}},
		KindVirtualPresence: &VirtualPresence{TypeMeta: tm(KindVirtualPresence), Metadata: ObjectMeta{Name: "vp1"},
			VirtualIP: "192.168.0.10", EServiceName: "nginx", ESiteName: "site"},
	}
}

func TestValidateValid(t *testing.T) {
	for k, o := range validObjects() {
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", k, err)
		}
	}
	// Optional fields may be empty.
	minimal := []Object{
		&EGateway{Metadata: ObjectMeta{Name: "gw"}, VirtualPresenceIPcidr: "10.1.0.0/16", ESiteName: "s"},
		&EService{Metadata: ObjectMeta{Name: "s"}, Protocol: "UDP", Port: 65535, IP: "10.0.0.1", ESiteName: "s"},
		&EPolicy{Metadata: ObjectMeta{Name: "p"}},
		&ServiceExpose{Metadata: ObjectMeta{Name: "e"}, EServiceName: "s"},
		&VirtualPresence{Metadata: ObjectMeta{Name: "v"}, EServiceName: "s"},
		&EGateway{Metadata: ObjectMeta{Name: "gw"}, VirtualPresenceIPcidr: "10.1.0.0/30", ESiteName: "s", Endpoint: "cloud.example.com:1"},
		&ESite{Metadata: ObjectMeta{Name: strings.Repeat("a", 63)}},
		&ESite{Metadata: ObjectMeta{Name: "0-a"}},
	}
	for _, o := range minimal {
		if err := Validate(o); err != nil {
			t.Errorf("%s: %v", Key(o), err)
		}
	}
}

func TestValidateRules(t *testing.T) {
	tests := []struct {
		name   string
		kind   string
		mutate func(o Object)
		want   string // the whole Error()
	}{
		// names
		{"name required", KindESite, func(o Object) { o.GetMeta().Name = "" },
			`ESite/: metadata.name: required`},
		{"name underscore", KindESite, func(o Object) { o.GetMeta().Name = "a_b" },
			`ESite/a_b: metadata.name: invalid name "a_b": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"name leading hyphen", KindESite, func(o Object) { o.GetMeta().Name = "-a" },
			`ESite/-a: metadata.name: invalid name "-a": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"name trailing hyphen", KindESite, func(o Object) { o.GetMeta().Name = "a-" },
			`ESite/a-: metadata.name: invalid name "a-": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"name with dot", KindESite, func(o Object) { o.GetMeta().Name = "a.b" },
			`ESite/a.b: metadata.name: invalid name "a.b": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"name too long", KindESite, func(o Object) { o.GetMeta().Name = strings.Repeat("a", 64) },
			`ESite/` + strings.Repeat("a", 64) + `: metadata.name: invalid name "` + strings.Repeat("a", 64) + `": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"name non-ASCII", KindESite, func(o Object) { o.GetMeta().Name = "tōkyō" },
			`ESite/tōkyō: metadata.name: invalid name "tōkyō": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"kind mismatch", KindESite, func(o Object) { o.(*ESite).Kind = "EGateway" },
			`ESite/TokyoChibaSite1: kind: is "EGateway" but the object is of kind ESite`},
		{"apiVersion", KindESite, func(o Object) { o.(*ESite).APIVersion = "v2" },
			`ESite/TokyoChibaSite1: apiVersion: must be v1, got "v2"`},

		// EGateway
		{"gateway site required", KindEGateway, func(o Object) { o.(*EGateway).ESiteName = "" },
			`EGateway/gw: eSiteName: required`},
		{"gateway site name", KindEGateway, func(o Object) { o.(*EGateway).ESiteName = "Tokyo Site" },
			`EGateway/gw: eSiteName: invalid name "Tokyo Site": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"gateway ip v6", KindEGateway, func(o Object) { o.(*EGateway).IP = "2001:db8::1" },
			`EGateway/gw: ip: must be an IPv4 address, got "2001:db8::1"`},
		{"gateway ip garbage", KindEGateway, func(o Object) { o.(*EGateway).IP = "202.168.0" },
			`EGateway/gw: ip: invalid IPv4 address "202.168.0"`},
		{"gateway ip multicast", KindEGateway, func(o Object) { o.(*EGateway).IP = "239.1.1.1" },
			`EGateway/gw: ip: must not be a multicast address, got 239.1.1.1`},
		{"gateway ip unspecified", KindEGateway, func(o Object) { o.(*EGateway).IP = "0.0.0.0" },
			`EGateway/gw: ip: must not be the unspecified address, got 0.0.0.0`},
		{"vp cidr required", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "" },
			`EGateway/gw: virtualPresenceIPcidr: required`},
		{"vp cidr not canonical", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "192.168.0.1/24" },
			`EGateway/gw: virtualPresenceIPcidr: 192.168.0.1/24 is not a network address: did you mean 192.168.0.0/24?`},
		{"vp cidr garbage", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "192.168.0.0" },
			`EGateway/gw: virtualPresenceIPcidr: invalid CIDR "192.168.0.0"`},
		{"vp cidr v6", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "fd00::/64" },
			`EGateway/gw: virtualPresenceIPcidr: must be an IPv4 CIDR, got "fd00::/64"`},
		{"vp cidr loopback", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "127.0.0.0/24" },
			`EGateway/gw: virtualPresenceIPcidr: 127.0.0.0/24 overlaps loopback (127.0.0.0/8) space`},
		{"vp cidr link-local", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "169.254.1.0/24" },
			`EGateway/gw: virtualPresenceIPcidr: 169.254.1.0/24 overlaps link-local (169.254.0.0/16) space`},
		{"vp cidr multicast", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "224.0.0.0/24" },
			`EGateway/gw: virtualPresenceIPcidr: 224.0.0.0/24 overlaps multicast (224.0.0.0/4) space`},
		{"vp cidr containing loopback", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "64.0.0.0/2" },
			`EGateway/gw: virtualPresenceIPcidr: 64.0.0.0/2 overlaps loopback (127.0.0.0/8) space`},
		{"vp cidr too small", KindEGateway, func(o Object) { o.(*EGateway).VirtualPresenceIPcidr = "10.0.0.0/31" },
			`EGateway/gw: virtualPresenceIPcidr: 10.0.0.0/31 is too small: a VP CIDR needs at least 4 addresses (/30)`},
		{"public key not base64", KindEGateway, func(o Object) { o.(*EGateway).PublicKey = "not a key!" },
			`EGateway/gw: publicKey: invalid WireGuard key: not base64`},
		{"public key short", KindEGateway, func(o Object) { o.(*EGateway).PublicKey = "AAAA" },
			`EGateway/gw: publicKey: invalid WireGuard key: 3 bytes, want 32`},
		{"endpoint no port", KindEGateway, func(o Object) { o.(*EGateway).Endpoint = "203.0.113.1" },
			`EGateway/gw: endpoint: invalid endpoint "203.0.113.1": want host:port`},
		{"endpoint port 0", KindEGateway, func(o Object) { o.(*EGateway).Endpoint = "203.0.113.1:0" },
			`EGateway/gw: endpoint: invalid endpoint "203.0.113.1:0": port must be 1-65535`},
		{"endpoint port big", KindEGateway, func(o Object) { o.(*EGateway).Endpoint = "203.0.113.1:65536" },
			`EGateway/gw: endpoint: invalid endpoint "203.0.113.1:65536": port must be 1-65535`},
		{"endpoint bad host", KindEGateway, func(o Object) { o.(*EGateway).Endpoint = "bad_host:51820" },
			`EGateway/gw: endpoint: invalid endpoint "bad_host:51820": host must be an IPv4 address or a DNS name`},
		{"endpoint v6 host", KindEGateway, func(o Object) { o.(*EGateway).Endpoint = "[2001:db8::1]:51820" },
			`EGateway/gw: endpoint: invalid endpoint "[2001:db8::1]:51820": host must be an IPv4 address or a DNS name`},

		// EService
		{"port too big", KindEService, func(o Object) { o.(*EService).Port = 70000 },
			`EService/nginx: port: must be 1-65535, got 70000`},
		{"port zero", KindEService, func(o Object) { o.(*EService).Port = 0 },
			`EService/nginx: port: must be 1-65535, got 0`},
		{"port negative", KindEService, func(o Object) { o.(*EService).Port = -1 },
			`EService/nginx: port: must be 1-65535, got -1`},
		{"protocol", KindEService, func(o Object) { o.(*EService).Protocol = "ICMP" },
			`EService/nginx: protocol: must be TCP or UDP, got "ICMP"`},
		{"protocol required", KindEService, func(o Object) { o.(*EService).Protocol = "" },
			`EService/nginx: protocol: required (TCP or UDP)`},
		{"protocol not normalized", KindEService, func(o Object) { o.(*EService).Protocol = "tcp" },
			`EService/nginx: protocol: must be TCP or UDP, got "tcp"`},
		{"service ip required", KindEService, func(o Object) { o.(*EService).IP = "" },
			`EService/nginx: ip: required`},
		{"service ip loopback", KindEService, func(o Object) { o.(*EService).IP = "127.0.0.1" },
			`EService/nginx: ip: must not be a loopback address, got 127.0.0.1`},
		{"service ip multicast", KindEService, func(o Object) { o.(*EService).IP = "224.0.0.1" },
			`EService/nginx: ip: must not be a multicast address, got 224.0.0.1`},
		{"service ip link-local", KindEService, func(o Object) { o.(*EService).IP = "169.254.1.1" },
			`EService/nginx: ip: must not be a link-local address, got 169.254.1.1`},
		{"service ip unspecified", KindEService, func(o Object) { o.(*EService).IP = "0.0.0.0" },
			`EService/nginx: ip: must not be the unspecified address, got 0.0.0.0`},
		{"service ip broadcast", KindEService, func(o Object) { o.(*EService).IP = "255.255.255.255" },
			`EService/nginx: ip: must not be the broadcast address, got 255.255.255.255`},
		{"service ip v4-mapped", KindEService, func(o Object) { o.(*EService).IP = "::ffff:10.0.0.1" },
			`EService/nginx: ip: must be an IPv4 address, got "::ffff:10.0.0.1"`},
		{"service ip leading zero", KindEService, func(o Object) { o.(*EService).IP = "10.0.0.010" },
			`EService/nginx: ip: invalid IPv4 address "10.0.0.010"`},
		{"domain name bad label", KindEService, func(o Object) { o.(*EService).DomainName = "nginx..local" },
			`EService/nginx: domainName: invalid DNS name "nginx..local": label "" must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"domain name underscore", KindEService, func(o Object) { o.(*EService).DomainName = "my_nginx" },
			`EService/nginx: domainName: invalid DNS name "my_nginx": label "my_nginx" must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"service site required", KindEService, func(o Object) { o.(*EService).ESiteName = "" },
			`EService/nginx: eSiteName: required`},
		{"several at once", KindEService, func(o Object) {
			s := o.(*EService)
			s.Port, s.Protocol = 70000, "SCTP"
		}, `EService/nginx: protocol: must be TCP or UDP, got "SCTP"; EService/nginx: port: must be 1-65535, got 70000`},

		// EServer
		{"server ip", KindEServer, func(o Object) { o.(*EServer).IP = "10.0.0.256" },
			`EServer/srv: ip: invalid IPv4 address "10.0.0.256"`},
		{"server ip required", KindEServer, func(o Object) { o.(*EServer).IP = "" },
			`EServer/srv: ip: required`},
		{"server ip loopback", KindEServer, func(o Object) { o.(*EServer).IP = "127.0.0.2" },
			`EServer/srv: ip: must not be a loopback address, got 127.0.0.2`},
		{"server names differ", KindEServer, func(o Object) { o.(*EServer).EServerName = "other" },
			`EServer/srv: eServerName: is "other" but metadata.name is "srv"`},
		{"server site", KindEServer, func(o Object) { o.(*EServer).ESiteName = "" },
			`EServer/srv: eSiteName: required`},

		// EPolicy
		{"allowed server name", KindEPolicy, func(o Object) { o.(*EPolicy).AllowedServers = []string{"srv", "bad name"} },
			`EPolicy/pol: allowedServers[1]: invalid name "bad name": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"allowed site empty", KindEPolicy, func(o Object) { o.(*EPolicy).AllowedSites = []string{""} },
			`EPolicy/pol: allowedSites[0]: must not be empty`},

		// ServiceExpose
		{"expose service required", KindServiceExpose, func(o Object) { o.(*ServiceExpose).EServiceName = "" },
			`ServiceExpose/nginx: eServiceName: required`},
		{"expose service name", KindServiceExpose, func(o Object) { o.(*ServiceExpose).EServiceName = "a/b" },
			`ServiceExpose/nginx: eServiceName: invalid name "a/b": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"dnsName single label", KindServiceExpose, func(o Object) { o.(*ServiceExpose).DNSName = "url1" },
			`ServiceExpose/nginx: dnsName: invalid DNS name "url1": must be a fully qualified name such as "svc.example.com"`},
		{"dnsName long label", KindServiceExpose, func(o Object) { o.(*ServiceExpose).DNSName = strings.Repeat("a", 64) + ".com" },
			`ServiceExpose/nginx: dnsName: invalid DNS name "` + strings.Repeat("a", 64) + `.com": label "` + strings.Repeat("a", 64) + `" must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"dnsName too long", KindServiceExpose, func(o Object) { o.(*ServiceExpose).DNSName = strings.Repeat("a.", 127) + "com" },
			`ServiceExpose/nginx: dnsName: invalid DNS name "` + strings.Repeat("a.", 127) + `com": longer than 253 characters`},
		{"dnsName only dot", KindServiceExpose, func(o Object) { o.(*ServiceExpose).DNSName = "." },
			`ServiceExpose/nginx: dnsName: invalid DNS name ".": empty`},
		{"eSites entry", KindServiceExpose, func(o Object) { o.(*ServiceExpose).ESites = []string{"site", "site-"} },
			`ServiceExpose/nginx: eSites[1]: invalid name "site-": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
		{"ePolicys entry", KindServiceExpose, func(o Object) { o.(*ServiceExpose).EPolicys = []string{"Policy_1"} },
			`ServiceExpose/nginx: ePolicys[0]: invalid name "Policy_1": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},

		// VirtualPresence
		{"virtualIp v6", KindVirtualPresence, func(o Object) { o.(*VirtualPresence).VirtualIP = "fd00::1" },
			`VirtualPresence/vp1: virtualIp: must be an IPv4 address, got "fd00::1"`},
		{"virtualIp garbage", KindVirtualPresence, func(o Object) { o.(*VirtualPresence).VirtualIP = "vip" },
			`VirtualPresence/vp1: virtualIp: invalid IPv4 address "vip"`},
		{"vp service required", KindVirtualPresence, func(o Object) { o.(*VirtualPresence).EServiceName = "" },
			`VirtualPresence/vp1: eServiceName: required`},
		{"vp site name", KindVirtualPresence, func(o Object) { o.(*VirtualPresence).ESiteName = "_x" },
			`VirtualPresence/vp1: eSiteName: invalid name "_x": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := DeepCopy(validObjects()[tc.kind])
			tc.mutate(o)
			err := Validate(o)
			if err == nil {
				t.Fatalf("no error")
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Errors) == 0 {
				t.Fatalf("%T is not a *ValidationError", err)
			}
			if err.Error() != tc.want {
				t.Fatalf("err =\n  %s\nwant\n  %s", err, tc.want)
			}
			for _, fe := range ve.Errors {
				if fe.Object != Key(o) || fe.Field == "" || fe.Message == "" {
					t.Errorf("incomplete FieldError %+v", fe)
				}
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	for _, o := range []Object{nil, (*EService)(nil)} {
		if err := Validate(o); err == nil {
			t.Errorf("Validate(%#v) = nil", o)
		}
	}
	Normalize(nil) // must not panic
	Normalize((*EServer)(nil))
}

func TestValidateAllDuplicates(t *testing.T) {
	objs := []Object{
		&ESite{Metadata: ObjectMeta{Name: "a"}},
		&EPolicy{Metadata: ObjectMeta{Name: "a"}},
		&ESite{Metadata: ObjectMeta{Name: "a"}},
		&ESite{Metadata: ObjectMeta{Name: "b_"}},
	}
	err := ValidateAll(objs)
	const want = `ESite/a: metadata.name: duplicate object; ESite/b_: metadata.name: invalid name "b_": must be 1-63 letters, digits and '-', starting and ending with a letter or digit`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want Object
	}{
		{&EService{Protocol: "udp"}, &EService{TypeMeta: TypeMeta{Kind: KindEService, APIVersion: "v1"}, Protocol: "UDP"}},
		{&EServer{EServerName: "s"}, &EServer{TypeMeta: TypeMeta{Kind: KindEServer, APIVersion: "v1"}, Metadata: ObjectMeta{Name: "s"}, EServerName: "s"}},
		{&ServiceExpose{EServiceName: "web"}, &ServiceExpose{TypeMeta: TypeMeta{Kind: KindServiceExpose, APIVersion: "v1"}, Metadata: ObjectMeta{Name: "web"}, EServiceName: "web"}},
		{&ServiceExpose{Metadata: ObjectMeta{Name: "x"}, EServiceName: "web"}, &ServiceExpose{TypeMeta: TypeMeta{Kind: KindServiceExpose, APIVersion: "v1"}, Metadata: ObjectMeta{Name: "x"}, EServiceName: "web"}},
		{&ESite{TypeMeta: TypeMeta{Kind: "wrong", APIVersion: "v1"}}, &ESite{TypeMeta: TypeMeta{Kind: KindESite, APIVersion: "v1"}}},
	}
	for _, tc := range tests {
		Normalize(tc.in)
		if !reflect.DeepEqual(tc.in, tc.want) {
			t.Errorf("got %#v\nwant %#v", tc.in, tc.want)
		}
		again := DeepCopy(tc.in)
		Normalize(again)
		if !reflect.DeepEqual(again, tc.in) {
			t.Errorf("Normalize not idempotent: %#v", again)
		}
	}
}

func TestCheckVPCIDR(t *testing.T) {
	overlay := netip.MustParsePrefix("100.64.0.0/10")
	tests := []struct {
		vp   string
		want string // "" = ok
	}{
		{"192.168.0.0/24", ""},
		{"10.0.0.0/16", ""},
		{"100.128.0.0/24", ""}, // just past 100.64.0.0/10
		{"100.64.4.0/24", "VP CIDR 100.64.4.0/24 overlaps the overlay CIDR 100.64.0.0/10"},
		{"100.64.0.0/16", "VP CIDR 100.64.0.0/16 overlaps the overlay CIDR 100.64.0.0/10"},
		{"127.0.0.0/24", "VP CIDR 127.0.0.0/24 overlaps loopback (127.0.0.0/8) space"},
		{"169.254.0.0/24", "VP CIDR 169.254.0.0/24 overlaps link-local (169.254.0.0/16) space"},
		{"239.0.0.0/24", "VP CIDR 239.0.0.0/24 overlaps multicast (224.0.0.0/4) space"},
		{"0.0.0.0/0", `VP CIDR 0.0.0.0/0 overlaps "this network" (0.0.0.0/8) space`},
		{"10.0.0.0/31", "VP CIDR 10.0.0.0/31 is too small: a VP CIDR needs at least 4 addresses (/30)"},
		{"10.0.0.0/11", "VP CIDR 10.0.0.0/11 is too large: a VP CIDR may be at most a /16 (its upper half is one gateway's presence-IP pool)"},
		{"fd00::/64", "VP CIDR fd00::/64: must be an IPv4 CIDR"},
	}
	for _, tc := range tests {
		err := CheckVPCIDR(netip.MustParsePrefix(tc.vp), overlay)
		if (err == nil) != (tc.want == "") || (err != nil && err.Error() != tc.want) {
			t.Errorf("CheckVPCIDR(%s) = %v, want %q", tc.vp, err, tc.want)
		}
	}
	if err := CheckVPCIDR(netip.MustParsePrefix("192.168.0.1/24"), overlay); err == nil || err.Error() != "VP CIDR 192.168.0.1/24 is not a network address: did you mean 192.168.0.0/24?" {
		t.Errorf("non-canonical: %v", err)
	}
	if err := CheckVPCIDR(netip.Prefix{}, overlay); err == nil {
		t.Error("invalid prefix accepted")
	}
}

func TestCheckDomainName(t *testing.T) {
	tests := []struct {
		s    string
		min  int
		okay bool
	}{
		{"EServiceNginx", 1, true},
		{"EServiceNginx", 2, false},
		{"url1.test.com", 2, true},
		{"url1.test.com.", 2, true},
		{"URL1.Test.COM", 2, true},
		{"a-b.c", 2, true},
		{"a..b", 1, false},
		{".a.b", 1, false},
		{"a.b..", 1, false},
		{"-a.b", 1, false},
		{"a.b-", 1, false},
		{"*.b.c", 2, false},
		{strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 61), 2, true},  // 253
		{strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 62), 2, false}, // 254
		{strings.Repeat(strings.Repeat("a", 63)+".", 3) + strings.Repeat("a", 61) + ".", 2, true},
	}
	for _, tc := range tests {
		if err := CheckDomainName(tc.s, tc.min); (err == nil) != tc.okay {
			t.Errorf("CheckDomainName(%q, %d) = %v, want ok=%v", tc.s, tc.min, err, tc.okay)
		}
	}
}
