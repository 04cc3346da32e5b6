package inproc

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/gateway"
)

// Bounds. Everything here is in memory; they only guard against hangs.
const (
	dialTimeout   = 5 * time.Second
	answerTimeout = 3 * time.Second
	// silence is how long a denied client waits to make sure nothing answers.
	silence = 700 * time.Millisecond
	// fastFail is the most a denied TCP dial may take: the gateway's ICMP
	// administratively-prohibited ends it at once, far below any TCP connect timeout.
	fastFail = 2 * time.Second
)

// TestSitesWithOverlappingLANsThroughHub is issue 4's first "Done when": a cloud hub and two
// edges over channel TUNs and an in-memory underlay (no root) carry TCP and UDP between
// sites whose LANs overlap, on the edges' own session through the hub's relay; a client no
// policy allows gets nothing; a policy change cuts an open connection, at the service's
// gateway and at the client's (the hub's pair filter: TestHubPairFilter).
func TestSitesWithOverlappingLANsThroughHub(t *testing.T) {
	w := newWorld(t, worldOptions{})
	top := t
	presence := netip.MustParsePrefix(vpB)
	vipNginx := netip.AddrPortFrom(w.vip(t, "nginx"), tcpPort)
	vipEcho := netip.AddrPortFrom(w.vip(t, "echo"), udpPort)

	tcpPeers := tcpServer(t, w.service, tcpPort)
	udpPeers, stopUDP := udpServer(t, w.service, udpPort)
	// Site A has a host with the service's own address, listening on the same ports: a
	// packet that leaked into the wrong LAN would end up here.
	decoyTCP := tcpServer(t, w.local, tcpPort)
	decoyUDP, _ := udpServer(t, w.local, udpPort)

	var client1Presence netip.Addr

	t.Run("snapshots", func(t *testing.T) {
		a, b, hub := w.snapshot(t, "edge-a"), w.snapshot(t, "edge-b"), w.snapshot(t, hubGW)
		if a.VPCIDR.String() != vpA || b.VPCIDR.String() != vpB {
			t.Errorf("VP CIDRs: edge-a %s, edge-b %s; want %s, %s", a.VPCIDR, b.VPCIDR, vpA, vpB)
		}
		lowerA := netip.PrefixFrom(a.VPCIDR.Addr(), a.VPCIDR.Bits()+1)
		for _, v := range a.VIPs {
			if !lowerA.Contains(v.VIP) || v.VIP == a.VPAddr {
				t.Errorf("VIP %s of %s is not in the lower half of %s", v.VIP, v.Service, a.VPCIDR)
			}
			if v.Local || v.HomeGateway != "edge-b" || !slices.Equal(v.AllowedClients, []netip.Addr{client1IP}) || v.AllowSite {
				t.Errorf("VIP %+v: want remote at edge-b, allowing client1 only", v)
			}
		}
		if len(a.VIPs) != 2 || len(b.Hosted) != 2 || len(b.VIPs) != 0 || len(a.Hosted) != 0 {
			t.Errorf("edge-a: %d VIPs %d hosted; edge-b: %d VIPs %d hosted; want 2/0 and 0/2",
				len(a.VIPs), len(a.Hosted), len(b.VIPs), len(b.Hosted))
		}
		// The hub decides no flows: its snapshot holds its peers and the one link (edge-a,
		// edge-b) its pair filter relays ciphertext for, no service rules.
		if !hub.Hub || len(hub.Links) != 1 || len(hub.VIPs) != 0 || len(hub.Hosted) != 0 {
			t.Errorf("hub snapshot: hub %v, %d links, %d VIPs, %d hosted; want a hub with 1 link and no services",
				hub.Hub, len(hub.Links), len(hub.VIPs), len(hub.Hosted))
		}
	})

	t.Run("dns", func(t *testing.T) {
		// Site A's DNS answers the exposure's dnsName with the local VIP, to allowed clients
		// only (policy-aware).
		m, err := lookup(w.client1, w.vpA.Addr, "nginx.test.com.", answerTimeout)
		if err != nil {
			t.Fatalf("client1 asks %s for nginx.test.com: %v", w.vpA.Addr, err)
		}
		if a, ok := firstA(m); !ok || len(m.Answer) != 1 || a != vipNginx.Addr() {
			t.Errorf("client1: nginx.test.com = %v, want A %s", m.Answer, vipNginx.Addr())
		}
		m, err = lookup(w.client2, w.vpA.Addr, "nginx.test.com.", answerTimeout)
		if err != nil {
			t.Fatalf("client2 asks for nginx.test.com: %v", err)
		}
		if len(m.Answer) != 0 || m.Rcode != dns.RcodeNameError {
			t.Errorf("client2 (no policy): nginx.test.com = %s %v, want NXDOMAIN", dns.RcodeToString[m.Rcode], m.Answer)
		}
	})

	t.Run("tcp", func(t *testing.T) {
		c, took, err := dialTCP(w.client1, vipNginx, dialTimeout)
		if err != nil {
			t.Fatalf("client1 → %s (nginx's VIP at site A): %v after %v", vipNginx, err, took)
		}
		defer c.Close()
		if err := exchange(c, "GET / HTTP/1.0\r\n\r\n", answerTimeout); err != nil {
			t.Fatalf("client1 ↔ nginx: %v", err)
		}
		// Many full-size segments each way: in-place rewriting and checksum updates under load.
		big := strings.Repeat("0123456789abcdef", 16<<10) // 256 KiB
		if err := exchange(c, big, 10*time.Second); err != nil {
			t.Fatalf("client1 ↔ nginx, 256 KiB: %v", err)
		}
		select {
		case p := <-tcpPeers:
			if !inUpperHalf(presence, p.Addr()) {
				t.Errorf("nginx saw the client as %s; want a presence IP in the upper half of %s", p, presence)
			}
			client1Presence = p.Addr()
		case <-time.After(answerTimeout):
			t.Fatal("nginx accepted no connection")
		}
	})

	t.Run("udp", func(t *testing.T) {
		if err := udpAsk(w.client1, vipEcho, "ping-1", answerTimeout); err != nil {
			t.Fatalf("client1 ↔ echo (UDP via %s): %v", vipEcho, err)
		}
		select {
		case p := <-udpPeers:
			if !inUpperHalf(presence, p.Addr()) {
				t.Errorf("echo saw the client as %s; want a presence IP in the upper half of %s", p, presence)
			}
			if client1Presence.IsValid() && p.Addr() != client1Presence {
				t.Errorf("echo saw client1 as %s, nginx as %s: one client, one presence IP", p.Addr(), client1Presence)
			}
		case <-time.After(answerTimeout):
			t.Fatal("echo got no datagram")
		}
	})

	t.Run("udp fragments", func(t *testing.T) {
		// 4000 bytes: three IP fragments each way. Only the first carries the UDP header;
		// every gateway on the path must map the later ones like their first.
		big := strings.Repeat("fragment", 500)
		if err := udpAsk(w.client1, vipEcho, big, answerTimeout); err != nil {
			w.dumpStats(t)
			t.Fatalf("client1 ↔ echo, a 4000-byte datagram: %v", err)
		}
		next(t, udpPeers)
	})

	t.Run("icmp echo", func(t *testing.T) {
		vips := map[netip.Addr]bool{vipNginx.Addr(): true, vipEcho.Addr(): true}
		for _, vip := range []netip.Addr{vipEcho.Addr(), vipNginx.Addr()} {
			t.Run(vip.String(), func(t *testing.T) {
				err := ping(w.client1, vip, 1, answerTimeout)
				var wrong *wrongSource
				if errors.As(err, &wrong) && vips[wrong.from] {
					// Both services live on 10.0.0.10: the reply must come back from the
					// VIP that was pinged (edge-b's echo table remembers the request).
					t.Fatalf("echo reply credited to the wrong service: %v", err)
				}
				if err != nil {
					t.Errorf("client1 pings the VIP %s: %v", vip, err)
				}
			})
		}
		if err := ping(w.client2, vipEcho.Addr(), 2, silence); err == nil {
			t.Errorf("client2 (no policy) got an echo reply from %s", vipEcho.Addr())
		}
	})

	t.Run("nothing leaks into the overlapping LAN", func(t *testing.T) {
		select {
		case p := <-decoyTCP:
			t.Errorf("site A's own 10.0.0.10 got a TCP connection from %s", p)
		case p := <-decoyUDP:
			t.Errorf("site A's own 10.0.0.10 got a datagram from %s", p)
		default:
		}
		// The decoy is alive (so its silence above means something): client1 reaches site
		// A's own 10.0.0.10 directly on the LAN.
		c, _, err := dialTCP(w.client1, netip.AddrPortFrom(sameIPAtA, tcpPort), dialTimeout)
		if err != nil {
			t.Fatalf("client1 → site A's own 10.0.0.10: %v", err)
		}
		defer c.Close()
		if err := exchange(c, "local", answerTimeout); err != nil {
			t.Fatal(err)
		}
		if p := next(t, decoyTCP); p.Addr() != client1IP {
			t.Errorf("site A's 10.0.0.10 saw %s, want client1 %s", p, client1IP)
		}
	})

	t.Run("denied client gets nothing", func(t *testing.T) {
		deniedBefore := drops(w.edgeA, "denied-client")
		hubIn := w.hub.Overlay().Wrapper().Stats().FromOverlayPackets
		c, took, err := dialTCP(w.client2, vipNginx, 10*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("client2 (no policy) connected to nginx")
		}
		if took > fastFail || isTimeout(err) {
			t.Errorf("client2's dial failed after %v with %v; want a fast failure (ICMP administratively prohibited), under %v", took, err, fastFail)
		}
		t.Logf("client2's dial: %v after %v", err, took)
		// The datagram is rejected too: administratively prohibited, about client2's own
		// datagram to the VIP.
		rejects := make(chan []byte, 16)
		f := func(pkt []byte) {
			if len(pkt) >= 20 && pkt[9] == 1 {
				select {
				case rejects <- pkt:
				default:
				}
			}
		}
		w.lanA.watch.Store(&f)
		u, err := w.client2.Net.DialUDPAddrPort(netip.AddrPort{}, vipEcho)
		if err != nil {
			t.Fatal(err)
		}
		local := netip.MustParseAddrPort(u.LocalAddr().String())
		if err := exchange(u, "ping-2", silence); err == nil {
			t.Errorf("client2 (no policy) got a UDP answer")
		}
		u.Close()
		w.lanA.watch.Store(nil)
		select {
		case pkt := <-rejects:
			if err := checkICMPError(pkt, vipEcho.Addr(), client2IP, 3, 13, local, vipEcho); err != nil {
				t.Errorf("client2's UDP reject: %v", err)
			}
		default:
			t.Error("client2's datagram got no ICMP administratively prohibited")
		}
		if got := drops(w.edgeA, "denied-client"); got < deniedBefore+2 {
			t.Errorf("edge-a denied-client drops %d → %d; want at least the SYN and the datagram counted", deniedBefore, got)
		}
		if st := w.edgeA.Engine().Stats(); st.ICMPSent == 0 {
			t.Errorf("edge-a sent no ICMP reject (stats %+v)", st)
		}
		select {
		case p := <-tcpPeers:
			t.Errorf("nginx accepted a connection from %s after client2's attempt", p)
		case p := <-udpPeers:
			t.Errorf("echo got a datagram from %s after client2's attempt", p)
		default:
		}
		// Nothing of client2's left site A: the hub saw no packet.
		if got := w.hub.Overlay().Wrapper().Stats().FromOverlayPackets; got != hubIn {
			t.Errorf("the hub got %d packets during client2's attempts; they must stop at edge-a", got-hubIn)
		}
	})

	t.Run("port unreachable comes back", func(t *testing.T) {
		// With nothing listening on 10.0.0.10:5353 the host answers ICMP port unreachable;
		// translated (outer and embedded headers) at edge-b and edge-a, on the edges' own
		// session, it must reach client1 as an error about its own datagram to the VIP
		// (docs/ARCHITECTURE.md, "A packet's walk"), so that its stack can report "connection refused". gVisor's UDP
		// sockets do not surface it on Read, so the test looks at the packet on site A.
		got := make(chan []byte, 16)
		f := func(pkt []byte) {
			if len(pkt) >= 20 && pkt[9] == 1 {
				select {
				case got <- pkt:
				default:
				}
			}
		}
		w.lanA.watch.Store(&f)
		defer w.lanA.watch.Store(nil)
		stopUDP()
		c, err := w.client1.Net.DialUDPAddrPort(netip.AddrPort{}, vipEcho)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		local := netip.MustParseAddrPort(c.LocalAddr().String())
		if _, err := c.Write([]byte("anyone?")); err != nil {
			t.Fatal(err)
		}
		select {
		case pkt := <-got:
			if err := checkICMPError(pkt, vipEcho.Addr(), client1IP, 3, 3, local, vipEcho); err != nil {
				t.Errorf("the port unreachable at site A: %v", err)
			}
		case <-time.After(answerTimeout):
			t.Fatal("no ICMP error reached site A")
		}
		udpPeers, stopUDP = udpServer(top, w.service, udpPort)
		if err := udpAsk(w.client1, vipEcho, "back", answerTimeout); err != nil {
			t.Fatalf("echo after restarting its server: %v", err)
		}
		next(t, udpPeers)
	})

	t.Run("reports", func(t *testing.T) {
		ra, rb := w.edgeA.Report(), w.edgeB.Report()
		if ra.AppliedRevision != w.snapshot(t, "edge-a").Revision {
			t.Errorf("edge-a reports revision %d, applied %d", ra.AppliedRevision, w.snapshot(t, "edge-a").Revision)
		}
		if pool(ra, "client") < 1 {
			t.Errorf("edge-a leases no client overlay address: %+v", ra.Leases)
		}
		if pool(rb, "presence") < 1 {
			t.Errorf("edge-b leases no presence IP: %+v", rb.Leases)
		}
		t.Logf("edge-a %+v\nedge-b %+v\nhub %+v", ra, rb, w.hub.Report())
	})

	t.Run("revoke", func(t *testing.T) {
		// An open connection and a working exchange before the change.
		c, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
		if err != nil {
			t.Fatalf("client1 → nginx before revocation: %v", err)
		}
		defer c.Close()
		if err := exchange(c, "before", answerTimeout); err != nil {
			t.Fatalf("client1 ↔ nginx before revocation: %v", err)
		}
		if err := udpAsk(w.client1, vipEcho, "before", answerTimeout); err != nil {
			w.dumpStats(t)
			t.Fatalf("client1 ↔ echo before revocation: %v", err)
		}
		old := map[string]*api.Snapshot{}
		for _, gw := range []string{hubGW, "edge-a", "edge-b"} {
			old[gw] = w.snapshot(t, gw)
		}
		w.apply(t, revoke)
		for gw, s := range old {
			// The hub relays the pair's ciphertext and decides nothing per server: its
			// snapshot holds no policy, and the exposure still links the two sites
			// (TestHubPairFilter covers the hub's point).
			moved := w.snapshot(t, gw).Revision > s.Revision
			if moved != (gw != hubGW) {
				t.Fatalf("%s's snapshot moved %v with the policy", gw, moved)
			}
		}
		// The new snapshots reach the gateways one at a time, so each enforcement point is
		// seen on its own (docs/ARCHITECTURE.md): the service's edge, then the client's.
		if err := udpAsk(w.client1, vipEcho, "not yet applied", answerTimeout); err != nil {
			t.Fatalf("client1 ↔ echo before any gateway took the new policy: %v", err)
		}
		steps := []struct {
			gw     string
			reason string
		}{
			{"edge-b", "denied-client"}, // the service's gateway: site A may no longer reach S
			{"edge-a", "denied-client"}, // the client's gateway: client1 is no longer allowed
		}
		for i, st := range steps {
			n := map[string]*gateway.Node{"edge-a": w.edgeA, "edge-b": w.edgeB}[st.gw]
			before := drops(n, st.reason)
			w.applySnapshots(t, n)
			if err := udpAsk(w.client1, vipEcho, "after", silence); err == nil {
				t.Errorf("step %d (%s has the new policy): client1 still gets UDP answers", i+1, st.gw)
			}
			if err := exchange(c, "after", silence); err == nil {
				t.Errorf("step %d (%s has the new policy): the open TCP connection still passes", i+1, st.gw)
			}
			// A new connection fails fast: the point that denies answers administratively
			// prohibited, and the error finds its way back translated.
			if c2, took, err := dialTCP(w.client1, vipNginx, 10*time.Second); err == nil {
				c2.Close()
				t.Errorf("step %d (%s has the new policy): client1 opened a new connection", i+1, st.gw)
			} else if took > fastFail || isTimeout(err) {
				t.Errorf("step %d (%s has the new policy): client1's dial failed after %v with %v; want a fast failure", i+1, st.gw, took, err)
			} else {
				t.Logf("step %d (%s enforces): dial fails in %v: %v", i+1, st.gw, took, err)
			}
			if got := drops(n, st.reason); got <= before {
				t.Errorf("step %d: %s's %s drops %d → %d; want them counted there (report %+v)",
					i+1, st.gw, st.reason, before, got, n.Report().Drops)
			}
		}
		if err := ping(w.client1, vipNginx.Addr(), 3, silence); err == nil {
			t.Errorf("client1 still gets echo replies from %s after revocation", vipNginx.Addr())
		}
		// The engine's own counters agree with the report.
		es := w.edgeA.Engine().Stats()
		if es.Drops["denied-client"] == 0 || es.Drops["denied-client"] != drops(w.edgeA, "denied-client") {
			t.Errorf("edge-a engine denied-client %d, report %d", es.Drops["denied-client"], drops(w.edgeA, "denied-client"))
		}
		t.Logf("drops after revocation: edge-a %v, hub %v, edge-b %v",
			w.edgeA.Report().Drops, w.hub.Report().Drops, w.edgeB.Report().Drops)
	})
}

// pool returns how many addresses a report's pool has leased.
func pool(r api.Report, name string) int {
	for _, p := range r.Leases {
		if p.Pool == name {
			return p.Used
		}
	}
	return -1
}

// next returns the next peer a server reported, failing the test after answerTimeout.
func next(t *testing.T, peers <-chan netip.AddrPort) netip.AddrPort {
	t.Helper()
	select {
	case p := <-peers:
		return p
	case <-time.After(answerTimeout):
		t.Fatal("the server reported no peer")
		return netip.AddrPort{}
	}
}

// firstA returns the address of the first answer of m if it is an A record.
func firstA(m *dns.Msg) (netip.Addr, bool) {
	if len(m.Answer) == 0 {
		return netip.Addr{}, false
	}
	a, ok := m.Answer[0].(*dns.A)
	if !ok {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(a.A)
	return ip.Unmap(), ok
}
