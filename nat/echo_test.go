package nat

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/google/gopacket/layers"
)

// The shared-host world: one host runs several exposed services, and an echo reply (no
// port) must be credited to the service its request was sent to.
//
//	site-b, host 10.0.0.10: hidden TCP 22 ov 100.64.8.2 (exposed to no site: lowest ov(S)),
//	                        echo UDP 5353 ov 100.64.8.4 (site-a), nginx TCP 8080 ov 100.64.8.5 (site-a)
//	site-a VIPs: .10 nginx (client .20 only), .13 echo (whole site)
//	site-a, host 10.0.0.30 (same site): .5 hidden-local TCP 22 (nobody), .12 web TCP 80
//	(client .20 only), .14 web-dns UDP 53 (whole site)
var (
	ovShNginx  = ma("100.64.8.5")
	ovShEcho   = ma("100.64.8.4")
	ovShHidden = ma("100.64.8.2")
	vipShEcho  = ma("192.168.0.13")
	vipHidLoc  = ma("192.168.0.5")
	vipWebDNS  = ma("192.168.0.14")
)

// ping is one echo request of a test: client pings vip with echo identifier id.
type ping struct {
	client, vip netip.Addr
	id          uint16
}

func (p ping) String() string { return fmt.Sprintf("%s pings %s (id %d)", p.client, p.vip, p.id) }

func sharedWorld(t testing.TB, mod ...func(*Config)) *world {
	a := snapA()
	a.VIPs = []api.VIP{
		{VIP: vipNginx, Service: "nginx", Protocol: "TCP", Port: 8080, HomeSite: "site-b",
			ServiceOverlay: ovShNginx, AllowedClients: []netip.Addr{clientA}},
		{VIP: vipShEcho, Service: "echo", Protocol: "UDP", Port: 5353, HomeSite: "site-b",
			ServiceOverlay: ovShEcho, AllowSite: true},
		{VIP: vipHidLoc, Service: "hidden-local", Protocol: "TCP", Port: 22, HomeSite: "site-a",
			Local: true, ServiceIP: webIP, ServiceOverlay: ma("100.64.4.2")},
		{VIP: vipWeb, Service: "web", Protocol: "TCP", Port: 80, HomeSite: "site-a",
			Local: true, ServiceIP: webIP, ServiceOverlay: ma("100.64.4.3"), AllowedClients: []netip.Addr{clientA}},
		{VIP: vipWebDNS, Service: "web-dns", Protocol: "UDP", Port: 53, HomeSite: "site-a",
			Local: true, ServiceIP: webIP, ServiceOverlay: ma("100.64.4.4"), AllowSite: true},
	}
	siteA := []netip.Prefix{mp("100.64.4.0/22")}
	b := snapB()
	b.Hosted = []api.Hosted{
		{Service: "hidden", ServiceOverlay: ovShHidden, ServiceIP: nginxIP, Protocol: "TCP", Port: 22},
		{Service: "echo", ServiceOverlay: ovShEcho, ServiceIP: nginxIP, Protocol: "UDP", Port: 5353,
			AllowedSites: []string{"site-a"}, AllowedPrefixes: siteA},
		{Service: "nginx", ServiceOverlay: ovShNginx, ServiceIP: nginxIP, Protocol: "TCP", Port: 8080,
			AllowedSites: []string{"site-a"}, AllowedPrefixes: siteA},
	}
	clk := newClock()
	return &world{clk: clk, a: newEngine(t, a, clk, mod...), hub: newEngine(t, snapHub(), clk, mod...),
		b: newEngine(t, b, clk, mod...), reply: make([]byte, 1500)}
}

