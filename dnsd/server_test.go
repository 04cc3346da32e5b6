package dnsd

import (
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// exchange sends q to addr over network ("udp" or "tcp") and returns the reply.
func exchange(t testing.TB, network string, addr netip.AddrPort, q *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 3 * time.Second}
	m, _, err := c.Exchange(q, addr.String())
	if err != nil {
		t.Fatalf("%s exchange %s: %v", network, q.Question[0].Name, err)
	}
	return m
}

// TestServerUDPAndTCP runs the whole server on 127.0.0.1:0. Loopback is the site network,
// so 127.0.0.1 may use every AllowSite service.
func TestServerUDPAndTCP(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.SiteNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	snap := testSnapshot(1)
	snap.VIPs[0].AllowedClients = append(snap.VIPs[0].AllowedClients, netip.MustParseAddr("127.0.0.1"))
	s := newTestServer(t, cfg, snap)
	addr := startServer(t, s)
	if addr.Port() == 0 {
		t.Fatalf("bound address %v has no port", addr)
	}

	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			m := exchange(t, network, addr, query("url1.test.com.", dns.TypeA))
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "192.168.0.10" {
				t.Fatalf("url1.test.com A: %v", m)
			}
			m = exchange(t, network, addr, query("web.egw.local.", dns.TypeAAAA))
			if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
				t.Fatalf("web AAAA: want NODATA, got %v", m)
			}
			m = exchange(t, network, addr, query("secret.egw.local.", dns.TypeA))
			if m.Rcode != dns.RcodeNameError {
				t.Fatalf("secret A: want NXDOMAIN, got %v", m)
			}
			m = exchange(t, network, addr, query("example.com.", dns.TypeA))
			if m.Rcode != dns.RcodeRefused {
				t.Fatalf("example.com without upstream: want REFUSED, got %v", m)
			}
			q := query("egw.local.", dns.TypeSOA)
			q.Opcode = dns.OpcodeNotify
			m = exchange(t, network, addr, q)
			if m.Rcode != dns.RcodeNotImplemented {
				t.Fatalf("NOTIFY: want NOTIMP, got %v", m)
			}
		})
	}

	// Raw malformed datagrams: a header claiming two questions, and garbage after a header.
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, raw := range [][]byte{
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0},
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff},
	} {
		if _, err := conn.Write(raw); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 512)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no reply to a malformed query: %v", err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(buf[:n]); err != nil || m.Id != 0x1234 || m.Rcode != dns.RcodeFormatError || n != 12 {
			t.Fatalf("malformed query: reply %d bytes %v (%v), want a 12-byte FORMERR", n, m, err)
		}
	}
	st := s.Stats()
	if st.Queries != 12 || st.Answers != 2 || st.FormErr != 2 || st.NotImp != 2 || st.Refused != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestServerStartErrors(t *testing.T) {
	s := newTestServer(t, DefaultConfig(), nil)
	if err := s.Start(); err == nil {
		t.Fatal("Start without a listen address succeeded")
	}
	busy, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0", busy.LocalAddr().String()}
	s = newTestServer(t, cfg, nil)
	if err := s.Start(); err == nil {
		t.Fatal("Start on a busy port succeeded")
	}
	// The first address was released again.
	if a := s.Addrs(); len(a) != 1 {
		t.Fatalf("addrs %v", a)
	}
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(s.Addrs()[0]))
	if err != nil {
		t.Fatalf("the first address was not released after a failed Start: %v", err)
	}
	c.Close()
}

