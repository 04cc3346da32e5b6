package dnsd

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/miekg/dns"
)

// recorder is a dns.ResponseWriter that keeps what the handler wrote (no sockets).
type recorder struct {
	remote net.Addr
	msgs   []*dns.Msg
	sizes  []int // wire size of each reply
}

func newRecorder(client string, tcp bool) *recorder {
	ap := netip.AddrPortFrom(netip.MustParseAddr(client), 40000)
	if tcp {
		return &recorder{remote: net.TCPAddrFromAddrPort(ap)}
	}
	return &recorder{remote: net.UDPAddrFromAddrPort(ap)}
}

func (r *recorder) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(192, 168, 0, 1), Port: 53} }
func (r *recorder) RemoteAddr() net.Addr { return r.remote }
func (r *recorder) WriteMsg(m *dns.Msg) error {
	// Round-trip through the wire format, as a client would see it.
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = r.Write(b)
	return err
}
func (r *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	r.msgs = append(r.msgs, m)
	r.sizes = append(r.sizes, len(b))
	return len(b), nil
}
func (r *recorder) Close() error        { return nil }
func (r *recorder) TsigStatus() error   { return nil }
func (r *recorder) TsigTimersOnly(bool) {}
func (r *recorder) Hijack()             {}

// one returns the single reply or fails.
func (r *recorder) one(t *testing.T) *dns.Msg {
	t.Helper()
	if len(r.msgs) != 1 {
		t.Fatalf("got %d replies, want 1", len(r.msgs))
	}
	return r.msgs[0]
}

var (
	clientNginx  = "10.0.0.20" // allowed to use nginx by a per-server policy
	clientAPI    = "10.0.0.21" // allowed to use api.team
	clientSite   = "10.0.0.30" // in the site, no per-server policy
	clientRemote = "203.0.113.5"
)

// testSnapshot is a site with four services: nginx (per-client ACL, dnsName and
// domainName), web (whole site), api.team (a two-label domainName), secret (nobody).
func testSnapshot(rev int64) *api.Snapshot {
	return &api.Snapshot{
		Revision: rev,
		Gateway:  "edge-a",
		Site:     "site-a",
		VPCIDR:   netip.MustParsePrefix("192.168.0.0/24"),
		VPAddr:   netip.MustParseAddr("192.168.0.1"),
		DNSZone:  "egw.local.",
		VIPs: []api.VIP{
			{VIP: netip.MustParseAddr("192.168.0.10"), Service: "EServiceNginx", Expose: "nginx-to-a",
				Protocol: "TCP", Port: 8080, DNSName: "url1.test.com.", DomainName: "EServiceNginx",
				AllowedClients: []netip.Addr{netip.MustParseAddr(clientNginx)}},
			{VIP: netip.MustParseAddr("192.168.0.11"), Service: "web", Expose: "web-to-a",
				Protocol: "TCP", Port: 80, DNSName: "Web.Example.ORG", DomainName: "web", AllowSite: true},
			{VIP: netip.MustParseAddr("192.168.0.12"), Service: "api", Expose: "api-to-a",
				Protocol: "TCP", Port: 443, DomainName: "api.team",
				AllowedClients: []netip.Addr{netip.MustParseAddr(clientAPI)}},
			{VIP: netip.MustParseAddr("192.168.0.13"), Service: "secret", Expose: "secret-to-a",
				Protocol: "UDP", Port: 9000, DomainName: "secret"},
		},
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.SiteNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")}
	return c
}

func newTestServer(t testing.TB, cfg Config, snap *api.Snapshot) *Server {
	t.Helper()
	s, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if snap != nil {
		s.Update(snap)
	}
	return s
}

// query builds a query for name/qtype with RD set.
func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

// startServer starts s on 127.0.0.1:0 and stops it at the end of the test.
func startServer(t testing.TB, s *Server) netip.AddrPort {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := contextWithTimeout(5 * time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s.Addrs()[0]
}
