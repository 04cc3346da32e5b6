package main

import (
	"encoding/binary"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/egw-project/egw/bench"
	"github.com/egw-project/egw/internal/pkttest"
)

const sampleBench = `goos: linux
goarch: amd64
pkg: github.com/egw-project/egw/nat
cpu: AMD EPYC
BenchmarkOutboundTCP-2   	12906049	        92.40 ns/op	        89.20 cpu-ns/op	 649.34 MB/s	       0 B/op	       0 allocs/op
--- BENCH: BenchmarkX
    bench_test.go:1: a log line
PASS
ok  	github.com/egw-project/egw/nat	5.1s
pkg: github.com/egw-project/egw/dnsd
BenchmarkLoopback/local-light-2   	  100000	     29364 ns/op	         0 lost	       714.0 p99-µs	     34143 q/s
BenchmarkNoSuffix 	10	5 ns/op
`

func TestParseGoBench(t *testing.T) {
	res, err := parseGoBench(sampleBench)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("%d results; want 3: %+v", len(res), res)
	}
	tests := []struct {
		i          int
		pkg, name  string
		n          int64
		unit       string
		want       float64
		metricsLen int
	}{
		{0, "github.com/egw-project/egw/nat", "OutboundTCP", 12906049, "cpu-ns/op", 89.2, 5},
		{1, "github.com/egw-project/egw/dnsd", "Loopback/local-light", 100000, "p99-µs", 714, 4},
		{2, "github.com/egw-project/egw/dnsd", "NoSuffix", 10, "ns/op", 5, 1},
	}
	for _, tc := range tests {
		r := res[tc.i]
		if r.pkg != tc.pkg || r.name != tc.name || r.n != tc.n || r.metrics[tc.unit] != tc.want || len(r.metrics) != tc.metricsLen {
			t.Errorf("result %d = %+v; want %s %s %d %s=%v (%d metrics)", tc.i, r, tc.pkg, tc.name, tc.n, tc.unit, tc.want, tc.metricsLen)
		}
	}
	for _, bad := range []string{"BenchmarkA-2 10 5 ns/op 7\n", "BenchmarkA-2 10 x ns/op\n"} {
		if _, err := parseGoBench(bad); err == nil || !strings.Contains(err.Error(), "benchmark A") {
			t.Errorf("parseGoBench(%q) error %v; want one naming benchmark A", bad, err)
		}
	}
}

func TestLabel(t *testing.T) {
	tests := []struct{ labels, name, want string }{
		{`gateway="edge-a",kind="used",pool="presence"`, "pool", "presence"},
		{`gateway="edge-a",kind="used",pool="presence"`, "kind", "used"},
		{`gateway="edge-a"`, "pool", ""},
		{``, "pool", ""},
	}
	for _, tc := range tests {
		if got := label(tc.labels, tc.name); got != tc.want {
			t.Errorf("label(%q, %q) = %q; want %q", tc.labels, tc.name, got, tc.want)
		}
	}
}

func TestUDPDatagram(t *testing.T) {
	pkt := make([]byte, 20+8+64)
	pkt[40] = 0xff // stale content is cleared
	src, dst := netip.MustParseAddr("10.0.64.7"), netip.MustParseAddr("192.168.0.2")
	udpDatagram(pkt, src, dst, 40007, 9090)
	if sum := pkttest.Sum(pkt[:20], 0); sum != 0xffff {
		t.Errorf("IP header checksum does not verify: folded sum %#x", sum)
	}
	if pkt[0] != 0x45 || pkt[9] != 17 || binary.BigEndian.Uint16(pkt[2:]) != 92 {
		t.Errorf("IP header % x", pkt[:20])
	}
	if netip.AddrFrom4([4]byte(pkt[12:16])) != src || netip.AddrFrom4([4]byte(pkt[16:20])) != dst {
		t.Errorf("addresses % x", pkt[12:20])
	}
	if binary.BigEndian.Uint16(pkt[20:]) != 40007 || binary.BigEndian.Uint16(pkt[22:]) != 9090 ||
		binary.BigEndian.Uint16(pkt[24:]) != 72 || binary.BigEndian.Uint16(pkt[26:]) != 0 {
		t.Errorf("UDP header % x", pkt[20:28])
	}
	if pkt[40] != 0 {
		t.Error("payload not cleared")
	}
}