func TestEchoTwoServicesOneHost(t *testing.T) {
	cases := []struct {
		name    string
		pings   []ping // requests, all sent before any reply
		replies []int  // the host answers these requests (indices into pings), in order
		wait    time.Duration
		want    Reason // ReasonOK: every reply reaches the client from the VIP it pinged
	}{
		{"nginx", []ping{{clientA, vipNginx, 1}}, []int{0}, 0, ReasonOK},
		{"echo", []ping{{clientA, vipShEcho, 1}}, []int{0}, 0, ReasonOK},
		{"echo from a client nginx does not allow", []ping{{clientA2, vipShEcho, 1}}, []int{0}, 0, ReasonOK},
		{"both services at once", []ping{{clientA, vipNginx, 1}, {clientA, vipShEcho, 2}, {clientA2, vipShEcho, 1}},
			[]int{2, 1, 0}, 0, ReasonOK},
		{"one id, one service, then the other", []ping{{clientA, vipShEcho, 9}, {clientA, vipNginx, 9}}, []int{1}, 0, ReasonOK},
		{"reply within the echo timeout", []ping{{clientA, vipNginx, 1}}, []int{0}, 29 * time.Second, ReasonOK},
		{"reply after the echo timeout", []ping{{clientA, vipNginx, 1}}, []int{0}, 31 * time.Second, ReasonEchoNoRequest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := sharedWorld(t)
			var atS [][]byte
			for _, p := range c.pings {
				b := w.toService(t, echoTo(p.client, p.vip, p.id).build(t))
				if b == nil {
					t.Fatalf("request %v dropped: A %v B %v", p, w.lastA.Reason, w.lastB.Reason)
				}
				if dstOf(b) != nginxIP {
					t.Fatalf("request reached %s", dstOf(b))
				}
				atS = append(atS, b)
			}
			w.clk.Advance(c.wait)
			for _, i := range c.replies {
				p := c.pings[i]
				got := w.toClient(t, mirror(atS[i]))
				if c.want != ReasonOK {
					if got != nil || w.lastB.Reason != c.want || drops(w.b, c.want) == 0 {
						t.Fatalf("reply to %v: B %v, want %v counted", p, w.lastB.Reason, c.want)
					}
					continue
				}
				if got == nil {
					t.Fatalf("reply to %v dropped: B %v A %v", p, w.lastB.Reason, w.lastA.Reason)
				}
				if srcOf(got) != p.vip || dstOf(got) != p.client || got[20] != icmpEchoReply {
					t.Fatalf("reply to %v came %s -> %s", p, srcOf(got), dstOf(got))
				}
			}
		})
	}
}

func TestEchoReplyWithoutRequest(t *testing.T) {
	w := sharedWorld(t)
	atS := w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t)) // leases a presence IP
	p := srcOf(atS)
	// The host "replies" to an echo nobody sent (and to one sent with another id).
	unsolicited := pk{src: nginxIP, dst: p, proto: layers.IPProtocolICMPv4, icmpType: layers.ICMPv4TypeEchoReply, icmpID: 5, payload: []byte("ping")}
	b := unsolicited.build(t)
	if r := w.b.FromSite(b, w.reply); r.Action != Drop || r.Reason != ReasonEchoNoRequest || r.ReplyLen != 0 {
		t.Fatalf("got %+v", r)
	}
	w.toService(t, echoTo(clientA, vipNginx, 6).build(t))
	if r := w.b.FromSite(unsolicited.build(t), nil); r.Reason != ReasonEchoNoRequest {
		t.Fatalf("reply with another id: %v", r.Reason)
	}
	// A reply from another host of the site, to the right presence IP and id.
	req := w.toService(t, echoTo(clientA, vipShEcho, 7).build(t))
	fake := mirror(req)
	copy(fake[12:16], dnsIP.AsSlice())
	fixChecksums(fake)
	if r := w.b.FromSite(fake, nil); r.Reason != ReasonEchoNoRequest {
		t.Fatalf("reply from another host: %v", r.Reason)
	}
	if drops(w.b, ReasonEchoNoRequest) != 3 {
		t.Fatalf("counted %d", drops(w.b, ReasonEchoNoRequest))
	}
	// The engine's name for it.
	if ReasonEchoNoRequest.String() != "icmp-echo-no-request" {
		t.Fatal(ReasonEchoNoRequest.String())
	}
}

