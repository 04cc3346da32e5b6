package main

// EGW's own rows (issue 7): the client a20 at site A reaches a service through a VIP of its
// own gateway, on the same topology the netns tests use (harness.DefaultSpec):
//
//	egw-edge-cloud        a20 → edge-a ⇒ cloud → c10 (service at the cloud site; one tunnel hop)
//	egw-edge-hub-edge     a20 → edge-a ⇒ hub ⇒ edge-b → b10 (site B, overlapping LAN)
//	egw-same-site         a20 → edge-a → a21 (service exposed to its own site; no tunnel)
//	egw-edge-cloud-water  as egw-edge-cloud with tun.driver: water (TUN backends side by side)
//
// Each path exposes the three bench services (iperf3 TCP, TCP echo, UDP sink) of its server
// host to site A for client-a20 only, and resolves their VIPs through site A's DNS. They are
// skipped, with the reason in the report, while the EGW binaries are missing.

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/egw-project/egw/netns-tests/harness"
)

func egwPaths() []path {
	return []path{
		egwPath("egw-edge-cloud", "EGW: site A client -> service at the cloud site (one tunnel hop)", "wgtun", "c10"),
		egwPath("egw-edge-hub-edge", "EGW: site A client -> service at site B via the hub (two hops)", "wgtun", "b10"),
		egwPath("egw-same-site", "EGW: site A client -> service exposed to its own site (no tunnel)", "wgtun", "a21"),
		egwPath("egw-edge-cloud-water", "EGW: as egw-edge-cloud with tun.driver water", "water", "c10"),
	}
}

// benchObjects exposes the bench services of host (ip at site) to site-a for client-a20.
func benchObjects(site, ip string) string {
	svc := func(name, proto string, port int) string {
		return fmt.Sprintf(`
---
kind: EService
apiVersion: v1
metadata: {name: %[1]s}
protocol: %[2]s
port: %[3]d
ip: %[4]s
eSiteName: %[5]s
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: %[1]s}
eServiceName: %[1]s
dnsName: %[1]s.bench.test
eSites: [site-a]
ePolicys: [bench-allow]
`, name, proto, port, ip, site)
	}
	return `kind: EServer
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
kind: EPolicy
apiVersion: v1
metadata: {name: bench-allow}
allowedServers: [client-a20]` +
		svc("iperf", "TCP", iperfPort) + svc("echo", "TCP", echoPort) + svc("udp", "UDP", udpPort)
}

func egwPath(name, desc, driver, server string) path {
	return path{name: name, desc: desc, setup: func(ctx context.Context, lab *harness.Lab, e *env) (endpoints, error) {
		if e.egwOK != nil {
			return endpoints{}, errSkip{e.egwOK.Error()}
		}
		topo, err := harness.Build(lab, harness.DefaultSpec())
		if err != nil {
			return endpoints{}, err
		}
		egw, err := harness.StartEGW(ctx, topo, harness.EGWOptions{Bin: e.egw, TunDriver: driver, RejectDenied: true, PolicyAware: true})
		if err != nil {
			return endpoints{}, err
		}
		srv, client := topo.Host(server), topo.Host("a20")
		if err := egw.Apply(ctx, "bench", benchObjects(srv.Site.Site, srv.IP.String())); err != nil {
			return endpoints{}, err
		}
		edge := egw.Nodes["site-a"]
		ep := endpoints{clientNS: client.NS, serverNS: srv.NS,
			note: strings.TrimSpace("ping to the echo VIP (gateway A may answer it); edge-a " +
				offloads(ctx, lab, edge.Site.GWNS, edge.Tun))}
		for _, r := range []struct {
			name string
			dst  *string
		}{{"iperf", &ep.iperf}, {"echo", &ep.echo}, {"udp", &ep.udp}} {
			vip, err := egw.Resolve(ctx, client.NS, client.Site, r.name+".bench.test", 30*time.Second)
			if err != nil {
				return endpoints{}, err
			}
			*r.dst = vip.String()
		}
		ep.ping = ep.echo
		// Memory of the daemons once configured (idle: no flows yet).
		for _, n := range []*harness.Node{egw.Nodes["site-a"], egw.Cloud} {
			if kb, err := rssKB(n.Proc.Pid()); err == nil {
				role := "edge"
				if n.Site.Cloud {
					role = "cloud"
				}
				ep.extra = append(ep.extra, extraFigure{role + "_idle_rss", float64(kb) / 1024, "MiB"})
			}
		}
		// Policy change to enforcement, once the echo server runs: allow a21 too and time
		// until it connects.
		ep.afterStart = func(ctx context.Context) ([]extraFigure, error) {
			d, err := policyEnforce(ctx, lab, egw, topo, ep.echo)
			if err != nil {
				return nil, fmt.Errorf("policy change: %w", err)
			}
			return []extraFigure{{"policy_allow_enforced", float64(d.Microseconds()) / 1000, "ms"}}, nil
		}
		return ep, nil
	}}
}

// rssKB reads VmRSS of pid from /proc.
func rssKB(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// policyEnforce adds client-a21 (an EServer from the start) to bench-allow and returns the time from the end of
// `egwctl apply` until a21 connects to the echo VIP; a21 is revoked again afterwards so the
// measurements that follow see the configuration they expect.
func policyEnforce(ctx context.Context, lab *harness.Lab, egw *harness.EGW, topo *harness.Topology, echoVIP string) (time.Duration, error) {
	a21 := topo.Host("a21")
	policy := func(servers string) string {
		return "kind: EPolicy\napiVersion: v1\nmetadata: {name: bench-allow}\nallowedServers: [" + servers + "]\n"
	}
	if err := egw.Apply(ctx, "allow-a21", policy("client-a20, client-a21")); err != nil {
		return 0, err
	}
	start := time.Now()
	addr := net.JoinHostPort(echoVIP, strconv.Itoa(echoPort))
	err := harness.Poll(ctx, 30*time.Second, 5*time.Millisecond, "a21 allowed", func() error {
		dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		c, err := lab.DialContext(a21.NS)(dctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
	took := time.Since(start)
	if rerr := egw.Apply(ctx, "revoke-a21", policy("client-a20")); rerr != nil && err == nil {
		err = rerr
	}
	return took, err
}
