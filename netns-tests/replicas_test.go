//go:build netns && linux

package netnstests

// Several cloud gateways on one etcd (issue 12), against the real binaries: a 3-member
// etcd in the underlay's namespace, the cloud site's gateway (replica 1) and a second
// replica in a namespace of its own on the underlay, both hubs, and the two edges of
// harness.DefaultSpec. Both edges sync from replica 2 first (gateway.HubOrder), so killing
// it shows the sync moving while the cloud site's gateway (replica 1, whose HA is separate
// work) keeps serving the cloud site.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/egw-project/egw/gateway"
	"github.com/egw-project/egw/netns-tests/harness"
)

// cloudService is a service at the cloud site (c10's responder) exposed to site A.
const cloudService = `
kind: EService
apiVersion: v1
metadata: {name: web-c}
protocol: TCP
port: 8080
ip: 10.1.0.10
eSiteName: cloud
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: web-c}
eServiceName: web-c
dnsName: cloud.test.com
eSites: [site-a]
ePolicys: [allow-a20]
`

func TestReplicas(t *testing.T) {
	harness.SkipUnlessRoot(t)
	bins, err := harness.FindEGW("")
	if err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	p := netip.MustParsePrefix
	spec := harness.DefaultSpec()
	spec.Sites = append(spec.Sites, harness.SiteSpec{Site: "cloud-r2", Gateway: "cloud-2", NS: "gwr", Key: "r", ListenPort: 51820,
		Underlay: p("203.0.113.4/24"), LAN: p("10.2.0.1/24"), VPCIDR: p("192.168.9.0/24")})
	lab := harness.NewT(t)
	topo, err := harness.Build(lab, spec)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{lab: lab, topo: topo, a20: topo.Host("a20"), a21: topo.Host("a21"), b10: topo.Host("b10"), c10: topo.Host("c10")}
	for _, h := range []*harness.Host{d.b10, d.a21, d.c10} {
		startResponder(t, lab, h, h.Name)
	}

	// A 3-member etcd on the underlay.
	if err := lab.Addr(topo.WAN, "br0", "203.0.113.100/24"); err != nil {
		t.Fatal(err)
	}
	var cluster, endpoints []string
	for i := range 3 {
		cluster = append(cluster, fmt.Sprintf("m%d=http://203.0.113.100:%d", i, 2380+10*i))
		endpoints = append(endpoints, fmt.Sprintf("http://203.0.113.100:%d", 2379+10*i))
	}
	members := make([]*harness.Proc, 3)
	startMember := func(i int) {
		t.Helper()
		pr, err := lab.Start(topo.WAN, fmt.Sprintf("etcd-m%d", i), nil, tools.EtcdMember, "--name", fmt.Sprintf("m%d", i),
			"--data-dir", filepath.Join(lab.LogDir, fmt.Sprintf("etcd-m%d", i)), "--client-url", endpoints[i],
			"--peer-url", fmt.Sprintf("http://203.0.113.100:%d", 2380+10*i), "--initial-cluster", strings.Join(cluster, ","))
		if err != nil {
			t.Fatal(err)
		}
		members[i] = pr
	}
	for i := range 3 {
		startMember(i)
	}
	for i := range 3 {
		if err := lab.WaitTCP(ctx, topo.WAN, strings.TrimPrefix(endpoints[i], "http://"), 60*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	// Replica 1 runs the cloud site's gateway; replica 2 is a hub of its own.
	store := map[string]any{"backend": "etcd", "etcd": map[string]any{"endpoints": endpoints}}
	d.egw, err = harness.StartCloud(ctx, topo, harness.EGWOptions{Bin: bins, RejectDenied: true, PolicyAware: true,
		HubConfig: map[string]any{"store": store, "enrollListen": ""}})
	if err != nil {
		t.Fatal(err)
	}
	r2 := startReplica(t, d, topo.Site("cloud-r2"), bins)
	ctl2 := func(args ...string) (string, error) {
		return lab.Run(ctx, r2.site.GWNS, append([]string{bins.Ctl, "--socket", r2.sock, "--timeout", "10s"}, args...)...)
	}
	for _, s := range []string{"site-a", "site-b"} {
		n, err := d.egw.RegisterEdge(ctx, topo.Site(s))
		if err != nil {
			t.Fatal(err)
		}
		if err := d.egw.StartNode(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"site-a", "site-b"} {
		if err := d.egw.WaitHandshake(ctx, d.egw.Nodes[s]); err != nil {
			t.Fatal(err)
		}
	}

	// Applied through replica 1: visible through replica 2, enforced at the edges.
	if err := d.egw.Apply(ctx, "objects", objects+"---\n"+cloudService); err != nil {
		t.Fatal(err)
	}
	if err := harness.Poll(ctx, 10*time.Second, 100*time.Millisecond, "web-c through replica 2", func() error {
		out, err := ctl2("get", "serviceexposes")
		if err == nil && !strings.Contains(out, "web-c") {
			err = fmt.Errorf("not listed: %s", out)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	aCIDR := topo.Site("site-a").VPCIDR
	webVIP := waitDNS(t, d, d.a20, aCIDR, "url1.test.com")
	cloudVIP := waitDNS(t, d, d.a20, aCIDR, "cloud.test.com")
	if who := waitHTTP(t, d, d.a20, webVIP, 30*time.Second); who.Name != "b10" {
		t.Fatalf("edge service answered by %q", who.Name)
	}
	if who := waitHTTP(t, d, d.a20, cloudVIP, 30*time.Second); who.Name != "c10" {
		t.Fatalf("cloud service answered by %q", who.Name)
	}
	if c, err := dialFrom(d, d.a21, net.JoinHostPort(webVIP.String(), "8080"), 3*time.Second); err == nil {
		c.Close()
		t.Fatal("client-a21, allowed by no policy, connected")
	}

	// Both edges sync from replica 2 (their HubOrder puts it first).
	hub1 := "http://100.64.0.1:7443"
	hub2 := "http://" + net.JoinHostPort(r2.overlayIP.String(), "7443")
	for _, s := range []string{"site-a", "site-b"} {
		n := d.egw.Nodes[s]
		if first := gateway.HubOrder(n.Site.Gateway, []string{hub1, hub2})[0]; first != hub2 {
			t.Fatalf("%s would sync from %s first; the test needs replica 2 (%s)", n.Site.Gateway, first, hub2)
		}
		if err := harness.Poll(ctx, 30*time.Second, 100*time.Millisecond, n.Site.Gateway+" syncing from replica 2", func() error {
			return syncingFrom(n, r2.overlayIP)
		}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("KillReplicaSyncedFrom", func(t *testing.T) {
		if err := r2.proc.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for _, s := range []string{"site-a", "site-b"} {
			n := d.egw.Nodes[s]
			if err := harness.Poll(ctx, 10*time.Second, 50*time.Millisecond, n.Site.Gateway+" syncing from replica 1", func() error {
				return syncingFrom(n, netip.MustParseAddr("100.64.0.1"))
			}); err != nil {
				t.Fatal(err)
			}
		}
		moved := time.Since(start)
		t.Logf("both edges sync from replica 1 %v after replica 2 was killed", moved.Round(time.Millisecond))
		if moved > 5*time.Second {
			t.Errorf("the edges moved their sync after %v; want within 5 s", moved)
		}
		waitHTTP(t, d, d.a20, webVIP, 10*time.Second)
		waitHTTP(t, d, d.a20, cloudVIP, 10*time.Second)
		// A change through replica 1 reaches the edges.
		if err := d.egw.Apply(ctx, "policy-both", policyBoth); err != nil {
			t.Fatal(err)
		}
		waitHTTP(t, d, d.a21, webVIP, 15*time.Second)
	})

	t.Run("EtcdMembersDown", func(t *testing.T) {
		// One member down: writes go on.
		members[2].Stop(10 * time.Second)
		if err := harness.Poll(ctx, 20*time.Second, 500*time.Millisecond, "a write with one etcd member down", func() error {
			return d.egw.Apply(ctx, "policy-one", policyOne)
		}); err != nil {
			t.Fatal(err)
		}
		// Two down: writes answer 503, traffic goes on.
		members[1].Stop(10 * time.Second)
		if err := harness.Poll(ctx, 30*time.Second, 500*time.Millisecond, "a write refused without quorum", func() error {
			err := d.egw.Apply(ctx, "policy-both-2", policyBoth)
			if err == nil {
				return fmt.Errorf("a write succeeded without quorum")
			}
			if !strings.Contains(err.Error(), "503") && !strings.Contains(err.Error(), "unavailable") {
				return fmt.Errorf("refused, but not as unavailable: %v", err)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		waitHTTP(t, d, d.a20, webVIP, 10*time.Second)
		waitHTTP(t, d, d.a20, cloudVIP, 10*time.Second)
		// Back: writes go through again and the edges converge.
		startMember(1)
		startMember(2)
		if err := harness.Poll(ctx, 90*time.Second, time.Second, "a write after the members returned", func() error {
			return d.egw.Apply(ctx, "policy-both-3", policyBoth)
		}); err != nil {
			t.Fatal(err)
		}
		waitHTTP(t, d, d.a21, webVIP, 30*time.Second)
	})
}

// replica is the second cloud gateway replica.
type replica struct {
	site      *harness.Site
	sock      string
	proc      *harness.Proc
	overlayIP netip.Addr
}

// startReplica starts a second cloud gateway on site's namespace with replica 1's
// configuration, its own hubName, key, endpoint, state and API socket.
func startReplica(t *testing.T, d *deployment, site *harness.Site, bins harness.EGWBinaries) *replica {
	t.Helper()
	ctx := context.Background()
	b, err := os.ReadFile(d.egw.Cloud.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(d.lab.LogDir, "egw-cloud-2")
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &replica{site: site, sock: filepath.Join(dir, "api.sock")}
	cfg["hubName"] = "cloud-2"
	cfg["endpoint"] = fmt.Sprintf("%s:%d", site.Underlay.Addr(), site.ListenPort)
	cfg["stateDir"], cfg["privateKeyFile"], cfg["apiSocket"] = state, filepath.Join(state, "private.key"), r.sock
	cfg["tun"].(map[string]any)["name"] = d.lab.DevName("vp", "r")
	cfg["dns"].(map[string]any)["siteNetworks"] = []string{site.LAN.Masked().String()}
	conf := filepath.Join(dir, "cloudgateway.yaml")
	if b, err = yaml.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if r.proc, err = d.lab.Start(site.GWNS, "cloud-2", nil, bins.Cloud, "--config", conf); err != nil {
		t.Fatal(err)
	}
	// Registered as a hub: the API answers and the hub has an overlay address.
	err = harness.Poll(ctx, 60*time.Second, 100*time.Millisecond, "replica 2 registered as a hub", func() error {
		if done, werr := r.proc.Exited(); done {
			_, stderr := r.proc.Logs()
			return harness.Permanent(fmt.Errorf("replica 2 exited (%v): %s", werr, stderr))
		}
		stdout, stderr := r.proc.Logs()
		for _, line := range strings.Split(stdout+stderr, "\n") {
			if strings.Contains(line, "hub node starting") {
				if i := strings.Index(line, "overlayIP="); i >= 0 {
					ip, err := netip.ParseAddr(strings.Fields(line[i+len("overlayIP="):])[0])
					if err == nil {
						r.overlayIP = ip
						return nil
					}
				}
			}
		}
		return fmt.Errorf("not yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.lab.Run(ctx, site.GWNS, bins.Ctl, "--socket", r.sock, "--timeout", "10s", "get", "esites"); err != nil {
		t.Fatal(err)
	}
	return r
}

// syncingFrom reports whether an edge's last "syncing from hub" log line names ip.
func syncingFrom(n *harness.Node, ip netip.Addr) error {
	stdout, stderr := n.Proc.Logs()
	last := ""
	for _, line := range strings.Split(stdout+stderr, "\n") {
		if strings.Contains(line, "syncing from hub") {
			last = line
		}
	}
	if !strings.Contains(last, "overlayIP="+ip.String()) {
		return fmt.Errorf("last sync hub line %q", last)
	}
	return nil
}