// An echo request remembered under a presence IP whose lease has since gone to
// another peer does not credit that peer's traffic.
func TestEchoReplyAfterPresenceReuse(t *testing.T) {
	w := sharedWorld(t, func(c *Config) {
		c.PresenceLeaseIdle = time.Second
		c.LeaseQuiet = time.Nanosecond
		c.EchoTimeout = time.Hour
	})
	req := w.toService(t, echoTo(clientA, vipNginx, 3).build(t))
	p := srcOf(req)
	// Fill the pool until the freed address of clientA's overlay address comes back.
	w.clk.Advance(2 * time.Second)
	st := w.b.st.Load()
	st.presence.Sweep(w.clk.Now())
	var key uint64
	for i := uint64(1); ; i++ {
		a, err := st.presence.Lease(peerOverlay|uint64(0x64400000+i), w.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if a == ip4.U32(p) {
			key = peerOverlay | uint64(0x64400000+i)
			break
		}
	}
	if r := w.b.FromSite(mirror(req), nil); r.Reason != ReasonEchoNoRequest {
		t.Fatalf("reply to a reused presence IP (now %x): %v", key, r.Reason)
	}
}

func TestEchoSameSiteTwoServicesOneHost(t *testing.T) {
	w := sharedWorld(t)
	pings := []ping{{clientA, vipWeb, 1}, {clientA, vipWebDNS, 2}, {clientA2, vipWebDNS, 1}}
	var atS [][]byte
	for _, p := range pings {
		b := echoTo(p.client, p.vip, p.id).build(t)
		if r := w.a.FromSite(b, nil); r.Action != ToSite {
			t.Fatalf("request %v: %v", p, r.Reason)
		}
		verify(t, b)
		if dstOf(b) != webIP {
			t.Fatalf("request reached %s", dstOf(b))
		}
		atS = append(atS, b)
	}
	for i := len(atS) - 1; i >= 0; i-- {
		rep := mirror(atS[i])
		if r := w.a.FromSite(rep, nil); r.Action != ToSite {
			t.Fatalf("reply to %v: %v", pings[i], r.Reason)
		}
		verify(t, rep)
		if srcOf(rep) != pings[i].vip || dstOf(rep) != pings[i].client {
			t.Fatalf("reply to %v came %s -> %s", pings[i], srcOf(rep), dstOf(rep))
		}
	}
	// clientA2 may not reach web: its echo request is denied, and a forged reply from the
	// host gets nothing either.
	b := echoTo(clientA2, vipWeb, 4).build(t)
	if r := w.a.FromSite(b, nil); r.Reason != ReasonDeniedClient {
		t.Fatal(r.Reason)
	}
	forged := mirror(atS[2])
	put16(forged, 24, 4) // echo id 4
	fixChecksums(forged)
	if r := w.a.FromSite(forged, nil); r.Reason != ReasonEchoNoRequest {
		t.Fatal(r.Reason)
	}
	// The request expires with the injected clock.
	w.clk.Advance(31 * time.Second)
	if r := w.a.FromSite(mirror(atS[0]), nil); r.Reason != ReasonEchoNoRequest {
		t.Fatal(r.Reason)
	}
}

// ICMP errors quoting an echo request are credited like its reply would be: to the
// service the request was sent to.
func TestEchoQuotedInICMPErrorSharedHost(t *testing.T) {
	t.Run("remote", func(t *testing.T) {
		w := sharedWorld(t)
		for _, vip := range []netip.Addr{vipShEcho, vipNginx} {
			atS := w.toService(t, echoTo(clientA, vip, 11).build(t))
			// A router of site-b cannot deliver the request to the host.
			e := icmpErr(t, ma("10.0.0.1"), srcOf(atS), 3, 1, atS)
			got := w.toClient(t, e)
			if got == nil {
				t.Fatalf("%s: error dropped: B %v A %v", vip, w.lastB.Reason, w.lastA.Reason)
			}
			if srcOf(got) != vip || dstOf(got) != clientA || addrAt(got, 40) != clientA || addrAt(got, 44) != vip {
				t.Fatalf("%s: outer %s -> %s, quoted %s -> %s", vip, srcOf(got), dstOf(got), addrAt(got, 40), addrAt(got, 44))
			}
		}
		// An error quoting an echo request nobody sent.
		atS := w.toService(t, echoTo(clientA, vipNginx, 12).build(t))
		q := append([]byte(nil), atS...)
		put16(q, 24, 99)
		fixChecksums(q)
		if r := w.b.FromSite(icmpErr(t, ma("10.0.0.1"), srcOf(atS), 3, 1, q), nil); r.Reason != ReasonICMPNoMapping {
			t.Fatalf("error quoting an unknown echo: %v", r.Reason)
		}
	})
	t.Run("same site", func(t *testing.T) {
		w := sharedWorld(t)
		for _, vip := range []netip.Addr{vipWebDNS, vipWeb} {
			b := echoTo(clientA, vip, 13).build(t)
			if r := w.a.FromSite(b, nil); r.Action != ToSite {
				t.Fatal(r.Reason)
			}
			e := icmpErr(t, ma("10.0.0.1"), srcOf(b), 3, 1, b)
			if r := w.a.FromSite(e, nil); r.Action != ToSite {
				t.Fatalf("%s: %v", vip, r.Reason)
			}
			verify(t, e)
			if srcOf(e) != vip || dstOf(e) != clientA || addrAt(e, 40) != clientA || addrAt(e, 44) != vip {
				t.Fatalf("%s: outer %s -> %s, quoted %s -> %s", vip, srcOf(e), dstOf(e), addrAt(e, 40), addrAt(e, 44))
			}
		}
	})
}
