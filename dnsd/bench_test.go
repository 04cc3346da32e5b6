package dnsd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkServePacket measures the UDP packet path in process (no sockets): parse,
// lookup, pack. Run: go test -run '^$' -bench ServePacket -benchmem ./dnsd/
func BenchmarkServePacket(b *testing.B) {
	s := newTestServer(b, testConfig(), testSnapshot(1))
	for _, bc := range []struct {
		name   string
		client string
		q      *dns.Msg
	}{
		{"local-A", clientSite, query("web.egw.local.", dns.TypeA)},
		{"local-nxdomain", clientSite, query("secret.egw.local.", dns.TypeA)},
		{"refused", clientRemote, query("www.example.com.", dns.TypeA)},
	} {
		pkt, err := bc.q.Pack()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bc.name, func(b *testing.B) {
			w := &udpWriter{peer: netip.AddrPortFrom(netip.MustParseAddr(bc.client), 5353), buf: make([]byte, 0, MaxUDPSize)}
			b.ReportAllocs()
			for b.Loop() {
				s.handlePacket(pkt, w)
				w.sent = w.sent[:0]
			}
		})
	}
}

// loadResult is what a load run measured.
type loadResult struct {
	sent, answered, lost int
	elapsed              time.Duration
	p50, p99, max        time.Duration
}

func (r loadResult) qps() float64 { return float64(r.answered) / r.elapsed.Seconds() }

func (r loadResult) String() string {
	return fmt.Sprintf("%d queries, %d answered, %d lost in %v: %.0f q/s, p50 %v, p99 %v, max %v",
		r.sent, r.answered, r.lost, r.elapsed.Round(time.Millisecond), r.qps(), r.p50, r.p99, r.max)
}

// runLoad is a closed-loop UDP load generator: clients goroutines, each with its own
// socket and window queries outstanding, send total queries for name to addr and time
// each reply. check validates a reply (its rcode).
func runLoad(addr netip.AddrPort, name string, wantRcode, clients, window, total int) (loadResult, error) {
	q := query(name, dns.TypeA)
	tmpl, err := q.Pack()
	if err != nil {
		return loadResult{}, err
	}
	per := max(total/clients, window)
	lat := make([][]time.Duration, clients)
	var lost, bad atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return loadResult{}, err
		}
		c.SetReadBuffer(1 << 20)
		conns[i] = c
	}
	start := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			pkt := slices.Clone(tmpl)
			sentAt := make([]time.Time, 1<<16)
			my := make([]time.Duration, 0, per)
			rbuf := make([]byte, 1500)
			next := uint16(i * 7919)
			send := func() {
				next++
				binary.BigEndian.PutUint16(pkt, next)
				sentAt[next] = time.Now()
				c.Write(pkt)
			}
			outstanding := 0
			for sent := 0; sent < per && outstanding < window; sent++ {
				send()
				outstanding++
			}
			sent := outstanding
			for outstanding > 0 {
				c.SetReadDeadline(time.Now().Add(time.Second))
				n, err := c.Read(rbuf)
				if err != nil { // a lost query: account for the whole window and move on
					lost.Add(int64(outstanding))
					outstanding = 0
					for ; sent < per && outstanding < window; sent++ {
						send()
						outstanding++
					}
					continue
				}
				if n < 12 || int(rbuf[3]&0xF) != wantRcode {
					bad.Add(1)
				}
				id := binary.BigEndian.Uint16(rbuf)
				my = append(my, time.Since(sentAt[id]))
				outstanding--
				if sent < per {
					send()
					sent++
					outstanding++
				}
			}
			lat[i] = my
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := loadResult{sent: per * clients, answered: len(all), lost: int(lost.Load()), elapsed: elapsed}
	if len(all) > 0 {
		r.p50 = all[len(all)/2]
		r.p99 = all[len(all)*99/100]
		r.max = all[len(all)-1]
	}
	if bad.Load() > 0 {
		return r, fmt.Errorf("%d replies with an unexpected rcode (want %s)", bad.Load(), dns.RcodeToString[wantRcode])
	}
	return r, nil
}

