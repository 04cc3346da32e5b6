package main

// The figures egwbench collects from other programs, each run as a subprocess whose output
// is parsed: the translate + ACL micro-benchmarks of nat and policy (go test -bench), the
// DNS server's loopback load generator (dnsd's BenchmarkLoopback, the server in a process
// of its own), and the control-plane benchmark bench/cpscale (its -json records).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/egw-project/egw/bench"
)

// translateTarget is issue 7's goal for translate + ACL: ns per packet (and 0 allocations).
const translateTarget = 150.0

// goBench is one result line of `go test -bench`: the package, the benchmark's name without
// "Benchmark" and without the -GOMAXPROCS suffix, and its metrics by unit.
type goBench struct {
	pkg, name string
	n         int64
	metrics   map[string]float64 // unit -> value, e.g. "ns/op", "allocs/op", "q/s"
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseGoBench reads the standard benchmark output format ("pkg: " headers, then
// "BenchmarkName-N  iterations  value unit  value unit ..."). Lines it does not know (logs,
// PASS, ok) are ignored.
func parseGoBench(out string) ([]goBench, error) {
	var res []goBench
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n, err := strconv.ParseInt(m[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("benchmark %s: iterations %q: %w", m[1], m[2], err)
		}
		f := strings.Fields(m[3])
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("benchmark %s: odd value/unit list %q", m[1], m[3])
		}
		b := goBench{pkg: pkg, name: m[1], n: n, metrics: map[string]float64{}}
		for i := 0; i < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark %s: value %q: %w", m[1], f[i], err)
			}
			b.metrics[f[i+1]] = v
		}
		res = append(res, b)
	}
	return res, sc.Err()
}

// goTest runs `go test args...` in the module root and returns its combined output.
func goTest(ctx context.Context, root string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, args...)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("go test %s: %w: %s", strings.Join(args, " "), err, oneLine(string(out), 600))
	}
	return string(out), nil
}

// microNames says what each translate + ACL benchmark measures.
var microNames = map[string]string{
	"OutboundTCP":            "outbound TCP (client -> VIP, FromSite)",
	"InboundTCP":             "inbound TCP at the service's gateway (FromOverlay)",
	"UDP":                    "UDP (client -> VIP)",
	"ICMPError":              "ICMP error quoting a translated datagram",
	"OutboundTCPLargePolicy": "outbound TCP with 10,000 VIPs / 100,000 allowed servers",
	"EchoRequestInbound":     "ICMP echo request at the service's gateway",
	"EchoReply":              "ICMP echo reply at the service's gateway",
	"CheckVIP":               "policy lookup alone, 10,000 VIPs / 100,000 servers",
}

// microCount is how often each micro-benchmark runs (-count); each figure is the median.
const microCount = 3

// medianBench folds repeated results of one benchmark (go test -count) into one whose every
// metric is the median of its runs, in the order the benchmarks first appeared.
func medianBench(res []goBench) []goBench {
	var order []string
	runs := map[string][]goBench{}
	for _, b := range res {
		k := b.pkg + " " + b.name
		if _, ok := runs[k]; !ok {
			order = append(order, k)
		}
		runs[k] = append(runs[k], b)
	}
	var out []goBench
	for _, k := range order {
		rs := runs[k]
		m := goBench{pkg: rs[0].pkg, name: rs[0].name, n: rs[0].n, metrics: map[string]float64{}}
		for unit := range rs[0].metrics {
			var vs []float64
			for _, r := range rs {
				if v, ok := r.metrics[unit]; ok {
					vs = append(vs, v)
				}
			}
			m.metrics[unit] = percentile(vs, 50)
		}
		out = append(out, m)
	}
	return out
}

// microFigures runs the nat and policy benchmarks and returns ns/packet (ratio to the
// 150 ns target), CPU ns/packet and allocs/packet of each.
func microFigures(ctx context.Context, root string) ([]bench.Figure, error) {
	out, err := goTest(ctx, root, "-run", "^$", "-bench", ".", "-benchmem", "-count", strconv.Itoa(microCount), "./nat/", "./policy/")
	res, perr := parseGoBench(out)
	if perr != nil {
		return nil, perr
	}
	var figs []bench.Figure
	for _, b := range medianBench(res) {
		pkg := filepath.Base(b.pkg)
		path := pkg + "." + b.name
		note := microNames[b.name]
		mk := func(metric string, v float64, unit string) *bench.Figure {
			figs = append(figs, bench.Figure{Name: path + "/" + metric, Path: path, Metric: metric, Value: v,
				Unit: unit, Note: note, Group: "translate+acl"})
			return &figs[len(figs)-1]
		}
		if v, ok := b.metrics["ns/op"]; ok {
			f := mk("ns_per_packet", v, "ns")
			ratio := v / translateTarget
			f.Ratio, f.Reference = &ratio, "target 150 ns"
		}
		if v, ok := b.metrics["cpu-ns/op"]; ok {
			f := mk("cpu_ns_per_packet", v, "ns")
			ratio := v / translateTarget
			f.Ratio, f.Reference = &ratio, "target 150 ns"
			f.Note = "CPU time (getrusage) per packet: what the wall time is without waiting for a CPU"
		}
		if v, ok := b.metrics["allocs/op"]; ok {
			mk("allocs_per_packet", v, "allocs").Note = "target 0"
		}
	}
	if len(figs) == 0 && err == nil {
		err = fmt.Errorf("go test -bench printed no benchmark results")
	}
	return figs, err
}