func fig(name, metric, group string, v float64, unit string) bench.Figure {
	path, _, _ := strings.Cut(name, "/")
	return bench.Figure{Name: name, Path: path, Metric: metric, Value: v, Unit: unit, Group: group}
}

func TestTargets(t *testing.T) {
	r := &bench.Report{Reference: reference, Figures: []bench.Figure{
		fig("wireguard-go/tcp_1stream", "tcp_1stream", "", 1.0, "Gbit/s"),
		fig("wireguard-go/tcp_4streams", "tcp_4streams", "", 2.0, "Gbit/s"),
		fig("egw-edge-cloud/tcp_1stream", "tcp_1stream", "", 0.95, "Gbit/s"),
		fig("egw-edge-cloud/tcp_4streams", "tcp_4streams", "", 1.7, "Gbit/s"), // 0.85x: not met
		fig("wireguard-go/tcp_rr_p50", "tcp_rr_p50", "", 100, "µs"),
		fig("egw-edge-edge-direct/tcp_1stream", "tcp_1stream", "", 0.96, "Gbit/s"),
		fig("egw-edge-edge-direct/tcp_4streams", "tcp_4streams", "", 1.9, "Gbit/s"), // 0.95x: met
		fig("egw-edge-hub-edge/tcp_1stream", "tcp_1stream", "", 0.9, "Gbit/s"),
		fig("egw-edge-hub-edge/tcp_4streams", "tcp_4streams", "", 1.6, "Gbit/s"), // 0.8x: not met
		fig("egw-edge-hub-edge/tcp_rr_p50", "tcp_rr_p50", "", 130, "µs"),         // 1.3x: met
		fig("nat.UDP/ns_per_packet", "ns_per_packet", "translate+acl", 90, "ns"),
		fig("nat.ICMPError/ns_per_packet", "ns_per_packet", "translate+acl", 140, "ns"),
		fig("nat.UDP/allocs_per_packet", "allocs_per_packet", "translate+acl", 0, "allocs"),
		fig("nat.ICMPError/allocs_per_packet", "allocs_per_packet", "translate+acl", 1, "allocs"),
		fig("wireguard-go/idle_rss", "idle_rss", "", 7, "MiB"),
		fig("egw-edge-cloud/edge_idle_rss", "edge_idle_rss", "", 16, "MiB"),
		fig("egw-edge-cloud/policy_allow_enforced", policyEnforced, "", 5, "ms"),
		fig("edge-gateway/idle_rss", "idle_rss", "memory", 37, "MiB"),
		fig("scale/rss", "rss", "control-plane", 113, "MiB"),
		fig("enforce.etcd2.n100.allow_p50", "allow_p50", "control-plane", 80, "ms"),
		fig("enforce.etcd2.n100.revoke_p50", "revoke_p50", "control-plane", 120, "ms"), // over 100: not met
		fig("store.etcd.writes_per_s", "writes_per_s", "control-plane", 800, "writes/s"),
	}}
	r.SetRatios()
	setOwnRatios(r)
	got := map[string]bench.Target{}
	for _, tg := range targets(r) {
		got[tg.Goal] = tg
	}
	want := map[string]string{
		"(b) edge -> cloud service TCP throughput >= 0.9x plain wireguard-go":              bench.NotMet,
		"translate + ACL <= 150 ns/packet":                                                 bench.Met,
		"translate + ACL: 0 allocations/packet":                                            bench.NotMet,
		"policy change enforced at 100 gateways <= 1 s":                                    bench.NotMeasured,
		"idle edge gateway RSS <= 40 MB (38.1 MiB)":                                        bench.Met, // 37 MiB = 38.8 MB
		"(10) edge -> edge direct TCP throughput >= 0.95x plain wireguard-go":              bench.Met,
		"(10) edge -> hub relay -> edge TCP throughput >= 0.85x plain wireguard-go":        bench.NotMet,
		"(10) edge -> hub relay -> edge TCP RR p50 <= 1.3x plain wireguard-go":             bench.Met,
		"(10) edge -> cloud service TCP throughput >= 1.0x plain wireguard-go":             bench.NotMet,
		"(12) policy change enforced at 100 gateways, two replicas on etcd: p50 <= 100 ms": bench.NotMet,
	}
	if len(got) != len(want) {
		t.Errorf("%d targets; want %d", len(got), len(want))
	}
	for goal, status := range want {
		if got[goal].Status != status {
			t.Errorf("%s: %s (%s); want %s", goal, got[goal].Status, got[goal].Measured, status)
		}
	}
	if m := got["(10) edge -> hub relay -> edge TCP throughput >= 0.85x plain wireguard-go"].Measured; !strings.Contains(m, "tcp_4streams 0.80x (1.600 vs 2.000 Gbit/s)") {
		t.Errorf("relay throughput measured %q", m)
	}
	// Without the edge-to-edge rows (a build before issue 10) those targets are not measured.
	var old bench.Report
	old.Reference = reference
	for _, f := range r.Figures {
		if !strings.HasPrefix(f.Path, "egw-edge-edge") && !strings.HasPrefix(f.Path, "egw-edge-hub") {
			f.Ratio = nil
			old.Figures = append(old.Figures, f)
		}
	}
	old.SetRatios()
	for _, tg := range targets(&old) {
		if strings.Contains(tg.Goal, "edge -> edge direct") && tg.Status != bench.NotMeasured {
			t.Errorf("%s without its figures: %s", tg.Goal, tg.Status)
		}
	}
	if m := got["(12) policy change enforced at 100 gateways, two replicas on etcd: p50 <= 100 ms"].Measured; !strings.Contains(m, "revoke_p50 120 ms") || !strings.Contains(m, "etcd 800 writes/s") {
		t.Errorf("replica target measured %q", m)
	}
	if m := got["translate + ACL: 0 allocations/packet"].Measured; !strings.Contains(m, "nat.ICMPError 1") {
		t.Errorf("allocations measured %q; want the allocating benchmark named", m)
	}
	for _, f := range r.Figures {
		switch f.Name {
		case "egw-edge-cloud/edge_idle_rss", "edge-gateway/idle_rss":
			if f.Ratio == nil || f.Reference != "wireguard-go/idle_rss" {
				t.Errorf("%s: ratio %v to %q; want one to wireguard-go/idle_rss", f.Name, f.Ratio, f.Reference)
			}
		case "egw-edge-cloud/policy_allow_enforced":
			if f.Ratio == nil || *f.Ratio != 0.005 || f.Reference != "target 1 s" {
				t.Errorf("%s: ratio %v to %q", f.Name, f.Ratio, f.Reference)
			}
		case "wireguard-go/idle_rss", "scale/rss":
			if f.Ratio != nil {
				t.Errorf("the reference has a ratio")
			}
		}
	}
	r.Figures = append(r.Figures, fig("edge-gateway/idle_rss", "idle_rss", "memory", 39, "MiB")) // 40.9 MB
	for _, tg := range targets(r) {
		if strings.HasPrefix(tg.Goal, "idle edge") && tg.Status != bench.NotMet {
			t.Errorf("39 MiB idle: %s; want not met", tg.Status)
		}
	}
}

