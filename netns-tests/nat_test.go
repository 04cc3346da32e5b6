//go:build netns && linux

package netnstests

// TestNATBoxes proves the NAT boxes of harness.NATSpec without any EGW process: a packet
// from behind a box arrives with the box's address; the port-preserving box keeps the port
// towards every destination and lets two such boxes punch a hole to each other; the
// endpoint-dependent box gives every destination its own random port, so the endpoint
// one destination saw is useless to another; unsolicited packets stay outside; the edges'
// own addresses are unreachable from each other; BlockPeer cuts exactly the peer.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/netns-tests/harness"
)

func TestNATBoxes(t *testing.T) {
	harness.SkipUnlessRoot(t)
	if _, err := runCmd(context.Background(), "nft", "--version"); err != nil {
		t.Skip("nft missing (scripts/install-deps.sh installs nftables)")
	}
	t.Run("PortPreserving", func(t *testing.T) {
		lab := harness.NewT(t)
		topo, err := harness.Build(lab, harness.NATSpec(harness.NATPortPreserving, harness.NATPortPreserving))
		if err != nil {
			t.Fatal(err)
		}
		dsts := natEchoes(t, lab, topo)
		ga, gb := topo.Site("site-a"), topo.Site("site-b")
		pubA, pubB := ga.Underlay.Addr(), gb.Underlay.Addr()

		// One socket, three destinations: always the box's address and the same port.
		pc := listenUDP(t, lab, ga.GWNS, 40123)
		for _, dst := range dsts {
			got := whoamiOn(t, pc, dst)
			if got != netip.AddrPortFrom(pubA, 40123) {
				t.Errorf("%s saw gateway A's socket :40123 as %s; want %s:40123", dst, got, pubA)
			}
		}
		pc.Close()

		// Both boxes preserve ports, so the endpoints each edge would learn from the hub
		// work for the other: simultaneous sends punch a hole.
		sa := listenUDP(t, lab, ga.GWNS, harness.EdgeListenPort)
		sb := listenUDP(t, lab, gb.GWNS, harness.EdgeListenPort)
		epA, epB := netip.AddrPortFrom(pubA, harness.EdgeListenPort), netip.AddrPortFrom(pubB, harness.EdgeListenPort)
		toPeersBefore, _, err := topo.NATCounter(context.Background(), ga, harness.CounterToPeers)
		if err != nil {
			t.Fatal(err)
		}
		if err := punch(sa, sb, epA, epB, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		toPeers, _, err := topo.NATCounter(context.Background(), ga, harness.CounterToPeers)
		if err != nil {
			t.Fatal(err)
		}
		if toPeers <= toPeersBefore {
			t.Errorf("box A's %s counter %d -> %d after the punch", harness.CounterToPeers, toPeersBefore, toPeers)
		}

		// BlockPeer cuts the hole, and only towards the peer; unblocking restores it.
		unblock, err := topo.BlockPeer(context.Background(), ga, pubB)
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := exchangeOnce(sa, sb, epB, 1500*time.Millisecond); ok {
			t.Errorf("blocked: gateway B still received %q", got)
		}
		if got := whoamiOn(t, sa, dsts[0]); got.Addr() != pubA {
			t.Errorf("blocked: the hub saw %s", got)
		}
		if err := unblock(); err != nil {
			t.Fatal(err)
		}
		drain(sa)
		drain(sb)
		if err := punch(sa, sb, epA, epB, 5*time.Second); err != nil {
			t.Fatalf("after unblock: %v", err)
		}
		sa.Close()
		sb.Close()

		// Unsolicited: from a host on the underlay to box A's mapped port, never delivered.
		sa = listenUDP(t, lab, ga.GWNS, harness.EdgeListenPort)
		defer sa.Close()
		ext := topo.Lab.NS("ext")
		stranger := listenUDP(t, lab, ext, 0)
		defer stranger.Close()
		if got, ok := exchangeOnce(stranger, sa, epA, 1500*time.Millisecond); ok {
			t.Errorf("unsolicited datagram from the underlay reached gateway A: %q", got)
		}
		natIsolation(t, lab, topo)
	})

	t.Run("EndpointDependent", func(t *testing.T) {
		lab := harness.NewT(t)
		topo, err := harness.Build(lab, harness.NATSpec(harness.NATPortPreserving, harness.NATEndpointDependent))
		if err != nil {
			t.Fatal(err)
		}
		dsts := natEchoes(t, lab, topo)
		ga, gb := topo.Site("site-a"), topo.Site("site-b")
		pubB := gb.Underlay.Addr()

		// Port 61000 is outside the box's range 20000-59999: never kept.
		pc := listenUDP(t, lab, gb.GWNS, 61000)
		ports := map[uint16]bool{}
		for _, dst := range dsts {
			got := whoamiOn(t, pc, dst)
			if got.Addr() != pubB || got.Port() < 20000 || got.Port() > 59999 {
				t.Errorf("%s saw gateway B's socket :61000 as %s; want %s with a port in 20000-59999", dst, got, pubB)
			}
			ports[got.Port()] = true
		}
		pc.Close()
		t.Logf("box B mapped one socket to ports %v for %v", ports, dsts)
		if len(ports) < 2 {
			t.Errorf("three destinations saw one mapping %v; want one per destination", ports)
		}

		// What the hub sees of each edge does not let the other edge in: A (port-preserving)
		// and B (endpoint-dependent) send to the endpoints the hub saw, at the same time,
		// and neither hears the other.
		sa := listenUDP(t, lab, ga.GWNS, harness.EdgeListenPort)
		defer sa.Close()
		sb := listenUDP(t, lab, gb.GWNS, harness.EdgeListenPort)
		defer sb.Close()
		seenA, seenB := whoamiOn(t, sa, dsts[0]), whoamiOn(t, sb, dsts[0])
		if seenB.Port() == harness.EdgeListenPort {
			t.Logf("box B happened to map to its inside port %d", seenB.Port())
		}
		if err := punch(sa, sb, seenA, seenB, 2*time.Second); err == nil {
			t.Error("a hole was punched through the endpoint-dependent NAT with the hub's view of the endpoints")
		}
		natIsolation(t, lab, topo)
	})
}

// natEchoes starts UDP echo responders on the underlay — the hub's address and a host
// "ext" (203.0.113.50) on ports 9090 and 9091 — and returns the three destinations.
func natEchoes(t *testing.T, lab *harness.Lab, topo *harness.Topology) []netip.AddrPort {
	t.Helper()
	ext, err := lab.AddNS("ext")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Veth(topo.WAN, "u-ext", ext, "wan0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Enslave(topo.WAN, "u-ext", "br0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Addr(ext, "wan0", "203.0.113.50/24"); err != nil {
		t.Fatal(err)
	}
	hub := topo.Site("cloud")
	for _, r := range []struct {
		ns, name string
		port     int
	}{{hub.GWNS, "echo-hub", 9090}, {ext, "echo-ext", 9090}, {ext, "echo-ext2", 9091}} {
		if _, err := lab.Start(r.ns, r.name, nil, tools.Responder, "-http", "", "-tcp", "", "-udp", ":"+strconv.Itoa(r.port)); err != nil {
			t.Fatal(err)
		}
	}
	return []netip.AddrPort{
		netip.AddrPortFrom(hub.Underlay.Addr(), 9090),
		netip.MustParseAddrPort("203.0.113.50:9090"),
		netip.MustParseAddrPort("203.0.113.50:9091"),
	}
}

// natIsolation checks that neither edge reaches the other's own addresses, nor the
// underlay reaches them: only the NAT boxes' public addresses are reachable.
func natIsolation(t *testing.T, lab *harness.Lab, topo *harness.Topology) {
	t.Helper()
	ga, gb := topo.Site("site-a"), topo.Site("site-b")
	cases := []struct{ name, ns, dst string }{
		{"edge-b to edge-a's inside address", gb.GWNS, ga.Inside.Addr().String()},
		{"edge-a to edge-b's inside address", ga.GWNS, gb.Inside.Addr().String()},
		{"edge-b to box A's inside address", gb.GWNS, ga.Inside.Masked().Addr().Next().String()},
		{"the hub to edge-a's inside address", topo.Site("cloud").GWNS, ga.Inside.Addr().String()},
	}
	var wg sync.WaitGroup
	for _, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := lab.Run(context.Background(), c.ns, "ping", "-c1", "-W1", "-q", c.dst); err == nil {
				t.Errorf("%s: ping %s succeeded", c.name, c.dst)
			}
		}()
	}
	wg.Wait()
	// The boxes' public addresses answer nothing unsolicited either (ping is new inbound).
	if _, err := lab.Run(context.Background(), topo.Site("cloud").GWNS, "ping", "-c1", "-W1", "-q", ga.Underlay.Addr().String()); err == nil {
		t.Errorf("box A answered an unsolicited ping from the underlay")
	}
}

