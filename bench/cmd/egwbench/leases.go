package main

// Memory of an edge gateway with 10,000 leases (issue 7). A topology of its own: the cloud
// and one edge site whose LAN is a /16 and whose VP CIDR is a /17 (so its presence pool,
// the upper half, holds 16,383 leases). A UDP sink at a21 is exposed to its own site under a
// policy that allows the whole site; a20 sends one 64-byte UDP datagram to the sink's VIP
// from each of leaseClients source addresses (a raw socket inside a20's namespace, so the
// addresses need not be configured), and the edge leases one presence IP per source. The
// figures: the edge's VmRSS before and after, and the lease count from its metrics.
// Every packet stays inside the namespaces of this Lab.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/egw-project/egw/bench"
	"github.com/egw-project/egw/internal/pkttest"
	"github.com/egw-project/egw/netns-tests/harness"
)

// leaseClients is how many distinct client addresses are driven through the VIP.
const leaseClients = 10000

// firstLeaseClient is the first spoofed source: 10.0.64.0 .. 10.0.103.15 for 10,000.
var firstLeaseClient = netip.MustParseAddr("10.0.64.0")

func leaseSpec() harness.Spec {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	return harness.Spec{Sites: []harness.SiteSpec{
		{Site: "cloud", Gateway: "cloud", NS: "gwc", Key: "c", Cloud: true, ListenPort: 51820,
			Underlay: p("203.0.113.1/24"), LAN: p("10.1.0.1/24"), VPCIDR: p("192.168.9.0/24"),
			Hosts: []harness.HostSpec{{Name: "c10", IP: a("10.1.0.10")}}},
		{Site: "site-a", Gateway: "edge-a", NS: "gwa", Key: "a",
			Underlay: p("203.0.113.2/24"), LAN: p("10.0.0.1/16"), VPCIDR: p("192.168.0.0/17"),
			Hosts: []harness.HostSpec{{Name: "a20", IP: a("10.0.0.20")}, {Name: "a21", IP: a("10.0.0.21")}}},
	}}
}

const leaseObjects = `kind: EPolicy
apiVersion: v1
metadata: {name: lease-allow}
allowedSites: [site-a]
---
kind: EService
apiVersion: v1
metadata: {name: lease-sink}
protocol: UDP
port: 9090
ip: 10.0.0.21
eSiteName: site-a
---
kind: ServiceExpose
apiVersion: v1
metadata: {name: lease-sink}
eServiceName: lease-sink
dnsName: sink.bench.test
eSites: [site-a]
ePolicys: [lease-allow]
`