// TestZoneSwapUnderLoad swaps zones while clients query over UDP and through the handler:
// every reply is one of the two zones' answers, none is lost or wrong (run with -race).
func TestZoneSwapUnderLoad(t *testing.T) {
	cfg := testConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.SiteNetworks = append(cfg.SiteNetworks, netip.MustParsePrefix("127.0.0.0/8"))
	snapA := testSnapshot(1)
	s := newTestServer(t, cfg, snapA)
	addr := startServer(t, s)

	valid := map[string]bool{"192.168.0.11": true, "192.168.0.111": true}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var rev atomic.Int64
	rev.Store(1)
	wg.Add(1)
	go func() { // the updater
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			snap := testSnapshot(rev.Add(1))
			if i%2 == 0 {
				snap.VIPs[1].VIP = netip.MustParseAddr("192.168.0.111")
			}
			s.Update(snap)
			runtime.Gosched()
		}
	}()
	var answered atomic.Int64
	errs := make(chan string, 16)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn *dns.Conn
			if g%2 == 0 {
				c, err := dns.Dial("udp", addr.String())
				if err != nil {
					errs <- err.Error()
					return
				}
				defer c.Close()
				conn = c
			}
			for i := 0; i < 300; i++ {
				q := query("web.egw.local.", dns.TypeA)
				var m *dns.Msg
				if conn != nil {
					conn.SetDeadline(time.Now().Add(3 * time.Second))
					if err := conn.WriteMsg(q); err != nil {
						errs <- err.Error()
						return
					}
					r, err := conn.ReadMsg()
					if err != nil {
						errs <- "udp: " + err.Error()
						return
					}
					m = r
				} else {
					rec := newRecorder(clientSite, false)
					s.ServeDNS(rec, q)
					if len(rec.msgs) != 1 {
						errs <- "handler: no reply"
						return
					}
					m = rec.msgs[0]
				}
				if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || !valid[m.Answer[0].(*dns.A).A.String()] {
					errs <- "bad reply during swap: " + m.String()
					return
				}
				answered.Add(1)
			}
		}()
	}
	for answered.Load() < 8*300 && len(errs) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if rev.Load() < 10 {
		t.Fatalf("only %d swaps happened", rev.Load())
	}
	t.Logf("%d answers across %d zone swaps", answered.Load(), rev.Load())
}

// TestServerFreeBind: with FreeBind the server starts on an address the host does not
// have (yet); without it Start fails and names the address.
func TestServerFreeBind(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("IP_FREEBIND is Linux-only")
	}
	cfg := DefaultConfig()
	cfg.Listen = []string{"192.0.2.53:0"}
	s := newTestServer(t, cfg, nil)
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "192.0.2.53") {
		t.Fatalf("Start on a foreign address without FreeBind: %v", err)
	}
	cfg.FreeBind = true
	s = newTestServer(t, cfg, nil)
	if a := startServer(t, s); a.Addr() != netip.MustParseAddr("192.0.2.53") || a.Port() == 0 {
		t.Fatalf("bound %v", a)
	}
}

// TestServerIPv6 serves on [::1]:0 when the host has IPv6 loopback.
func TestServerIPv6(t *testing.T) {
	if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback}); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		c.Close()
	}
	cfg := DefaultConfig()
	cfg.Listen = []string{"[::1]:0"}
	snap := testSnapshot(1)
	s := newTestServer(t, cfg, snap)
	addr := startServer(t, s)
	for _, network := range []string{"udp", "tcp"} {
		m := exchange(t, network, addr, query("web.egw.local.", dns.TypeA))
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("%s over IPv6: %v", network, m)
		}
	}
}

// TestServerTCPLimits: connections over MaxTCPConns are closed at once and counted; a
// malformed TCP message gets FORMERR.
func TestServerTCPLimits(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.MaxTCPConns = 1
	s := newTestServer(t, cfg, testSnapshot(1))
	addr := startServer(t, s)

	first, err := dns.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.SetDeadline(time.Now().Add(3 * time.Second))
	if err := first.WriteMsg(query("web.egw.local.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if m, err := first.ReadMsg(); err != nil || len(m.Answer) != 1 {
		t.Fatalf("first connection: %v %v", m, err)
	}

	second, err := dns.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetDeadline(time.Now().Add(3 * time.Second))
	second.WriteMsg(query("web.egw.local.", dns.TypeA))
	if m, err := second.ReadMsg(); err == nil {
		t.Fatalf("second connection over the limit was served: %v", m)
	}
	if st := s.Stats(); st.Dropped != 1 {
		t.Fatalf("stats %+v, want 1 dropped connection", st)
	}

	// A header claiming one question followed by garbage, on the open connection.
	raw := []byte{0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0xff, 0xff}
	if _, err := first.Write(raw); err != nil {
		t.Fatal(err)
	}
	m, err := first.ReadMsg()
	if err != nil || m.Id != 0xbeef || m.Rcode != dns.RcodeFormatError {
		t.Fatalf("malformed TCP query: %v %v, want FORMERR", m, err)
	}
	if st := s.Stats(); st.FormErr != 1 {
		t.Fatalf("stats %+v, want 1 formerr", st)
	}
}
