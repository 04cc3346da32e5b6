package dnsd

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/miekg/dns"
)

// want describes an expected reply: rcode, answer strings (type + rdata, owner name
// checked separately), whether the authority section carries the zone's SOA.
type want struct {
	rcode   int
	answers []string
	soa     bool
	noReply bool
}

func rdata(rr dns.RR) string {
	switch v := rr.(type) {
	case *dns.A:
		return "A " + v.A.String()
	case *dns.PTR:
		return "PTR " + v.Ptr
	case *dns.SOA:
		return "SOA " + v.Ns
	}
	return rr.String()
}

func check(t *testing.T, rec *recorder, q *dns.Msg, w want) {
	t.Helper()
	if w.noReply {
		if len(rec.msgs) != 0 {
			t.Fatalf("want no reply, got %v", rec.msgs[0])
		}
		return
	}
	m := rec.one(t)
	if m.Id != q.Id || !m.Response {
		t.Errorf("reply id %d response %v, want id %d response", m.Id, m.Response, q.Id)
	}
	if m.Rcode != w.rcode {
		t.Errorf("rcode %s, want %s\n%v", dns.RcodeToString[m.Rcode], dns.RcodeToString[w.rcode], m)
	}
	var got []string
	for _, rr := range m.Answer {
		got = append(got, rdata(rr))
		if len(q.Question) == 1 && rr.Header().Name != q.Question[0].Name {
			t.Errorf("answer owner %q, want the question's %q", rr.Header().Name, q.Question[0].Name)
		}
		if rr.Header().Ttl != 5 {
			t.Errorf("answer TTL %d, want 5", rr.Header().Ttl)
		}
	}
	if !slices.Equal(got, w.answers) {
		t.Errorf("answers %q, want %q", got, w.answers)
	}
	hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == dns.TypeSOA
	if hasSOA != w.soa {
		t.Errorf("authority %v, want SOA: %v", m.Ns, w.soa)
	}
	if hasSOA {
		if soa := m.Ns[0].(*dns.SOA); soa.Minttl != 5 || soa.Hdr.Name != "egw.local." {
			t.Errorf("SOA %v: want owner egw.local. and minimum 5", soa)
		}
	}
	if _, tcp := rec.remote.(*net.TCPAddr); !tcp && rec.sizes[0] > dns.MinMsgSize && q.IsEdns0() == nil {
		t.Errorf("UDP reply of %d bytes to a query without EDNS", rec.sizes[0])
	}
}