func TestFindPid(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Skip(err)
	}
	argv := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	pid, err := findPid(argv...)
	if err != nil || pid != os.Getpid() {
		t.Errorf("findPid(own argv) = %d, %v; want %d", pid, err, os.Getpid())
	}
	if _, err := findPid("/nonexistent/egwbench-test", "-x"); err == nil {
		t.Error("found a process that does not exist")
	}
}

func TestMedianBench(t *testing.T) {
	res, err := parseGoBench(`pkg: p
BenchmarkA-2 10 100 ns/op 0 allocs/op
BenchmarkB-2 10 7 ns/op
BenchmarkA-2 10 300 ns/op 0 allocs/op
BenchmarkB-2 10 9 ns/op
BenchmarkA-2 10 120 ns/op 1 allocs/op
`)
	if err != nil {
		t.Fatal(err)
	}
	got := medianBench(res)
	if len(got) != 2 || got[0].name != "A" || got[1].name != "B" {
		t.Fatalf("medianBench = %+v; want A then B", got)
	}
	if got[0].metrics["ns/op"] != 120 || got[0].metrics["allocs/op"] != 0 || got[1].metrics["ns/op"] != 7 {
		t.Errorf("medians = %v, %v; want A 120 ns 0 allocs, B 7 ns (nearest rank)", got[0].metrics, got[1].metrics)
	}
}
