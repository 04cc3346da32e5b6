//go:build netns && linux

package netnstests

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/netns-tests/harness"
)

// TestTopology builds the issue-6 topology without any EGW process and proves its plumbing:
// hosts reach their own gateway and each other, gateways reach each other over the underlay,
// and the two 10.0.0.0/24 sites are isolated from each other and from the underlay.
func TestTopology(t *testing.T) {
	lab := harness.NewT(t)
	ctx := context.Background()
	topo, err := harness.Build(lab, harness.DefaultSpec())
	if err != nil {
		t.Fatal(err)
	}
	a20, a21, b10, c10 := topo.Host("a20"), topo.Host("a21"), topo.Host("b10"), topo.Host("c10")
	ga, gb, gc := topo.Site("site-a"), topo.Site("site-b"), topo.Site("cloud")

	ping := func(ns, dst string) error {
		_, err := lab.Run(ctx, ns, "ping", "-c1", "-W1", "-q", dst)
		return err
	}
	reach := []struct{ name, ns, dst string }{
		{"a20 to its gateway", a20.NS, "10.0.0.1"},
		{"a20 to a21 on site A", a20.NS, "10.0.0.21"},
		{"a21 to a20 on site A", a21.NS, "10.0.0.20"},
		{"b10 to its gateway", b10.NS, "10.0.0.1"},
		{"c10 to its gateway", c10.NS, "10.1.0.1"},
		{"edge-a to cloud over the underlay", ga.GWNS, "203.0.113.1"},
		{"edge-a to edge-b over the underlay", ga.GWNS, "203.0.113.3"},
		{"edge-b to cloud over the underlay", gb.GWNS, "203.0.113.1"},
		{"cloud to edge-b over the underlay", gc.GWNS, "203.0.113.3"},
		{"gateway B to its service host", gb.GWNS, "10.0.0.10"},
	}
	for _, c := range reach {
		// The first packet may wait for ARP and bridge ports coming up: poll, bounded.
		err := harness.Poll(ctx, 5*time.Second, 50*time.Millisecond, c.name, func() error { return ping(c.ns, c.dst) })
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	isolated := []struct{ name, ns, dst string }{
		{"site A has no 10.0.0.10", a20.NS, "10.0.0.10"},
		{"site B cannot reach site A's client", b10.NS, "10.0.0.20"},
		{"gateway A cannot reach site B's service", ga.GWNS, "10.0.0.10"},
		{"the underlay has no route to site LANs", topo.WAN, "10.0.0.1"},
		{"site A client has no route to the cloud LAN", a20.NS, "10.1.0.10"},
		{"site A client has no route to the underlay", a20.NS, "203.0.113.1"},
		{"cloud host has no route to site LANs", c10.NS, "10.0.0.20"},
	}
	// Each probe waits out its 1 s timeout: run them side by side.
	var wg sync.WaitGroup
	for _, c := range isolated {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := ping(c.ns, c.dst); err == nil {
				t.Errorf("%s: ping %s from %s succeeded", c.name, c.dst, c.ns)
			}
		}()
	}
	wg.Wait()

	// Both sites answer 10.0.0.1, but with different gateways: the MAC a20 resolves for
	// 10.0.0.1 is gateway A's lan0, never gateway B's.
	macA := linkMAC(t, lab, ga.GWNS, "lan0")
	macB := linkMAC(t, lab, gb.GWNS, "lan0")
	if macA == macB {
		t.Fatalf("gateways share a MAC %s", macA)
	}
	neigh, err := lab.Run(ctx, a20.NS, "ip", "neigh", "show", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(neigh, macA) || strings.Contains(neigh, macB) {
		t.Errorf("a20 resolves 10.0.0.1 to %q; want gateway A's %s, not B's %s", strings.TrimSpace(neigh), macA, macB)
	}

	// Each host routes its site's VP CIDR via its gateway, and nothing else beyond the LAN.
	for _, h := range []*harness.Host{a20, a21, b10, c10} {
		out, err := lab.Run(ctx, h.NS, "ip", "-4", "route", "show")
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s via %s dev eth0", h.Site.VPCIDR, h.Site.LAN.Addr())
		if !strings.Contains(out, want) {
			t.Errorf("%s routes:\n%s\nwant %q", h.Name, out, want)
		}
		if strings.Contains(out, "default") {
			t.Errorf("%s has a default route:\n%s", h.Name, out)
		}
	}

	// The responder on B's service host answers HTTP, TCP echo and UDP from its own gateway,
	// and not from site A.
	startResponder(t, lab, b10, "b10")
	body := httpGet(t, lab, gb.GWNS, "http://10.0.0.10:8080/")
	var who struct{ Name, Remote string }
	if err := json.Unmarshal([]byte(body), &who); err != nil {
		t.Fatalf("responder answer %q: %v", body, err)
	}
	if who.Name != "b10" || !strings.HasPrefix(who.Remote, "10.0.0.1:") {
		t.Errorf("responder saw %+v; want name b10 and remote 10.0.0.1", who)
	}
	if got := udpWhoami(t, lab, gb.GWNS, "10.0.0.10:9090"); !strings.HasPrefix(got, "10.0.0.1:") {
		t.Errorf("UDP whoami from gateway B = %q", got)
	}
	if echo := tcpEcho(t, lab, gb.GWNS, "10.0.0.10:7007", "hello"); echo != "hello" {
		t.Errorf("TCP echo = %q", echo)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if c, err := lab.DialContext(a20.NS)(dctx, "tcp", "10.0.0.10:8080"); err == nil {
		c.Close()
		t.Error("site A's client connected to site B's service directly")
	}
}

// TestPlainWireGuard brings up the benchmark's reference tunnel and checks that it carries
// TCP and that `wg show` reads the live device through its UAPI socket.
func TestPlainWireGuard(t *testing.T) {
	lab := harness.NewT(t)
	ctx := context.Background()
	p, err := lab.PlainWireGuard(ctx, tools.WireGuardGo)
	if err != nil {
		t.Fatal(err)
	}
	out, err := lab.Run(ctx, p.Left, "wg", "show", p.DevLeft, "latest-handshakes")
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(out); len(f) != 2 || f[1] == "0" {
		t.Errorf("wg show latest-handshakes = %q; want one peer with a handshake", out)
	}
	if _, err := lab.Start(p.Right, "responder", nil, tools.Responder, "-http", "", "-udp", ""); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(p.RightIP.String(), "7007")
	if err := lab.WaitTCP(ctx, p.Left, addr, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	msg := strings.Repeat("wireguard ", 1000) // several packets
	if got := tcpEcho(t, lab, p.Left, addr, msg); got != msg {
		t.Errorf("TCP echo through the tunnel returned %d bytes, want %d", len(got), len(msg))
	}
}

// TestSweepStale leaves a namespace named like a crashed run's and checks the sweep removes
// it while keeping a live run's namespace.
func TestSweepStale(t *testing.T) {
	harness.SkipUnlessRoot(t)
	ctx := context.Background()
	// PID 0x7fffffff cannot exist (pid_max ≤ 2^22).
	stale := fmt.Sprintf("%s%dx0000-test", harness.Prefix, 1<<31-1)
	lab := harness.NewT(t)
	live, err := lab.AddNS("live")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := runCmd(ctx, "ip", "netns", "add", stale); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = runCmd(context.Background(), "ip", "netns", "del", stale) })
	removed, err := harness.SweepStale()
	if err != nil {
		t.Fatal(err)
	}
	if !contains(removed, stale) {
		t.Errorf("sweep removed %v; want %s", removed, stale)
	}
	if contains(removed, live) {
		t.Errorf("sweep removed the live namespace %s", live)
	}
	list, _ := runCmd(ctx, "ip", "netns", "list")
	if strings.Contains(list, stale) {
		t.Errorf("%s still listed:\n%s", stale, list)
	}
	if !strings.Contains(list, live) {
		t.Errorf("%s missing:\n%s", live, list)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func linkMAC(t *testing.T, lab *harness.Lab, ns, dev string) string {
	t.Helper()
	out, err := lab.Run(context.Background(), ns, "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func startResponder(t *testing.T, lab *harness.Lab, h *harness.Host, name string) {
	t.Helper()
	if _, err := lab.Start(h.NS, "responder-"+name, nil, tools.Responder, "-name", name); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitTCP(context.Background(), h.NS, net.JoinHostPort(h.IP.String(), "8080"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
}

func httpGet(t *testing.T, lab *harness.Lab, ns, url string) string {
	t.Helper()
	resp, err := lab.HTTPClient(ns, 5*time.Second).Get(url)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", url, ns, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	return string(b)
}

func udpWhoami(t *testing.T, lab *harness.Lab, ns, addr string) string {
	t.Helper()
	got, err := udpExchange(lab, ns, addr, "whoami", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(got)
}

// udpExchange sends msg to addr from ns and returns the first reply, resending every 200 ms
// until timeout (the first datagram may be lost to ARP).
func udpExchange(lab *harness.Lab, ns, addr, msg string, timeout time.Duration) (string, error) {
	pc, err := lab.ListenPacket(ns, "udp4", ":0")
	if err != nil {
		return "", err
	}
	defer pc.Close()
	dst, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 2048)
	for time.Now().Before(deadline) {
		if _, err := pc.WriteTo([]byte(msg), dst); err != nil {
			return "", err
		}
		_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("no UDP reply from %s to %s within %v", addr, ns, timeout)
}

func tcpEcho(t *testing.T, lab *harness.Lab, ns, addr, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := lab.DialContext(ns)(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = io.WriteString(c, msg); _ = c.(*net.TCPConn).CloseWrite() }()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("echo from %s: %v", addr, err)
	}
	return string(b)
}
