package main

// EGW's own rows (issues 7 and 10): the client a20 at site A reaches a service through a VIP
// of its own gateway, on the same topology the netns tests use (harness.DefaultSpec):
//
//	egw-edge-cloud        a20 → edge-a ⇒ cloud → c10 (service at the cloud site; one tunnel hop)
//	egw-edge-edge-direct  a20 → edge-a ⇒ edge-b → b10 (site B, overlapping LAN): one WireGuard
//	                      session end to end, on the direct path between the two edges
//	egw-edge-hub-edge     as egw-edge-edge-direct with paths.direct: false: the same session,
//	                      its ciphertext forwarded by the hub's relay
//	egw-same-site         a20 → edge-a → a21 (service exposed to its own site; no tunnel)
//	egw-edge-cloud-water  as egw-edge-cloud with tun.driver: water (TUN backends side by side)
//
// Each path exposes the three bench services (iperf3 TCP, TCP echo, UDP sink) of its server
// host to site A for client-a20 only, and resolves their VIPs through site A's DNS. They are
// skipped, with the reason in the report, while the EGW binaries are missing. The two
// edge-to-edge rows wait until edge-a reports the path they name (egw_path_direct), and check
// after every round that it still does; egw-edge-edge-direct is skipped by a build without
// edge-to-edge paths (no egw_relay_packets_total at the hub), where egw-edge-hub-edge
// measures the hub that decrypts and re-encrypts.

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
		egwPath("egw-edge-cloud", "EGW: site A client -> service at the cloud site (one tunnel hop)", "wgtun", "c10", pathAny),
		egwPath("egw-edge-edge-direct", "EGW: site A client -> service at site B, edge to edge on the direct path", "wgtun", "b10", pathDirect),
		egwPath("egw-edge-hub-edge", "EGW: site A client -> service at site B through the hub's ciphertext relay (paths.direct=false)", "wgtun", "b10", pathRelayed),
		egwPath("egw-same-site", "EGW: site A client -> service exposed to its own site (no tunnel)", "wgtun", "a21", pathAny),
		egwPath("egw-edge-cloud-water", "EGW: as egw-edge-cloud with tun.driver water", "water", "c10", pathAny),
	}
}

// pathMode is what an edge-to-edge row requires of the pair edge-a ↔ edge-b.
type pathMode int

const (
	pathAny     pathMode = iota // not an edge-to-edge row
	pathDirect                  // the direct path, up before and after every round
	pathRelayed                 // paths.direct: false; the hub's relay
)

// Metric names of issue 10.
const (
	relayPacketsMetric = "egw_relay_packets_total"
	pathDirectMetric   = "egw_path_direct"
)

// directUpWithin bounds the wait for a direct path (candidates come with a sync and a
// report round, then both ends probe; a missed round costs a re-probe interval, 60 s).
const directUpWithin = 90 * time.Second

// hasRelay reports whether the hub exports the relay's counter: a build with edge-to-edge
// paths.
func hasRelay(ctx context.Context, egw *harness.EGW) (bool, error) {
	var hub *harness.Metrics
	err := harness.Poll(ctx, 15*time.Second, 100*time.Millisecond, "hub metrics", func() error {
		var err error
		hub, err = egw.Metrics(ctx, egw.Cloud)
		return err
	})
	if err != nil {
		return false, err
	}
	return hub.Has(relayPacketsMetric), nil
}

// waitEdgePath polls until edge-a reports its path to edge-b in mode.
func waitEdgePath(ctx context.Context, egw *harness.EGW, mode pathMode, wait time.Duration) error {
	want, word := 0.0, "relayed"
	if mode == pathDirect {
		want, word = 1, "direct"
	}
	edgeA, peer := egw.Nodes["site-a"], egw.Nodes["site-b"].Site.Gateway
	return harness.Poll(ctx, wait, 200*time.Millisecond, "edge-a -> "+peer+" "+word, func() error {
		m, err := egw.Metrics(ctx, edgeA)
		if err != nil {
			return err
		}
		v, ok := m.Sum(pathDirectMetric, map[string]string{"peer": peer})
		if !ok {
			return fmt.Errorf("edge-a has no %s{peer=%q}", pathDirectMetric, peer)
		}
		if v != want {
			return fmt.Errorf("%s{peer=%q} = %v", pathDirectMetric, peer, v)
		}
		return nil
	})
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

func egwPath(name, desc, driver, server string, mode pathMode) path {
	return path{name: name, desc: desc, setup: func(ctx context.Context, lab *harness.Lab, e *env) (endpoints, error) {
		if e.egwOK != nil {
			return endpoints{}, errSkip{e.egwOK.Error()}
		}
		topo, err := harness.Build(lab, harness.DefaultSpec())
		if err != nil {
			return endpoints{}, err
		}
		egw, err := harness.StartEGW(ctx, topo, harness.EGWOptions{Bin: e.egw, TunDriver: driver, RejectDenied: true,
			PolicyAware: true, ForceRelay: mode == pathRelayed})
		if err != nil {
			return endpoints{}, err
		}
		// An edge-to-edge row measures the path it names, or none on a build without
		// edge-to-edge paths (skipped if it names the direct path).
		checkPath := false
		pathNote := ""
		if mode != pathAny {
			relay, err := hasRelay(ctx, egw)
			if err != nil {
				return endpoints{}, err
			}
			switch {
			case relay:
				checkPath = true
				pathNote = "path " + map[pathMode]string{pathDirect: "direct", pathRelayed: "relayed"}[mode] +
					" (" + pathDirectMetric + " at edge-a, checked after every round)"
			case mode == pathDirect:
				return endpoints{}, errSkip{"cloudgateway exports no " + relayPacketsMetric + ": this build has no edge-to-edge paths"}
			default:
				pathNote = "this build has no ciphertext relay: the hub decrypts and re-encrypts"
			}
		}
		srv, client := topo.Host(server), topo.Host("a20")
		if err := egw.Apply(ctx, "bench", benchObjects(srv.Site.Site, srv.IP.String())); err != nil {
			return endpoints{}, err
		}
		edge := egw.Nodes["site-a"]
		ep := endpoints{clientNS: client.NS, serverNS: srv.NS,
			note: strings.TrimSpace("ping to the echo VIP (gateway A may answer it); edge-a " +
				offloads(ctx, lab, edge.Site.GWNS, edge.Tun))}
		if pathNote != "" {
			ep.note += "; " + pathNote
		}
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
			if checkPath {
				// The servers answer (a20 reached the echo VIP): now the path the row names.
				if err := waitEdgePath(ctx, egw, mode, directUpWithin); err != nil {
					return nil, err
				}
			}
			d, err := policyEnforce(ctx, lab, egw, topo, ep.echo)
			if err != nil {
				return nil, fmt.Errorf("policy change: %w", err)
			}
			return []extraFigure{{"policy_allow_enforced", float64(d.Microseconds()) / 1000, "ms"}}, nil
		}
		if checkPath {
			ep.verify = func(ctx context.Context) error { return waitEdgePath(ctx, egw, mode, 5*time.Second) }
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
