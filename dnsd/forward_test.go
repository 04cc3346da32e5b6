package dnsd

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeUpstream is a resolver on 127.0.0.1:0 (UDP and TCP, same port). It answers
// example.com. A 198.51.100.7, big.example.com. with 100 A records (truncated over UDP),
// fail.example.com. with SERVFAIL, and records what it was asked.
type fakeUpstream struct {
	addr    string
	queries atomic.Int64
	lastID  atomic.Uint32
	sawOpts atomic.Bool // a query carried EDNS options (it must not: we strip them)
}

func startUpstream(t *testing.T) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.queries.Add(1)
		u.lastID.Store(uint32(r.Id))
		if opt := r.IsEdns0(); opt != nil && len(opt.Option) > 0 {
			u.sawOpts.Store(true)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		name := strings.ToLower(r.Question[0].Name)
		switch {
		case name == "fail.example.com.":
			m.Rcode = dns.RcodeServerFailure
		case name == "big.example.com.":
			for i := range 100 {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A: net.IPv4(198, 51, 100, byte(i))})
			}
		case r.Question[0].Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A: net.IPv4(198, 51, 100, 7)})
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), false)
		}
		if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
			size := dns.MinMsgSize
			if opt := r.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		pc.Close()
		t.Fatal(err)
	}
	u.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		up := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(up) }
		go srv.ActivateAndServe()
		<-up
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

// deadUpstream returns the address of a UDP socket that never answers, and a TCP port
// that refuses; queries to it time out.
func deadUpstream(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.LocalAddr().String()
}

func TestForwarding(t *testing.T) {
	up := startUpstream(t)
	cfg := testConfig()
	cfg.Upstreams = []string{up.addr}
	s := newTestServer(t, cfg, testSnapshot(1))

	t.Run("site client is forwarded", func(t *testing.T) {
		q := query("Example.COM.", dns.TypeA)
		q.Id = 4242
		q.SetEdns0(1232, false)
		q.IsEdns0().Option = append(q.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		rec := newRecorder(clientSite, false)
		s.ServeDNS(rec, q)
		m := rec.one(t)
		if m.Id != 4242 || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 || m.Answer[0].(*dns.A).A.String() != "198.51.100.7" {
			t.Fatalf("forwarded reply %v", m)
		}
		if m.Question[0].Name != "Example.COM." || m.Authoritative || !m.RecursionAvailable {
			t.Fatalf("reply must echo the client's question, not be authoritative, set RA: %v", m)
		}
		if up.lastID.Load() == 4242 && up.queries.Load() == 1 {
			t.Logf("upstream saw the client's ID (possible by chance: 1 in 65536)")
		}
		if up.sawOpts.Load() {
			t.Fatal("the client's EDNS options were passed upstream")
		}
	})
	t.Run("sibling of an exposed dnsName is forwarded", func(t *testing.T) {
		rec := newRecorder(clientNginx, false)
		s.ServeDNS(rec, query("other.test.com.", dns.TypeA))
		if m := rec.one(t); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("reply %v", m)
		}
	})
	t.Run("local answers to site clients say recursion is available", func(t *testing.T) {
		rec := newRecorder(clientNginx, false)
		s.ServeDNS(rec, query("url1.test.com.", dns.TypeA))
		if m := rec.one(t); !m.RecursionAvailable || !m.Authoritative || len(m.Answer) != 1 {
			t.Fatalf("reply %v, want AA and RA", m)
		}
		rec = newRecorder(clientRemote, false)
		s.ServeDNS(rec, query("web.egw.local.", dns.TypeA))
		if m := rec.one(t); m.RecursionAvailable {
			t.Fatalf("reply %v to an outside client, want no RA", m)
		}
	})
	t.Run("our names are never forwarded", func(t *testing.T) {
		before := up.queries.Load()
		for _, n := range []string{"nothere.egw.local.", "secret.egw.local.", "99.0.168.192.in-addr.arpa."} {
			rec := newRecorder(clientSite, false)
			s.ServeDNS(rec, query(n, dns.TypeA))
			if m := rec.one(t); m.Rcode != dns.RcodeNameError && m.Rcode != dns.RcodeSuccess {
				t.Fatalf("%s: %v", n, m)
			}
		}
		if up.queries.Load() != before {
			t.Fatal("a name of ours reached the upstream")
		}
	})
	t.Run("client outside the site is refused", func(t *testing.T) {
		before := up.queries.Load()
		rec := newRecorder(clientRemote, false)
		s.ServeDNS(rec, query("example.com.", dns.TypeA))
		if m := rec.one(t); m.Rcode != dns.RcodeRefused || m.RecursionAvailable {
			t.Fatalf("reply %v, want REFUSED without RA", m)
		}
		if up.queries.Load() != before {
			t.Fatal("an outside client's query reached the upstream")
		}
	})
	t.Run("truncated upstream reply is retried over TCP and truncated for the client", func(t *testing.T) {
		rec := newRecorder(clientSite, false)
		s.ServeDNS(rec, query("big.example.com.", dns.TypeA))
		m := rec.one(t)
		if !m.Truncated || rec.sizes[0] > dns.MinMsgSize || len(m.Answer) == 0 {
			t.Fatalf("udp client: TC %v size %d answers %d", m.Truncated, rec.sizes[0], len(m.Answer))
		}
		rec = newRecorder(clientSite, true)
		s.ServeDNS(rec, query("big.example.com.", dns.TypeA))
		if m := rec.one(t); m.Truncated || len(m.Answer) != 100 {
			t.Fatalf("tcp client: TC %v answers %d, want all 100", m.Truncated, len(m.Answer))
		}
	})
	t.Run("upstream rcode is relayed", func(t *testing.T) {
		rec := newRecorder(clientSite, false)
		s.ServeDNS(rec, query("fail.example.com.", dns.TypeA))
		if m := rec.one(t); m.Rcode != dns.RcodeServerFailure {
			t.Fatalf("reply %v", m)
		}
	})
	if st := s.Stats(); st.Forwarded != 5 || st.Refused != 1 || st.Answers != 1 {
		t.Fatalf("stats %+v, want 5 forwarded, 1 refused, 1 answer", st)
	}
}