// leaseFigures builds the lease topology in a Lab of its own (removed before it returns)
// and measures the edge's RSS idle and with leaseClients leases.
func leaseFigures(ctx context.Context, e *env, logDir string) (figs []bench.Figure, err error) {
	if e.egwOK != nil {
		return nil, errSkip{e.egwOK.Error()}
	}
	lab, err := harness.New(logDir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lab.DumpLogs(func(f string, a ...any) { logf(f, a...) })
		}
		if cerr := lab.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("cleanup: %w", cerr)
		}
	}()
	topo, err := harness.Build(lab, leaseSpec())
	if err != nil {
		return nil, err
	}
	egw, err := harness.StartEGW(ctx, topo, harness.EGWOptions{Bin: e.egw, RejectDenied: true, PolicyAware: true})
	if err != nil {
		return nil, err
	}
	if err := egw.Apply(ctx, "leases", leaseObjects); err != nil {
		return nil, err
	}
	client, server := topo.Host("a20"), topo.Host("a21")
	vip, err := egw.Resolve(ctx, client.NS, client.Site, "sink.bench.test", 30*time.Second)
	if err != nil {
		return nil, err
	}
	edge := egw.Nodes["site-a"]
	metricsOf := func() (map[string]float64, error) { return leaseMetrics(ctx, lab, edge.Site.GWNS) }

	sink, err := lab.ListenPacket(server.NS, "udp4", ":9090")
	if err != nil {
		return nil, err
	}
	defer sink.Close()
	var received atomic.Int64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := sink.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	// One datagram from a20's own address first: the path works before we count on it.
	err = harness.Poll(ctx, 20*time.Second, 50*time.Millisecond, "first datagram through the VIP", func() error {
		if err := sendFrom(client.NS, vip, []netip.Addr{client.IP}); err != nil {
			return harness.Permanent(err)
		}
		if received.Load() == 0 {
			return fmt.Errorf("none received")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	time.Sleep(2 * time.Second) // let the daemon settle after its first flow
	idleKB, err := rssKB(edge.Proc.Pid())
	if err != nil {
		return nil, err
	}
	m0, err := metricsOf()
	if err != nil {
		return nil, err
	}
	base := m0["presence/used"]

	srcs := make([]netip.Addr, leaseClients)
	a := firstLeaseClient
	for i := range srcs {
		srcs[i] = a
		a = a.Next()
	}
	var m map[string]float64
	rounds := 0
	// A datagram dropped on the way (a full TUN queue) leaves its source without a lease;
	// sending every source again refreshes the leases that exist and adds the missing ones.
	for round := 0; round < 5; round++ {
		rounds++
		if err := sendFrom(client.NS, vip, srcs); err != nil {
			return nil, err
		}
		err = harness.Poll(ctx, 5*time.Second, 100*time.Millisecond, "presence leases", func() error {
			var err error
			if m, err = metricsOf(); err != nil {
				return err
			}
			if m["presence/used"] < base+leaseClients {
				return fmt.Errorf("%.0f presence leases", m["presence/used"])
			}
			return nil
		})
		if err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("after 5 rounds of %d sources: %w", leaseClients, err)
	}
	time.Sleep(2 * time.Second) // as for the idle figure
	loadedKB, err := rssKB(edge.Proc.Pid())
	if err != nil {
		return nil, err
	}
	if m2, err := metricsOf(); err == nil {
		m = m2
	}
	mk := func(metric string, v float64, unit, note string) {
		figs = append(figs, bench.Figure{Name: "edge-gateway/" + metric, Path: "edge-gateway", Metric: metric,
			Value: v, Unit: unit, Note: note, Group: "memory"})
	}
	mk("idle_rss", float64(idleKB)/1024, "MiB", "VmRSS of edgegateway, configured, one flow")
	mk("rss_10000_leases", float64(loadedKB)/1024, "MiB",
		fmt.Sprintf("VmRSS with %.0f presence leases (egw_leases); %d sources, one UDP datagram each per round, %d round(s)",
			m["presence/used"], leaseClients, rounds))
	mk("leases", m["presence/used"], "leases", fmt.Sprintf("presence pool in use, of %.0f (egw_leases metric)", m["presence/size"]))
	mk("rss_per_lease", float64(loadedKB-idleKB)*1024/max(m["presence/used"]-base, 1), "bytes", "(RSS with leases - idle RSS) / leases added")
	return figs, nil
}

// sendFrom sends one 64-byte UDP datagram to dst:9090 from each source address through a
// raw socket opened in ns (the kernel routes it by destination, via the site's gateway).
func sendFrom(ns string, dst netip.Addr, srcs []netip.Addr) error {
	return harness.InNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket in %s: %w", ns, err)
		}
		defer unix.Close(fd)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		to := &unix.SockaddrInet4{Addr: dst.As4()}
		pkt := make([]byte, 20+8+64)
		for i, src := range srcs {
			udpDatagram(pkt, src, dst, 40000+uint16(i%20000), 9090)
			if err := unix.Sendto(fd, pkt, 0, to); err != nil {
				return fmt.Errorf("send from %s: %w", src, err)
			}
			if i%100 == 99 {
				time.Sleep(5 * time.Millisecond) // pace (~20,000/s): the gateway's queues are finite
			}
		}
		return nil
	})
}

// udpDatagram writes an IPv4 + UDP header for src:sport -> dst:dport over the zero payload
// that fills the rest of pkt. The UDP checksum is 0 (none, valid in IPv4); the kernel
// fills in the IP checksum of a raw IPPROTO_RAW socket.
func udpDatagram(pkt []byte, src, dst netip.Addr, sport, dport uint16) {
	clear(pkt)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8] = 64 // TTL
	pkt[9] = unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(pkt[12:16], s[:])
	copy(pkt[16:20], d[:])
	binary.BigEndian.PutUint16(pkt[10:], pkttest.Checksum(pkt[:20], 0))
	binary.BigEndian.PutUint16(pkt[20:], sport)
	binary.BigEndian.PutUint16(pkt[22:], dport)
	binary.BigEndian.PutUint16(pkt[24:], uint16(len(pkt)-20))
}

// leaseMetrics reads the egw_leases gauges of the gateway in ns ("presence/used",
// "presence/size", "client/used", ...).
func leaseMetrics(ctx context.Context, lab *harness.Lab, ns string) (map[string]float64, error) {
	body, err := httpGet(ctx, lab, ns, "http://127.0.0.1:9469/metrics")
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "egw_leases{") {
			continue
		}
		j := strings.LastIndexByte(line, '}')
		if j < 0 {
			continue
		}
		labels, val := line[len("egw_leases{"):j], strings.TrimSpace(line[j+1:])
		v, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[label(labels, "pool")+"/"+label(labels, "kind")] = v
	}
	if _, ok := out["presence/used"]; !ok {
		return nil, fmt.Errorf("no egw_leases{pool=\"presence\",kind=\"used\"} in the metrics of %s", ns)
	}
	return out, sc.Err()
}

// label returns the value of name in a Prometheus label list (`a="x",b="y"`).
func label(labels, name string) string {
	for _, kv := range strings.Split(labels, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == name {
			return strings.Trim(v, `"`)
		}
	}
	return ""
}

func httpGet(ctx context.Context, lab *harness.Lab, ns, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := lab.HTTPClient(ns, 5*time.Second).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s in %s: %s", url, ns, resp.Status)
	}
	return b.String(), nil
}