// loadCases are the measured workloads: a local name (A answer from the zone) and a name
// that is refused (not ours, no upstream), at high concurrency (64 clients x 4 queries
// outstanding) for throughput, and the local name at light load (4 clients x 1) for
// latency.
var loadCases = []struct {
	name            string
	qname           string
	rcode           int
	clients, window int
}{
	{"local", "web.egw.local.", dns.RcodeSuccess, 64, 4},
	{"refused", "www.example.com.", dns.RcodeRefused, 64, 4},
	{"local-light", "web.egw.local.", dns.RcodeSuccess, 4, 1},
}

func loadServer(tb testing.TB) netip.AddrPort {
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.SiteNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	return startServer(tb, newTestServer(tb, cfg, testSnapshot(1)))
}

// TestHelperDNSServer is not a test: it is the server process of the load test (the test
// binary re-executed with EGW_DNSD_HELPER=1), so the server's CPU time can be measured
// apart from the load generator's. It prints its address and serves until stdin closes.
func TestHelperDNSServer(t *testing.T) {
	if os.Getenv("EGW_DNSD_HELPER") != "1" {
		t.Skip("helper process of the load test")
	}
	if f := os.Getenv("EGW_DNSD_CPUPROFILE"); f != "" { // profile the server side
		out, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		pprof.StartCPUProfile(out)
		defer pprof.StopCPUProfile()
	}
	addr := loadServer(t)
	fmt.Printf("ADDR %v\n", addr)
	io.Copy(io.Discard, os.Stdin)
}

// helperServer starts the server process and returns its address and pid.
func helperServer(tb testing.TB) (netip.AddrPort, int) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperDNSServer$")
	cmd.Env = append(os.Environ(), "EGW_DNSD_HELPER=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			go io.Copy(io.Discard, stdout)
			return netip.MustParseAddrPort(a), cmd.Process.Pid
		}
	}
	tb.Fatalf("helper server printed no address: %v", sc.Err())
	return netip.AddrPort{}, 0
}

// cpuTime is the user+system CPU time a process has used (from /proc/PID/stat).
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	var ut, st int64
	fmt.Sscan(f[11], &ut)
	fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// measure runs one load case against the server process and reports the server's CPU
// time per answered query as well.
func measure(tb testing.TB, addr netip.AddrPort, pid, i, total int) (loadResult, time.Duration) {
	lc := loadCases[i]
	c0, err := cpuTime(pid)
	if err != nil {
		tb.Fatal(err)
	}
	r, err := runLoad(addr, lc.qname, lc.rcode, lc.clients, lc.window, total)
	if err != nil {
		tb.Fatal(err)
	}
	c1, _ := cpuTime(pid)
	var perQuery time.Duration
	if r.answered > 0 {
		perQuery = (c1 - c0) / time.Duration(r.answered)
	}
	return r, perQuery
}

// BenchmarkLoopback measures the whole server, in its own process, over loopback UDP
// against the Go load generator; it reports q/s, p99 latency and the server's CPU time
// per query. Run: go test -run '^$' -bench Loopback -benchtime 300000x ./dnsd/
func BenchmarkLoopback(b *testing.B) {
	addr, pid := helperServer(b)
	for i, lc := range loadCases {
		b.Run(lc.name, func(b *testing.B) {
			r, cpu := measure(b, addr, pid, i, b.N)
			b.ReportMetric(r.qps(), "q/s")
			b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
			b.ReportMetric(float64(cpu.Nanoseconds())/1000, "server-cpu-µs/q")
			b.ReportMetric(float64(r.lost), "lost")
			b.Logf("%s: %v; server CPU %v/query", lc.name, r, cpu)
		})
	}
}

// TestLoad is the load test as a test, off by default: EGW_DNSD_LOAD=<queries> enables it
// (e.g. EGW_DNSD_LOAD=1000000 go test -run TestLoad -v ./dnsd/). It prints q/s, p50/p99
// latency and the server's CPU time per query for each load case.
func TestLoad(t *testing.T) {
	total := 0
	if v := os.Getenv("EGW_DNSD_LOAD"); v != "" {
		fmt.Sscan(v, &total)
	}
	if total <= 0 {
		t.Skip("set EGW_DNSD_LOAD=<queries> to run the loopback load test")
	}
	addr, pid := helperServer(t)
	for i, lc := range loadCases {
		n := total
		if lc.window*lc.clients < 16 {
			n = total / 10 // the latency case is slow by design
		}
		r, cpu := measure(t, addr, pid, i, n)
		t.Logf("%s (%d clients x %d outstanding): %v; server CPU %v/query", lc.name, lc.clients, lc.window, r, cpu)
	}
}