func TestForwardingFailover(t *testing.T) {
	up := startUpstream(t)
	cfg := testConfig()
	cfg.UpstreamTimeout = 200 * time.Millisecond
	cfg.Upstreams = []string{deadUpstream(t), up.addr}
	s := newTestServer(t, cfg, testSnapshot(1))
	for i := range 4 { // the round-robin start alternates; every query must succeed
		rec := newRecorder(clientSite, false)
		s.ServeDNS(rec, query(fmt.Sprintf("n%d.example.com.", i), dns.TypeA))
		if m := rec.one(t); m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("query %d: %v", i, m)
		}
	}

	cfg.Upstreams = []string{deadUpstream(t)}
	s = newTestServer(t, cfg, testSnapshot(1))
	rec := newRecorder(clientSite, false)
	s.ServeDNS(rec, query("example.com.", dns.TypeA))
	if m := rec.one(t); m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("dead upstream: %v, want SERVFAIL", m)
	}
	if st := s.Stats(); st.ServFail != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestFloodIsBounded floods the UDP socket with queries that are forwarded to an upstream
// that never answers. The forwarding goroutines stay within MaxConcurrent, the rest is
// dropped and counted, and local names are still answered meanwhile.
func TestFloodIsBounded(t *testing.T) {
	cfg := testConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.SiteNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	cfg.Upstreams = []string{deadUpstream(t)}
	cfg.UpstreamTimeout = 2 * time.Second
	cfg.MaxConcurrent = 16
	s := newTestServer(t, cfg, testSnapshot(1))
	base := runtime.NumGoroutine()
	addr := startServer(t, s)

	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const flood = 2000
	for i := range flood {
		q := query(fmt.Sprintf("f%d.example.com.", i), dns.TypeA)
		b, _ := q.Pack()
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the server has read the flood (or the kernel dropped the rest).
	// The kernel may drop part of it when the socket buffer is full: wait until the count
	// of queries read stops moving.
	for last := uint64(0); ; {
		time.Sleep(20 * time.Millisecond)
		st := s.Stats()
		if st.Queries == last && st.Forwarded+st.Dropped == st.Queries {
			break
		}
		last = st.Queries
	}
	g := runtime.NumGoroutine() - base
	limit := s.cfg.UDPWorkers + 2 /* tcp */ + cfg.MaxConcurrent + 8 /* slack: runtime, timers */
	if g > limit {
		t.Fatalf("%d goroutines during the flood, want <= %d", g, limit)
	}
	st := s.Stats()
	if st.Forwarded > uint64(cfg.MaxConcurrent) || st.Dropped == 0 {
		t.Fatalf("stats %+v: want at most %d forwarded and the rest dropped", st, cfg.MaxConcurrent)
	}
	// While every slot is held by a slow forward, local names are still answered.
	for _, network := range []string{"udp", "tcp"} {
		m := exchange(t, network, addr, query("web.egw.local.", dns.TypeA))
		if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
			t.Fatalf("%s local query during the flood: %v", network, m)
		}
	}
	if st.ServFail != 0 {
		t.Fatalf("forwards ended before the upstream timeout: %+v", st)
	}
	// Shutdown cancels the forwards in flight instead of waiting for their timeout.
	start := time.Now()
	ctx, cancel := contextWithTimeout(time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with forwards in flight: %v", err)
	}
	t.Logf("flood of %d: %d goroutines above base, stats %+v, shutdown took %v", flood, g, st, time.Since(start))
}