// dnsQueries is the -benchtime of each DNS load case.
const dnsQueries = 200000

// dnsFigures runs dnsd's loopback load generator (the server in a process of its own) and
// returns queries/s, p99 latency and server CPU per query for each load case.
func dnsFigures(ctx context.Context, root string) ([]bench.Figure, error) {
	out, err := goTest(ctx, root, "-run", "^$", "-bench", "Loopback", "-benchtime", strconv.Itoa(dnsQueries)+"x", "-count", "1", "./dnsd/")
	res, perr := parseGoBench(out)
	if perr != nil {
		return nil, perr
	}
	notes := map[string]string{
		"local":       "A answer from the zone; 64 clients x 4 outstanding",
		"refused":     "name not ours, no upstream: REFUSED; 64 clients x 4 outstanding",
		"local-light": "A answer from the zone at light load (4 clients x 1 outstanding): latency",
	}
	var figs []bench.Figure
	for _, b := range res {
		name, ok := strings.CutPrefix(b.name, "Loopback/")
		if !ok {
			continue
		}
		path := "dnsd." + name
		note := notes[name] // on the first figure of the case only
		for _, m := range []struct{ unit, metric, outUnit string }{
			{"q/s", "queries_per_s", "queries/s"},
			{"p99-µs", "p99", "µs"},
			{"server-cpu-µs/q", "server_cpu_per_query", "µs"},
			{"lost", "lost", "queries"},
		} {
			if v, ok := b.metrics[m.unit]; ok {
				figs = append(figs, bench.Figure{Name: path + "/" + m.metric, Path: path, Metric: m.metric, Value: v,
					Unit: m.outUnit, Note: note, Group: "dns"})
				note = ""
			}
		}
	}
	if len(figs) == 0 && err == nil {
		err = fmt.Errorf("dnsd's load benchmark printed no results")
	}
	return figs, err
}

// cpscaleRecord is one record of bench/cpscale's JSON report.
type cpscaleRecord struct {
	Name      string   `json:"name"`
	Value     float64  `json:"value"`
	Unit      string   `json:"unit"`
	Ratio     *float64 `json:"ratio,omitempty"`
	Reference string   `json:"reference,omitempty"`
	Note      string   `json:"note,omitempty"`
}

// cpscaleFigures builds bench/cpscale, runs it with -json into tmp and merges its records
// (enforce.<mode>.n<N>.<metric> and scale.<metric>) as figures, plus its notes.
func cpscaleFigures(ctx context.Context, root, tmp string, reps int) ([]bench.Figure, []string, error) {
	exe := filepath.Join(tmp, "cpscale")
	build := exec.CommandContext(ctx, "go", "build", "-o", exe, "./bench/cpscale")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("go build ./bench/cpscale: %w: %s", err, oneLine(string(out), 600))
	}
	jsonPath := filepath.Join(tmp, "cpscale.json")
	cmd := exec.CommandContext(ctx, exe, "-json", jsonPath, "-reps", strconv.Itoa(reps))
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &stderr // its text report is rebuilt from the records
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("cpscale: %w: %s", err, oneLine(stderr.String(), 600))
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, nil, err
	}
	var rep struct {
		Records []cpscaleRecord `json:"records"`
		Notes   []string        `json:"notes"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, nil, fmt.Errorf("cpscale's JSON report: %w", err)
	}
	var figs []bench.Figure
	for _, r := range rep.Records {
		path, metric := "cpscale", r.Name
		if i := strings.LastIndexByte(r.Name, '.'); i > 0 {
			path, metric = r.Name[:i], r.Name[i+1:]
		}
		figs = append(figs, bench.Figure{Name: r.Name, Path: path, Metric: metric, Value: r.Value, Unit: r.Unit,
			Ratio: r.Ratio, Reference: r.Reference, Note: r.Note, Group: "control-plane"})
	}
	if len(figs) == 0 {
		return nil, nil, fmt.Errorf("cpscale wrote no records")
	}
	var notes []string
	for _, n := range rep.Notes {
		notes = append(notes, "cpscale: "+n)
	}
	return figs, notes, nil
}