func listenUDP(t *testing.T, lab *harness.Lab, ns string, port int) *net.UDPConn {
	t.Helper()
	pc, err := lab.ListenPacket(ns, "udp4", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// whoamiOn asks the responder at dst, from pc, how it sees pc (resending every 200 ms for
// up to 5 s).
func whoamiOn(t *testing.T, pc *net.UDPConn, dst netip.AddrPort) netip.AddrPort {
	t.Helper()
	buf := make([]byte, 256)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := pc.WriteToUDPAddrPort([]byte("whoami"), dst); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, from, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil || from != dst {
			continue
		}
		ap, err := netip.ParseAddrPort(strings.TrimSpace(string(buf[:n])))
		if err != nil {
			t.Fatalf("whoami from %s: %q: %v", dst, buf[:n], err)
		}
		return ap
	}
	t.Fatalf("no whoami answer from %s", dst)
	return netip.AddrPort{}
}

// punch has a and b send to each other's public endpoint (epA is a's, epB is b's) every
// 100 ms until each has received a datagram from the other's public endpoint, or timeout.
func punch(a, b *net.UDPConn, epA, epB netip.AddrPort, timeout time.Duration) error {
	type got struct {
		from netip.AddrPort
		ok   bool
	}
	recv := func(c *net.UDPConn, want netip.AddrPort, deadline time.Time, out chan<- got) {
		buf := make([]byte, 64)
		_ = c.SetReadDeadline(deadline)
		for {
			_, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				out <- got{}
				return
			}
			if from == want {
				out <- got{from, true}
				return
			}
		}
	}
	deadline := time.Now().Add(timeout)
	ra, rb := make(chan got, 1), make(chan got, 1)
	go recv(a, epB, deadline, ra)
	go recv(b, epA, deadline, rb)
	var okA, okB bool
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !(okA && okB) {
		_, _ = a.WriteToUDPAddrPort([]byte("punch"), epB)
		_, _ = b.WriteToUDPAddrPort([]byte("punch"), epA)
		select {
		case g := <-ra:
			if !g.ok {
				return fmt.Errorf("%s heard nothing from %s within %v", epA, epB, timeout)
			}
			okA = true
		case g := <-rb:
			if !g.ok {
				return fmt.Errorf("%s heard nothing from %s within %v", epB, epA, timeout)
			}
			okB = true
		case <-tick.C:
		}
	}
	_ = a.SetReadDeadline(time.Time{})
	_ = b.SetReadDeadline(time.Time{})
	return nil
}

// exchangeOnce sends from src to dst every 100 ms for d and reports whether rcv received
// any of it (and what).
func exchangeOnce(src, rcv *net.UDPConn, dst netip.AddrPort, d time.Duration) (string, bool) {
	done := make(chan string, 1)
	deadline := time.Now().Add(d)
	go func() {
		buf := make([]byte, 64)
		_ = rcv.SetReadDeadline(deadline)
		n, _, err := rcv.ReadFromUDPAddrPort(buf)
		if err != nil {
			done <- ""
			return
		}
		done <- string(buf[:n])
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		_, _ = src.WriteToUDPAddrPort([]byte("unsolicited"), dst)
		select {
		case s := <-done:
			_ = rcv.SetReadDeadline(time.Time{})
			return s, s != ""
		case <-tick.C:
		}
	}
}

// drain discards what c has queued.
func drain(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			_ = c.SetReadDeadline(time.Time{})
			return
		}
	}
}