func TestServeDNSZone(t *testing.T) {
	nx := want{rcode: dns.RcodeNameError, soa: true}
	nxNoSOA := want{rcode: dns.RcodeNameError}
	refused := want{rcode: dns.RcodeRefused}
	a := func(ips ...string) want {
		w := want{rcode: dns.RcodeSuccess}
		for _, ip := range ips {
			w.answers = append(w.answers, "A "+ip)
		}
		return w
	}
	tests := []struct {
		name   string
		client string
		policy bool
		q      *dns.Msg
		want   want
	}{
		{"dnsName A", clientNginx, true, query("url1.test.com.", dns.TypeA), a("192.168.0.10")},
		{"dnsName mixed case keeps the question's case", clientNginx, true, query("URL1.Test.Com.", dns.TypeA), a("192.168.0.10")},
		{"domainName under zone", clientNginx, true, query("eservicenginx.egw.local.", dns.TypeA), a("192.168.0.10")},
		{"domainName upper case", clientNginx, true, query("ESERVICENGINX.EGW.LOCAL.", dns.TypeA), a("192.168.0.10")},
		{"not allowed client: NXDOMAIN for domainName", clientSite, true, query("eservicenginx.egw.local.", dns.TypeA), nx},
		{"not allowed client: NXDOMAIN for dnsName, no SOA outside zone", clientSite, true, query("url1.test.com.", dns.TypeA), nxNoSOA},
		{"policy off: any client gets the VIP", clientSite, false, query("url1.test.com.", dns.TypeA), a("192.168.0.10")},
		{"AAAA is NODATA", clientNginx, true, query("url1.test.com.", dns.TypeAAAA), want{rcode: dns.RcodeSuccess}},
		{"AAAA under zone is NODATA with SOA", clientNginx, true, query("eservicenginx.egw.local.", dns.TypeAAAA), want{rcode: dns.RcodeSuccess, soa: true}},
		{"AAAA for a not allowed client is NXDOMAIN", clientSite, true, query("url1.test.com.", dns.TypeAAAA), nxNoSOA},
		{"MX for an exposed name is NODATA", clientNginx, true, query("url1.test.com.", dns.TypeMX), want{rcode: dns.RcodeSuccess}},
		{"ANY is minimal: the A only", clientNginx, true, query("url1.test.com.", dns.TypeANY), a("192.168.0.10")},
		{"PTR of a VIP", clientNginx, true, query("10.0.168.192.in-addr.arpa.", dns.TypePTR), want{rcode: dns.RcodeSuccess, answers: []string{"PTR url1.test.com."}}},
		{"PTR of a VIP with only a domainName", clientSite, true, query("11.0.168.192.in-addr.arpa.", dns.TypePTR), want{rcode: dns.RcodeSuccess, answers: []string{"PTR web.example.org."}}},
		{"PTR of a VIP for a not allowed client", clientSite, true, query("10.0.168.192.in-addr.arpa.", dns.TypePTR), nxNoSOA},
		{"PTR of a VIP, policy off", clientSite, false, query("10.0.168.192.in-addr.arpa.", dns.TypePTR), want{rcode: dns.RcodeSuccess, answers: []string{"PTR url1.test.com."}}},
		{"PTR of an unused VP address", clientNginx, true, query("99.0.168.192.in-addr.arpa.", dns.TypePTR), nxNoSOA},
		{"A on a VIP's reverse name is NODATA", clientNginx, true, query("10.0.168.192.in-addr.arpa.", dns.TypeA), want{rcode: dns.RcodeSuccess}},
		{"PTR outside the VP CIDR is not ours", clientRemote, true, query("1.2.0.10.in-addr.arpa.", dns.TypePTR), refused},
		{"AllowSite: site client", clientSite, true, query("web.egw.local.", dns.TypeA), a("192.168.0.11")},
		{"AllowSite: dnsName without trailing dot in snapshot", clientSite, true, query("web.example.org.", dns.TypeA), a("192.168.0.11")},
		{"AllowSite: client outside the site networks", clientRemote, true, query("web.egw.local.", dns.TypeA), nx},
		{"nobody allowed", clientNginx, true, query("secret.egw.local.", dns.TypeA), nx},
		{"nobody allowed, policy off", clientNginx, false, query("secret.egw.local.", dns.TypeA), a("192.168.0.13")},
		{"two-label domainName", clientAPI, true, query("api.team.egw.local.", dns.TypeA), a("192.168.0.12")},
		{"empty non-terminal is NODATA for an allowed client", clientAPI, true, query("team.egw.local.", dns.TypeA), want{rcode: dns.RcodeSuccess, soa: true}},
		{"empty non-terminal is NXDOMAIN for others", clientSite, true, query("team.egw.local.", dns.TypeA), nx},
		{"unknown name under the zone", clientNginx, true, query("nothere.egw.local.", dns.TypeA), nx},
		{"below an exposed name under the zone", clientNginx, true, query("x.eservicenginx.egw.local.", dns.TypeA), nx},
		{"zone apex SOA", clientSite, true, query("egw.local.", dns.TypeSOA), want{rcode: dns.RcodeSuccess, answers: []string{"SOA ns.egw.local."}}},
		{"zone apex A is NODATA", clientSite, true, query("egw.local.", dns.TypeA), want{rcode: dns.RcodeSuccess, soa: true}},
		{"sibling of an exposed dnsName is not ours: REFUSED without upstream", clientNginx, true, query("other.test.com.", dns.TypeA), refused},
		{"below an exposed dnsName is not ours", clientNginx, true, query("x.url1.test.com.", dns.TypeA), refused},
		{"other name from outside the site", clientRemote, true, query("example.com.", dns.TypeA), refused},
		{"root", clientSite, true, query(".", dns.TypeNS), refused},
		{"class CHAOS", clientSite, true, func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}(), refused},
		{"AXFR of the zone", clientSite, true, query("egw.local.", dns.TypeAXFR), refused},
		{"IXFR of the zone", clientSite, true, query("egw.local.", dns.TypeIXFR), refused},
		{"MAILA", clientSite, true, query("egw.local.", dns.TypeMAILA), want{rcode: dns.RcodeNotImplemented}},
		{"NOTIFY opcode", clientSite, true, func() *dns.Msg { m := query("egw.local.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }(), want{rcode: dns.RcodeNotImplemented}},
		{"UPDATE opcode", clientSite, true, func() *dns.Msg { m := query("egw.local.", dns.TypeSOA); m.Opcode = dns.OpcodeUpdate; return m }(), want{rcode: dns.RcodeNotImplemented}},
		{"no question", clientSite, true, func() *dns.Msg { m := query("egw.local.", dns.TypeA); m.Question = nil; return m }(), want{rcode: dns.RcodeFormatError}},
		{"two questions", clientSite, true, func() *dns.Msg {
			m := query("web.egw.local.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}(), want{rcode: dns.RcodeFormatError}},
		{"answer section in a query", clientSite, true, func() *dns.Msg {
			m := query("web.egw.local.", dns.TypeA)
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "web.egw.local.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: []byte{1, 2, 3, 4}}}
			return m
		}(), want{rcode: dns.RcodeFormatError}},
		{"empty name", clientSite, true, func() *dns.Msg { m := query("x.", dns.TypeA); m.Question[0].Name = ""; return m }(), want{rcode: dns.RcodeFormatError}},
		{"name not fully qualified", clientSite, true, func() *dns.Msg { m := query("x.", dns.TypeA); m.Question[0].Name = "web.egw.local"; return m }(), want{rcode: dns.RcodeFormatError}},
		{"qtype OPT", clientSite, true, query("web.egw.local.", dns.TypeOPT), want{rcode: dns.RcodeFormatError}},
		{"a response is never answered", clientSite, true, func() *dns.Msg { m := query("web.egw.local.", dns.TypeA); m.Response = true; return m }(), want{noReply: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig()
			cfg.PolicyAware = tt.policy
			s := newTestServer(t, cfg, testSnapshot(1))
			for _, tcp := range []bool{false, true} {
				rec := newRecorder(tt.client, tcp)
				s.ServeDNS(rec, tt.q)
				check(t, rec, tt.q, tt.want)
				if !tt.want.noReply {
					m := rec.one(t)
					if tt.q.Opcode == dns.OpcodeQuery && len(tt.q.Question) == 1 && tt.want.rcode != dns.RcodeFormatError &&
						(len(m.Question) != 1 || m.Question[0] != tt.q.Question[0]) {
						t.Errorf("question %v, want %v echoed", m.Question, tt.q.Question)
					}
					isOurs := tt.want.rcode != dns.RcodeRefused && tt.want.rcode < dns.RcodeNotImplemented && tt.want.rcode != dns.RcodeFormatError
					if m.Authoritative != isOurs {
						t.Errorf("AA %v, want %v", m.Authoritative, isOurs)
					}
				}
			}
		})
	}
}

func TestServeDNSEDNS(t *testing.T) {
	s := newTestServer(t, testConfig(), testSnapshot(1))

	q := query("url1.test.com.", dns.TypeA)
	q.SetEdns0(4096, true)
	rec := newRecorder(clientNginx, false)
	s.ServeDNS(rec, q)
	m := rec.one(t)
	opt := m.IsEdns0()
	if opt == nil || opt.UDPSize() != MaxUDPSize || !opt.Do() || opt.Version() != 0 {
		t.Fatalf("reply OPT %v, want size %d, DO echoed, version 0", opt, MaxUDPSize)
	}

	q = query("url1.test.com.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.IsEdns0().SetVersion(1)
	rec = newRecorder(clientNginx, false)
	s.ServeDNS(rec, q)
	m = rec.one(t)
	if m.Rcode != dns.RcodeBadVers || m.IsEdns0() == nil || len(m.Answer) != 0 {
		t.Fatalf("EDNS version 1: rcode %s OPT %v answers %d, want BADVERS with OPT and no answer",
			dns.RcodeToString[m.Rcode], m.IsEdns0(), len(m.Answer))
	}

	q = query("url1.test.com.", dns.TypeA)
	q.SetEdns0(1232, false)
	q.Extra = append(q.Extra, q.Extra[0])
	rec = newRecorder(clientNginx, false)
	s.ServeDNS(rec, q)
	if m := rec.one(t); m.Rcode != dns.RcodeFormatError {
		t.Fatalf("two OPT records: rcode %s, want FORMERR", dns.RcodeToString[m.Rcode])
	}
}

// TestServeDNSTruncation: a name with many VIPs does not fit 512 bytes; the UDP reply is cut
// to the client's size (512 without EDNS, at most 1232 with) with TC set, TCP gets all.
func TestServeDNSTruncation(t *testing.T) {
	snap := testSnapshot(1)
	const n = 150
	for i := range n {
		snap.VIPs = append(snap.VIPs, api.VIP{
			VIP: netip.AddrFrom4([4]byte{192, 168, 1, byte(i)}), Service: fmt.Sprintf("many%d", i),
			DomainName: "many-a-long-label-to-make-the-answer-bigger", AllowSite: true,
		})
	}
	snap.VPCIDR = netip.MustParsePrefix("192.168.0.0/23")
	s := newTestServer(t, testConfig(), snap)
	name := "many-a-long-label-to-make-the-answer-bigger.egw.local."
	tests := []struct {
		name    string
		edns    uint16 // 0: no EDNS
		tcp     bool
		maxSize int
		wantTC  bool
	}{
		{"udp no edns", 0, false, 512, true},
		{"udp edns 4096 capped at 1232", 4096, false, MaxUDPSize, true},
		{"udp edns 800", 800, false, 800, true},
		{"udp edns 100 means 512", 100, false, 512, true},
		{"tcp", 0, true, dns.MaxMsgSize, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := query(name, dns.TypeA)
			if tt.edns != 0 {
				q.SetEdns0(tt.edns, false)
			}
			rec := newRecorder(clientSite, tt.tcp)
			s.ServeDNS(rec, q)
			m := rec.one(t)
			if size := rec.sizes[0]; m.Truncated != tt.wantTC || size > tt.maxSize {
				t.Fatalf("TC %v size %d (%d answers), want TC %v size <= %d", m.Truncated, size, len(m.Answer), tt.wantTC, tt.maxSize)
			}
			if tt.tcp && len(m.Answer) != n {
				t.Fatalf("tcp: %d answers, want %d", len(m.Answer), n)
			}
			if !tt.tcp && len(m.Answer) == 0 {
				t.Fatalf("udp: truncated to no answer at all")
			}
		})
	}
}

// TestServeDNSConcurrencyLimit: with every forwarding slot taken, a forwarded UDP query is
// dropped and a TCP one gets SERVFAIL, both counted; local names are still answered.
func TestServeDNSConcurrencyLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxConcurrent = 2
	cfg.Upstreams = []string{"192.0.2.1"} // never contacted: no slot is free
	s := newTestServer(t, cfg, testSnapshot(1))
	for range 2 {
		if !s.acquire() {
			t.Fatal("could not take a free slot")
		}
	}
	if s.acquire() {
		t.Fatal("took a third slot of two")
	}
	q := query("example.com.", dns.TypeA)
	rec := newRecorder(clientSite, false)
	s.ServeDNS(rec, q)
	check(t, rec, q, want{noReply: true})
	rec = newRecorder(clientSite, true)
	s.ServeDNS(rec, q)
	check(t, rec, q, want{rcode: dns.RcodeServerFailure})
	local := query("url1.test.com.", dns.TypeA)
	rec = newRecorder(clientNginx, false)
	s.ServeDNS(rec, local)
	check(t, rec, local, want{rcode: dns.RcodeSuccess, answers: []string{"A 192.168.0.10"}})
	if st := s.Stats(); st.Dropped != 2 || st.Queries != 3 || st.Forwarded != 0 {
		t.Fatalf("stats %+v, want 3 queries, 2 dropped, none forwarded", st)
	}
	if got := s.inflight.Load(); got != 2 {
		t.Fatalf("in flight %d, want the 2 slots the test holds", got)
	}
}

func TestStatsCount(t *testing.T) {
	s := newTestServer(t, testConfig(), testSnapshot(1))
	for _, q := range []*dns.Msg{
		query("url1.test.com.", dns.TypeA),                                    // answer
		query("url1.test.com.", dns.TypeAAAA),                                 // nodata
		query("nothere.egw.local.", dns.TypeA),                                // nxdomain
		query("example.com.", dns.TypeA),                                      // refused
		query("egw.local.", dns.TypeMAILB),                                    // notimp
		func() *dns.Msg { m := query("x.", 1); m.Question = nil; return m }(), // formerr
	} {
		s.ServeDNS(newRecorder(clientNginx, false), q)
	}
	got := s.Stats()
	want := Stats{Queries: 6, Answers: 1, NoData: 1, NXDomain: 1, Refused: 1, NotImp: 1, FormErr: 1}
	if got != want {
		t.Fatalf("stats\n got %+v\nwant %+v", got, want)
	}
}

func TestBuildZoneProblems(t *testing.T) {
	snap := testSnapshot(7)
	snap.DNSZone = "Corp.Example."
	snap.VIPs = append(snap.VIPs,
		api.VIP{VIP: netip.MustParseAddr("2001:db8::1"), Service: "v6", DomainName: "v6"},
		api.VIP{VIP: netip.MustParseAddr("192.168.0.20"), Service: "bad", DNSName: "bad..name.", DomainName: "ok-too"},
		api.VIP{VIP: netip.MustParseAddr("192.168.0.21"), Service: "dup", DNSName: "dup.corp.example.", DomainName: "dup"},
	)
	z, problems := buildZone(snap, DefaultZone, 5)
	if z.origin != "corp.example." || z.revision != 7 || z.soa.Serial != 7 {
		t.Fatalf("origin %q revision %d serial %d, want corp.example. 7 7", z.origin, z.revision, z.soa.Serial)
	}
	if len(problems) != 2 || !strings.Contains(problems[0], `service "v6"`) || !strings.Contains(problems[1], `dnsName "bad..name."`) {
		t.Fatalf("problems %q, want the v6 VIP and the bad dnsName named", problems)
	}
	if _, ok := z.names["ok-too.corp.example."]; !ok {
		t.Fatalf("the valid domainName of an entry with a bad dnsName was dropped")
	}
	if e := z.names["dup.corp.example."]; e == nil || len(e.records) != 1 {
		t.Fatalf("dnsName equal to the domainName FQDN: %+v, want one record", e)
	}
	if _, ok := z.names["eservicenginx.corp.example."]; !ok {
		t.Fatalf("domainNames are not under the snapshot's zone: %v", z.names)
	}

	z, problems = buildZone(nil, DefaultZone, 5)
	if len(z.names) != 0 || len(problems) != 0 || z.origin != DefaultZone {
		t.Fatalf("nil snapshot: %d names, problems %q, origin %q", len(z.names), problems, z.origin)
	}
}

func TestUpdateSwapsZone(t *testing.T) {
	s := newTestServer(t, testConfig(), testSnapshot(5))
	q := query("url1.test.com.", dns.TypeA)
	rec := newRecorder(clientNginx, false)
	s.ServeDNS(rec, q)
	check(t, rec, q, want{rcode: dns.RcodeSuccess, answers: []string{"A 192.168.0.10"}})

	next := testSnapshot(1) // a control plane reset may start the revisions over
	next.VIPs[0].VIP = netip.MustParseAddr("192.168.0.99")
	next.VIPs[0].AllowedClients = nil
	next.VIPs[0].AllowSite = true
	s.Update(next)
	rec = newRecorder(clientSite, false)
	s.ServeDNS(rec, q)
	check(t, rec, q, want{rcode: dns.RcodeSuccess, answers: []string{"A 192.168.0.99"}})

	s.Update(nil)
	rec = newRecorder(clientNginx, false)
	s.ServeDNS(rec, q)
	check(t, rec, q, want{rcode: dns.RcodeRefused})
}

func TestReverseAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"10.0.168.192.in-addr.arpa.", "192.168.0.10"},
		{"0.0.0.0.in-addr.arpa.", "0.0.0.0"},
		{"255.255.255.255.in-addr.arpa.", "255.255.255.255"},
		{"256.0.0.1.in-addr.arpa.", ""},
		{"01.0.0.1.in-addr.arpa.", ""},
		{"0.0.1.in-addr.arpa.", ""},
		{"a.0.0.1.in-addr.arpa.", ""},
		{"1..0.1.in-addr.arpa.", ""},
		{"1.0.0.1.ip6.arpa.", ""},
	}
	for _, tt := range tests {
		a, ok := reverseAddr(tt.in)
		got := ""
		if ok {
			got = a.String()
		}
		if got != tt.want {
			t.Errorf("reverseAddr(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"negative ttl", func(c *Config) { c.TTL = -1 }, "ttl"},
		{"bad zone", func(c *Config) { c.Zone = "a..b" }, "zone"},
		{"bad listen", func(c *Config) { c.Listen = []string{"localhost:53"} }, "listen[0]"},
		{"bad upstream", func(c *Config) { c.Upstreams = []string{"1.1.1.1", "dns.google"} }, "upstreams[1]"},
		{"unspecified upstream", func(c *Config) { c.Upstreams = []string{"0.0.0.0:53"} }, "upstreams[0]"},
		{"negative max", func(c *Config) { c.MaxConcurrent = -1 }, "maxConcurrent"},
		{"invalid prefix", func(c *Config) { c.SiteNetworks = []netip.Prefix{{}} }, "siteNetworks[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mod(&c)
			_, err := New(c, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New error %v, want one naming %q", err, tt.want)
			}
		})
	}
	s, err := New(Config{Upstreams: []string{"9.9.9.9", "[2001:db8::1]:5353"}, Listen: []string{"127.0.0.1"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.upstreams, []string{"9.9.9.9:53", "[2001:db8::1]:5353"}) || s.listen[0].Port() != 53 || s.ttl != 5 || s.cfg.Zone != DefaultZone {
		t.Fatalf("defaults: upstreams %v listen %v ttl %d zone %q", s.upstreams, s.listen, s.ttl, s.cfg.Zone)
	}
}

func TestListenAddrs(t *testing.T) {
	snap := testSnapshot(1)
	tests := []struct {
		snap       *api.Snapshot
		configured []string
		want       []string
	}{
		{snap, nil, []string{"192.168.0.1:53"}},
		{snap, []string{"192.168.0.1", "10.0.0.1:53"}, []string{"192.168.0.1:53", "10.0.0.1:53"}},
		{snap, []string{"192.168.0.1:5353"}, []string{"192.168.0.1:53", "192.168.0.1:5353"}},
		{nil, []string{"10.0.0.1"}, []string{"10.0.0.1"}},
		{&api.Snapshot{}, nil, nil},
	}
	for _, tt := range tests {
		if got := ListenAddrs(tt.snap, tt.configured); !slices.Equal(got, tt.want) {
			t.Errorf("ListenAddrs(%v, %q) = %q, want %q", tt.snap != nil, tt.configured, got, tt.want)
		}
	}
}
