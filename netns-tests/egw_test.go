//go:build netns && linux

package netnstests

// The scenarios of issue 6 against the real binaries. One deployment (cloud + two edges on
// harness.DefaultSpec) is shared by the subtests of TestEGW, which run in order; the
// disruptive ones (MTU change, restarts) come last. The whole test skips while bin/ lacks
// cloudgateway, edgegateway or egwctl.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/egw-project/egw/netns-tests/harness"
)

// objects are applied once the daemons are up. Service web-b (HTTP at site B) is exposed to
// site A (only client-a20 allowed) and to the cloud site (whole site allowed); echo-b (TCP
// echo) and udp-b (UDP echo) to site A for client-a20; web-a21 is the seed's own shape: a
// service exposed to its own site, with a VIP pinned by a VirtualPresence.
const objects = `
kind: EServer
apiVersion: v1
eServerName: client-a20
ip: 10.0.0.20
eSiteName: site-a
---
kind: EServer
apiVersion: v1
eServerName: client-a21
ip: 10.0.0.21
eSiteName: site-a
---
kind: EService
apiVersion: v1
metadata: {name: web-b}
protocol: TCP
port: 8080
ip: 10.0.0.10
domainName: web-b
eSiteName: site-b
---
kind: EService
apiVersion: v1
metadata: {name: echo-b}
protocol: TCP
port: 7007
ip: 10.0.0.10
eSiteName: site-b
---
kind: EService
apiVersion: v1
metadata: {name: udp-b}
protocol: UDP
port: 9090
ip: 10.0.0.10
eSiteName: site-b
---
kind: EService
apiVersion: v1
metadata: {name: web-a21}
protocol: TCP
port: 8080
ip: 10.0.0.21
eSiteName: site-a
---
kind: EPolicy
apiVersion: v1
metadata: {name: allow-a20}
allowedServers: [client-a20]
---
kind: EPolicy
apiVersion: v1
metadata: {name: allow-cloud-site}
allowedSites: [cloud]
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: web-b}
eServiceName: web-b
dnsName: url1.test.com
eSites: [site-a, cloud]
ePolicys: [allow-a20, allow-cloud-site]
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: echo-b}
eServiceName: echo-b
dnsName: echo.test.com
eSites: [site-a]
ePolicys: [allow-a20]
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: udp-b}
eServiceName: udp-b
dnsName: udp.test.com
eSites: [site-a]
ePolicys: [allow-a20]
---
kind: VirtualPresence
apiVersion: v1
metadata: {name: vp-a21}
virtualIp: 192.168.0.10
eServiceName: web-a21
eSiteName: site-a
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: web-a21}
eServiceName: web-a21
dnsName: local.test.com
eSites: [site-a]
ePolicys: [allow-a20]
`

// policyBoth allows the second client too (scenario 4).
const policyBoth = `
kind: EPolicy
apiVersion: v1
metadata: {name: allow-a20}
allowedServers: [client-a20, client-a21]
`

const policyOne = `
kind: EPolicy
apiVersion: v1
metadata: {name: allow-a20}
allowedServers: [client-a20]
`

// deployment is the shared state of TestEGW.
type deployment struct {
	lab  *harness.Lab
	topo *harness.Topology
	egw  *harness.EGW
	a20  *harness.Host
	a21  *harness.Host
	b10  *harness.Host
	c10  *harness.Host
}

func TestEGW(t *testing.T) {
	harness.SkipUnlessRoot(t)
	bins, err := harness.FindEGW("")
	if err != nil {
		t.Skip(err)
	}
	d := deploy(t, bins, "wgtun")
	ctx := context.Background()

	var webVIP, echoVIP, udpVIP netip.Addr
	t.Run("1-DNS", func(t *testing.T) {
		aSite, cSite := d.topo.Site("site-a"), d.topo.Site("cloud")
		webVIP = waitDNS(t, d, d.a20, aSite.VPCIDR, "url1.test.com")
		echoVIP = waitDNS(t, d, d.a20, aSite.VPCIDR, "echo.test.com")
		udpVIP = waitDNS(t, d, d.a20, aSite.VPCIDR, "udp.test.com")
		if webVIP == echoVIP || webVIP == udpVIP {
			t.Errorf("services share a VIP: web %s echo %s udp %s", webVIP, echoVIP, udpVIP)
		}
		// The EService's domainName under the zone answers the same VIP.
		if got := waitDNS(t, d, d.a20, aSite.VPCIDR, "web-b.egw.local"); got != webVIP {
			t.Errorf("web-b.egw.local = %s; url1.test.com = %s", got, webVIP)
		}
		// The cloud site gets its own VIP, from its own VP CIDR.
		cloudVIP := waitDNS(t, d, d.c10, cSite.VPCIDR, "url1.test.com")
		t.Logf("url1.test.com: site A %s, cloud %s", webVIP, cloudVIP)
	})
	if !webVIP.IsValid() {
		t.Fatal("no VIP from DNS; the other scenarios need it")
	}
	bCIDR := d.topo.Site("site-b").VPCIDR

	t.Run("2-Traffic", func(t *testing.T) {
		who := waitHTTP(t, d, d.a20, webVIP, 30*time.Second)
		if who.Name != "b10" {
			t.Errorf("answered by %q; want b10", who.Name)
		}
		assertPresence(t, who.Remote, bCIDR)
		if udpVIP.IsValid() {
			got, err := udpExchange(d.lab, d.a20.NS, net.JoinHostPort(udpVIP.String(), "9090"), "whoami", 10*time.Second)
			if err != nil {
				t.Errorf("UDP through %s: %v", udpVIP, err)
			} else {
				assertPresence(t, strings.TrimSpace(got), bCIDR)
			}
		}
		if _, err := d.lab.Run(ctx, d.a20.NS, "ping", "-c3", "-i0.2", "-W2", webVIP.String()); err != nil {
			t.Errorf("ping VIP: %v", err)
		}
		// The cloud site reaches the same service through its own VIP.
		cloudVIP := waitDNS(t, d, d.c10, d.topo.Site("cloud").VPCIDR, "url1.test.com")
		who = waitHTTP(t, d, d.c10, cloudVIP, 30*time.Second)
		assertPresence(t, who.Remote, bCIDR)
		// `wg show` in a gateway's namespace lists its peers: the hub has every edge; an
		// edge has the hub and, in a build with edge-to-edge sessions (the hub exports
		// egw_relay_packets_total), the other edge, which it exchanges traffic with.
		cloud := d.egw.Cloud
		out, err := d.lab.Run(ctx, cloud.Site.GWNS, "wg", "show", cloud.Tun, "peers")
		if err != nil {
			t.Errorf("wg show %s peers at the hub: %v", cloud.Tun, err)
		}
		hubMetrics, err := d.egw.Metrics(ctx, cloud)
		if err != nil {
			t.Fatal(err)
		}
		sessions := hubMetrics.Has("egw_relay_packets_total")
		for s, other := range map[string]string{"site-a": "site-b", "site-b": "site-a"} {
			n := d.egw.Nodes[s]
			if !strings.Contains(out, n.PublicKey) {
				t.Errorf("hub peers %q lack %s's key %s", out, n.Site.Gateway, n.PublicKey)
			}
			want := []string{cloud.PublicKey}
			if sessions {
				want = append(want, d.egw.Nodes[other].PublicKey)
			}
			slices.Sort(want)
			edgeOut, err := d.lab.Run(ctx, n.Site.GWNS, "wg", "show", n.Tun, "peers")
			got := strings.Fields(edgeOut)
			slices.Sort(got)
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("%s peers %q (%v); want %q", n.Site.Gateway, edgeOut, err, want)
			}
		}
	})

	t.Run("3-Denied", func(t *testing.T) {
		start := time.Now()
		c, err := dialFrom(d, d.a21, net.JoinHostPort(webVIP.String(), "8080"), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatal("client-a21, allowed by no policy, connected")
		}
		// rejectDenied is on: the client is refused (TCP RST or ICMP unreachable), not left
		// to time out.
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("denial took %v (%v); want a fast reject", el, err)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) && !errors.Is(err, syscall.EHOSTUNREACH) &&
			!errors.Is(err, syscall.ENETUNREACH) && !errors.Is(err, syscall.EACCES) {
			t.Errorf("denied dial error %v; want refused or unreachable", err)
		}
		// Policy-aware DNS: the name of a service you may not use is not disclosed.
		status, addrs := dig(t, d, d.a21, d.topo.Site("site-a").VPCIDR.Addr().Next(), "url1.test.com")
		if status != "NXDOMAIN" || len(addrs) != 0 {
			t.Errorf("a21 resolving url1.test.com: %s %v; want NXDOMAIN", status, addrs)
		}
	})

	t.Run("4-PolicyChange", func(t *testing.T) {
		if err := d.egw.Apply(ctx, "allow-both", policyBoth); err != nil {
			t.Fatal(err)
		}
		applied := time.Now()
		who := waitHTTP(t, d, d.a21, webVIP, 30*time.Second)
		t.Logf("allow enforced after %v", time.Since(applied))
		assertPresence(t, who.Remote, bCIDR)

		// An open connection of a21 stops passing within the target once revoked.
		c, err := dialFrom(d, d.a21, net.JoinHostPort(echoVIP.String(), "7007"), 5*time.Second)
		if err != nil {
			t.Fatalf("a21 echo connection: %v", err)
		}
		defer c.Close()
		if err := echoOnce(c, 300*time.Millisecond); err != nil {
			t.Fatalf("echo before revoke: %v", err)
		}
		if err := d.egw.Apply(ctx, "allow-one", policyOne); err != nil {
			t.Fatal(err)
		}
		revoked := time.Now()
		const target = 5 * time.Second
		for {
			if err := echoOnce(c, 300*time.Millisecond); err != nil {
				t.Logf("revoke enforced on an open connection after %v (%v)", time.Since(revoked), err)
				break
			}
			if time.Since(revoked) > target {
				t.Fatalf("open connection still passes %v after the revoke", target)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("8-SameSite", func(t *testing.T) {
		vip := waitDNS(t, d, d.a20, d.topo.Site("site-a").VPCIDR, "local.test.com")
		if vip != netip.MustParseAddr("192.168.0.10") {
			t.Errorf("local.test.com = %s; want the pinned 192.168.0.10", vip)
		}
		who := waitHTTP(t, d, d.a20, vip, 30*time.Second)
		if who.Name != "a21" {
			t.Errorf("answered by %q; want a21", who.Name)
		}
		// The service sees the client as a presence IP of its own gateway's VP CIDR.
		assertPresence(t, who.Remote, d.topo.Site("site-a").VPCIDR)
	})

	t.Run("7-MalformedPackets", func(t *testing.T) {
		edgeA := d.egw.Nodes["site-a"]
		before, err := d.egw.Drops(ctx, edgeA, "")
		if err != nil {
			t.Fatal(err)
		}
		injectGarbage(t, d, webVIP)
		// Counted: at least the segment to a port the service does not have.
		err = harness.Poll(ctx, 5*time.Second, 100*time.Millisecond, "edge-a drop counters", func() error {
			after, err := d.egw.Drops(ctx, edgeA, "")
			if err == nil && after <= before {
				err = fmt.Errorf("drops %v, before %v", after, before)
			}
			return err
		})
		if err != nil {
			t.Error(err)
		}
		for _, n := range d.egw.Nodes {
			if done, err := n.Proc.Exited(); done {
				t.Fatalf("%s died after garbage: %v", n.Site.Gateway, err)
			}
		}
		who := waitHTTP(t, d, d.a20, webVIP, 10*time.Second)
		assertPresence(t, who.Remote, bCIDR)
	})

	// Scenario 7 inside the tunnel: malformed packets from a rogue edge reach the hub
	// decrypted (rogue_test.go).
	t.Run("7-MalformedInTunnel", func(t *testing.T) {
		malformedInTunnel(t, d, webVIP)
	})

	t.Run("5-LargeTransfer", func(t *testing.T) {
		const size = 50 << 20
		download(t, d, d.a20, webVIP, size)
		upload(t, d, d.a20, webVIP, size)
		// A smaller MTU on the link in front of the service: both directions still work
		// (MSS clamped; ICMP fragmentation-needed translated back).
		gwb := d.topo.Site("site-b").GWNS
		for _, dev := range []struct{ ns, dev string }{{d.b10.NS, "eth0"}, {gwb, d.b10.Port}, {gwb, "lan0"}} {
			if err := d.lab.SetMTU(dev.ns, dev.dev, 1280); err != nil {
				t.Fatal(err)
			}
		}
		download(t, d, d.a20, webVIP, size)
		upload(t, d, d.a20, webVIP, size)
		if udpVIP.IsValid() {
			pmtuUDP(t, d, udpVIP)
		}
	})

	t.Run("6-Restarts", func(t *testing.T) {
		cloud := d.egw.Cloud
		if err := d.egw.StopNode(cloud); err != nil {
			t.Errorf("cloud exit: %v", err)
		}
		if err := d.egw.StartNode(ctx, cloud); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		who := waitHTTP(t, d, d.a20, webVIP, 60*time.Second)
		t.Logf("traffic resumed %v after the cloud restart", time.Since(start))
		assertPresence(t, who.Remote, bCIDR)

		// Edge restart while the cloud is down: DNS and the same-site exposure from cache.
		if err := d.egw.StopNode(cloud); err != nil {
			t.Errorf("cloud exit: %v", err)
		}
		edgeA := d.egw.Nodes["site-a"]
		if err := d.egw.StopNode(edgeA); err != nil {
			t.Errorf("edge-a exit: %v", err)
		}
		if err := d.egw.StartNode(ctx, edgeA); err != nil {
			t.Fatal(err)
		}
		if vip := waitDNS(t, d, d.a20, d.topo.Site("site-a").VPCIDR, "local.test.com"); vip != netip.MustParseAddr("192.168.0.10") {
			t.Errorf("offline DNS: local.test.com = %s", vip)
		}
		who = waitHTTP(t, d, d.a20, netip.MustParseAddr("192.168.0.10"), 30*time.Second)
		if who.Name != "a21" {
			t.Errorf("offline same-site exposure answered by %q", who.Name)
		}
		// The cloud returns: the edge resyncs and cross-site traffic flows again.
		if err := d.egw.StartNode(ctx, cloud); err != nil {
			t.Fatal(err)
		}
		if err := d.egw.WaitHandshake(ctx, edgeA); err != nil {
			t.Fatal(err)
		}
		who = waitHTTP(t, d, d.a20, webVIP, 60*time.Second)
		assertPresence(t, who.Remote, bCIDR)
		// "Within seconds": reports come every 10 s, so allow two rounds.
		if took, err := d.egw.WaitSynced(ctx, 30*time.Second); err != nil {
			t.Error(err)
		} else {
			t.Logf("every gateway at the latest revision %v after traffic resumed", took)
		}
		if out, err := d.egw.Ctl(ctx, "status"); err != nil {
			t.Errorf("egwctl status: %v", err)
		} else {
			t.Logf("egwctl status:\n%s", out)
		}
	})
}

// TestEGWWater runs the traffic scenarios with tun.driver: water (one packet per read and
// write), the selectable TUN backend: both drivers must carry the same traffic.
func TestEGWWater(t *testing.T) {
	harness.SkipUnlessRoot(t)
	bins, err := harness.FindEGW("")
	if err != nil {
		t.Skip(err)
	}
	d := deploy(t, bins, "water")
	ctx := context.Background()
	aSite := d.topo.Site("site-a")
	webVIP := waitDNS(t, d, d.a20, aSite.VPCIDR, "url1.test.com")
	who := waitHTTP(t, d, d.a20, webVIP, 30*time.Second)
	assertPresence(t, who.Remote, d.topo.Site("site-b").VPCIDR)
	udpVIP := waitDNS(t, d, d.a20, aSite.VPCIDR, "udp.test.com")
	if got, err := udpExchange(d.lab, d.a20.NS, net.JoinHostPort(udpVIP.String(), "9090"), "whoami", 10*time.Second); err != nil {
		t.Errorf("UDP through %s: %v", udpVIP, err)
	} else {
		assertPresence(t, strings.TrimSpace(got), d.topo.Site("site-b").VPCIDR)
	}
	if _, err := d.lab.Run(ctx, d.a20.NS, "ping", "-c3", "-i0.2", "-W2", webVIP.String()); err != nil {
		t.Errorf("ping VIP: %v", err)
	}
	if c, err := dialFrom(d, d.a21, net.JoinHostPort(webVIP.String(), "8080"), 3*time.Second); err == nil {
		c.Close()
		t.Error("client-a21, allowed by no policy, connected")
	}
	download(t, d, d.a20, webVIP, 50<<20)
	upload(t, d, d.a20, webVIP, 50<<20)
}

// deploy builds the topology, starts the responders and EGW, and applies the objects.
func deploy(t *testing.T, bins harness.EGWBinaries, driver string) *deployment {
	t.Helper()
	return deployOn(t, harness.DefaultSpec(), harness.EGWOptions{Bin: bins, TunDriver: driver})
}

// deployOn is deploy on any topology spec with the given options (RejectDenied and
// PolicyAware are always set).
func deployOn(t *testing.T, spec harness.Spec, opts harness.EGWOptions) *deployment {
	t.Helper()
	ctx := context.Background()
	lab := harness.NewT(t)
	topo, err := harness.Build(lab, spec)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{lab: lab, topo: topo, a20: topo.Host("a20"), a21: topo.Host("a21"), b10: topo.Host("b10"), c10: topo.Host("c10")}
	for _, h := range []*harness.Host{d.b10, d.a21, d.c10} {
		startResponder(t, lab, h, h.Name)
	}
	opts.RejectDenied, opts.PolicyAware = true, true
	d.egw, err = harness.StartEGW(ctx, topo, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.egw.Apply(ctx, "objects", objects); err != nil {
		t.Fatal(err)
	}
	return d
}

type whoamiReply struct {
	Name   string `json:"name"`
	Remote string `json:"remote"`
}

// waitHTTP polls GET http://vip:8080/ from h until it answers.
func waitHTTP(t *testing.T, d *deployment, h *harness.Host, vip netip.Addr, timeout time.Duration) whoamiReply {
	t.Helper()
	var who whoamiReply
	url := "http://" + net.JoinHostPort(vip.String(), "8080") + "/"
	client := d.lab.HTTPClient(h.NS, 2*time.Second)
	err := harness.Poll(context.Background(), timeout, 100*time.Millisecond, "GET "+url+" from "+h.Name, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return json.NewDecoder(resp.Body).Decode(&who)
	})
	if err != nil {
		t.Fatal(err)
	}
	return who
}

func assertPresence(t *testing.T, remote string, cidr netip.Prefix) {
	t.Helper()
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		t.Errorf("service saw remote %q: %v", remote, err)
		return
	}
	if !cidr.Contains(ap.Addr()) {
		t.Errorf("service saw the client as %s; want a presence IP in %s", ap.Addr(), cidr)
	}
}

// dig asks server for name's A record from h and returns the rcode and the addresses.
func dig(t *testing.T, d *deployment, h *harness.Host, server netip.Addr, name string) (string, []netip.Addr) {
	t.Helper()
	status, addrs, err := d.lab.Dig(context.Background(), h.NS, server, name)
	if err != nil {
		return "no answer: " + err.Error(), nil
	}
	return status, addrs
}

// waitDNS polls the DNS of h's site until name resolves to one VIP inside vpCIDR.
func waitDNS(t *testing.T, d *deployment, h *harness.Host, vpCIDR netip.Prefix, name string) netip.Addr {
	t.Helper()
	if h.Site.VPCIDR != vpCIDR {
		t.Fatalf("waitDNS: host %s is not in the site of %s", h.Name, vpCIDR)
	}
	vip, err := d.egw.Resolve(context.Background(), h.NS, h.Site, name, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return vip
}

func dialFrom(d *deployment, h *harness.Host, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.lab.DialContext(h.NS)(ctx, "tcp", addr)
}

// echoOnce sends one line on an echo connection and reads it back within timeout.
func echoOnce(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("ping " + strconv.FormatInt(time.Now().UnixNano(), 10) + "\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("echo returned %q", buf)
	}
	return nil
}

func download(t *testing.T, d *deployment, h *harness.Host, vip netip.Addr, size int64) {
	t.Helper()
	start := time.Now()
	url := fmt.Sprintf("http://%s/bytes?n=%d", net.JoinHostPort(vip.String(), "8080"), size)
	resp, err := d.lab.HTTPClient(h.NS, 120*time.Second).Get(url)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		t.Fatalf("download: %d of %d bytes: %v", n, size, err)
	}
	t.Logf("downloaded %d MB in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

func upload(t *testing.T, d *deployment, h *harness.Host, vip netip.Addr, size int64) {
	t.Helper()
	start := time.Now()
	url := "http://" + net.JoinHostPort(vip.String(), "8080") + "/upload"
	resp, err := d.lab.HTTPClient(h.NS, 120*time.Second).Post(url, "application/octet-stream", io.LimitReader(zeros{}, size))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	var r struct {
		Received int64 `json:"received"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Received != size {
		t.Fatalf("upload: service received %d of %d bytes (%v)", r.Received, size, err)
	}
	t.Logf("uploaded %d MB in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// pmtuUDP sends DF-marked 1400-byte datagrams to the UDP VIP; the link in front of the
// service (MTU 1280) makes gateway B answer fragmentation-needed, which must come back
// translated so that a20's kernel learns the smaller path MTU for the VIP.
func pmtuUDP(t *testing.T, d *deployment, vip netip.Addr) {
	t.Helper()
	ctx := context.Background()
	pc, err := d.lab.ListenPacket(d.a20.NS, "udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	raw, err := pc.(*net.UDPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
	})
	dst := &net.UDPAddr{IP: vip.AsSlice(), Port: 9090}
	payload := make([]byte, 1372) // 1400 bytes on the wire
	err = harness.Poll(ctx, 10*time.Second, 100*time.Millisecond, "path MTU 1280 towards "+vip.String(), func() error {
		_, _ = pc.WriteTo(payload, dst) // EMSGSIZE once the PMTU is learned
		out, err := d.lab.Run(ctx, d.a20.NS, "ip", "route", "get", vip.String())
		if err != nil {
			return err
		}
		if !strings.Contains(out, "mtu 1280") {
			return fmt.Errorf("route: %s", strings.TrimSpace(out))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// injectGarbage sends packets that must be dropped and counted without harm: garbage to
// the cloud's WireGuard port from the underlay, and from the allowed client an ICMP error
// that matches no flow, a truncated-looking UDP datagram and a TCP segment for no connection.
func injectGarbage(t *testing.T, d *deployment, vip netip.Addr) {
	t.Helper()
	ctx := context.Background()
	cloud := d.topo.Site("cloud")
	pc, err := d.lab.ListenPacket(d.topo.WAN, "udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	wg := &net.UDPAddr{IP: cloud.Underlay.Addr().AsSlice(), Port: cloud.ListenPort}
	for _, p := range [][]byte{{}, {1}, {4, 0, 0, 0}, make([]byte, 148), make([]byte, 1500)} {
		_, _ = pc.WriteTo(p, wg)
	}
	pc.Close()

	// ICMP destination-unreachable quoting a flow that never existed, sent to the VIP.
	icmp, err := d.lab.ListenPacket(d.a20.NS, "ip4:icmp", "0.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	defer icmp.Close()
	inner := []byte{0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 20, 0, 0, 0, 0, 0x30, 0x39, 0x23, 0x82, 0, 8, 0, 0}
	copy(inner[16:20], vip.AsSlice())
	msg := icmpUnreachable(inner)
	for range 5 {
		if _, err := icmp.WriteTo(msg, &net.IPAddr{IP: vip.AsSlice()}); err != nil {
			t.Errorf("sending ICMP error: %v", err)
		}
	}
	// Unsolicited TCP to a port the service does not expose, and a zero-length datagram.
	if c, err := dialFrom(d, d.a20, net.JoinHostPort(vip.String(), "9999"), time.Second); err == nil {
		c.Close()
		t.Error("a port outside the service's connected")
	}
	if u, err := d.lab.DialContext(d.a20.NS)(ctx, "udp4", net.JoinHostPort(vip.String(), "8080")); err == nil {
		_, _ = u.Write(nil)
		u.Close()
	}
}
