package main

// The goals of issue 7 beside what a run measured, and the ratios of the figures that
// SetRatios cannot pair by metric name (RSS against the plain wireguard-go daemon; the
// end-to-end policy change against its 1 s target).

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/egw-project/egw/bench"
)

// Goals of issue 7.
const (
	throughputGoal = 0.9  // (b) >= 0.9x plain wireguard-go
	enforceGoalMS  = 1000 // policy change enforced at 100 gateways within 1 s
	idleRSSGoalMB  = 40.0 // idle edge gateway RSS <= 40 MB (10^6 bytes)
	mib            = 1 << 20
	mb             = 1e6
	rssRefName     = reference + "/idle_rss"
	policyEnforced = "policy_allow_enforced"
)

// setOwnRatios gives every RSS figure its ratio to one plain wireguard-go daemon's RSS, and
// the end-to-end policy change its ratio to the 1 s target (plain WireGuard has no policy).
func setOwnRatios(r *bench.Report) {
	var ref *bench.Figure
	for i := range r.Figures {
		if r.Figures[i].Name == rssRefName {
			ref = &r.Figures[i]
		}
	}
	for i := range r.Figures {
		f := &r.Figures[i]
		switch {
		case f.Ratio != nil || f.Path == reference:
		case strings.Contains(f.Metric, "rss") && f.Unit == "MiB" && (f.Group == "" || f.Group == "memory") && ref != nil && ref.Value > 0:
			// A gateway daemon's RSS (not the control plane's at 1,000 gateways).
			ratio := f.Value / ref.Value
			f.Ratio, f.Reference = &ratio, ref.Name
		case f.Metric == policyEnforced:
			ratio := f.Value / enforceGoalMS
			f.Ratio, f.Reference = &ratio, "target 1 s"
			f.Note = "egwctl apply -> a21 connects, 1 edge, end to end; no wireguard-go counterpart (it has no policy)"
		}
	}
}

// targets judges the run against issue 7's goals; a goal whose figures are missing is
// "not measured".
func targets(r *bench.Report) []bench.Target {
	byName := map[string]bench.Figure{}
	for _, f := range r.Figures {
		byName[f.Name] = f
	}
	status := func(ok bool) string {
		if ok {
			return bench.Met
		}
		return bench.NotMet
	}
	var out []bench.Target

	// (b) throughput.
	t := bench.Target{Goal: "(b) edge -> cloud service TCP throughput >= 0.9x plain wireguard-go",
		Figures: "egw-edge-cloud/tcp_1stream, egw-edge-cloud/tcp_4streams", Status: bench.NotMeasured}
	var parts []string
	ok, n := true, 0
	for _, m := range []string{"tcp_1stream", "tcp_4streams"} {
		f, have := byName["egw-edge-cloud/"+m]
		ref, haveRef := byName[reference+"/"+m]
		if !have || !haveRef || f.Ratio == nil {
			continue
		}
		n++
		ok = ok && *f.Ratio >= throughputGoal
		parts = append(parts, fmt.Sprintf("%s %.2fx (%.3f vs %.3f Gbit/s)", m, *f.Ratio, f.Value, ref.Value))
	}
	if n > 0 {
		t.Measured, t.Status = strings.Join(parts, "; "), status(ok)
	}
	out = append(out, t)

	// Translate + ACL: ns and allocs per packet.
	var worst, worstCPU *bench.Figure
	var allocs []string
	allocOK, nAllocs, nNS, nMet := true, 0, 0, 0
	for i := range r.Figures {
		f := &r.Figures[i]
		if f.Group != "translate+acl" {
			continue
		}
		switch f.Metric {
		case "ns_per_packet":
			nNS++
			if f.Value <= translateTarget {
				nMet++
			}
			if worst == nil || f.Value > worst.Value {
				worst = f
			}
		case "cpu_ns_per_packet":
			if worstCPU == nil || f.Value > worstCPU.Value {
				worstCPU = f
			}
		case "allocs_per_packet":
			nAllocs++
			if f.Value != 0 {
				allocOK = false
				allocs = append(allocs, fmt.Sprintf("%s %g", f.Path, f.Value))
			}
		}
	}
	t = bench.Target{Goal: "translate + ACL <= 150 ns/packet", Figures: "translate+acl */ns_per_packet (every nat and policy benchmark)", Status: bench.NotMeasured}
	if worst != nil {
		t.Measured = fmt.Sprintf("%d of %d benchmarks <= 150 ns; slowest %.1f ns (%s)", nMet, nNS, worst.Value, worst.Path)
		if worstCPU != nil {
			t.Measured += fmt.Sprintf("; CPU time slowest %.1f ns (%s)", worstCPU.Value, worstCPU.Path)
		}
		t.Status = status(worst.Value <= translateTarget)
	}
	out = append(out, t)
	t = bench.Target{Goal: "translate + ACL: 0 allocations/packet", Figures: "translate+acl */allocs_per_packet", Status: bench.NotMeasured}
	if nAllocs > 0 {
		t.Measured = fmt.Sprintf("0 in all %d benchmarks", nAllocs)
		if !allocOK {
			t.Measured = "allocating: " + strings.Join(allocs, ", ")
		}
		t.Status = status(allocOK)
	}
	out = append(out, t)

	// Policy change at 100 gateways: judged on the slowest of the changes over the real
	// HTTP sync path, allow and revoke.
	t = bench.Target{Goal: "policy change enforced at 100 gateways <= 1 s", Figures: "enforce.http.n100.{allow,revoke}_max (cpscale)", Status: bench.NotMeasured}
	parts = nil
	worstMS := math.Inf(-1)
	for _, mode := range []string{"http", "watch"} {
		var ps []string
		for _, m := range []string{"allow_p50", "allow_max", "revoke_p50", "revoke_max"} {
			f, have := byName["enforce."+mode+".n100."+m]
			if !have {
				continue
			}
			ps = append(ps, fmt.Sprintf("%s %.0f ms", m, f.Value))
			if mode == "http" && strings.HasSuffix(m, "_max") {
				worstMS = max(worstMS, f.Value)
			}
		}
		if len(ps) > 0 {
			parts = append(parts, mode+": "+strings.Join(ps, ", "))
		}
	}
	if !math.IsInf(worstMS, -1) {
		t.Measured, t.Status = strings.Join(parts, "; "), status(worstMS <= enforceGoalMS)
	}
	out = append(out, t)

	// Idle edge RSS: every idle edge figure of the run.
	t = bench.Target{Goal: "idle edge gateway RSS <= 40 MB (38.1 MiB)", Figures: "*/edge_idle_rss, edge-gateway/idle_rss", Status: bench.NotMeasured}
	maxMiB := math.Inf(-1)
	var where string
	for _, f := range r.Figures {
		if f.Unit == "MiB" && (f.Metric == "edge_idle_rss" || f.Name == "edge-gateway/idle_rss") && f.Value > maxMiB {
			maxMiB, where = f.Value, f.Path
		}
	}
	if !math.IsInf(maxMiB, -1) {
		t.Measured = fmt.Sprintf("largest %.1f MiB = %.1f MB (%s)", maxMiB, maxMiB*mib/mb, where)
		if f, have := byName["edge-gateway/rss_10000_leases"]; have {
			t.Measured += fmt.Sprintf("; with %s leases %.1f MiB", formatCount(byName["edge-gateway/leases"].Value), f.Value)
		}
		t.Status = status(maxMiB*mib <= idleRSSGoalMB*mb)
	}
	out = append(out, t)
	return out
}

func formatCount(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// findPid returns the pid of the process whose command line is exactly argv (a daemon the
// harness started, found without access to its handle).
func findPid(argv ...string) (int, error) {
	want := strings.Join(argv, "\x00") + "\x00"
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil || string(b) != want {
			continue
		}
		return strconv.Atoi(filepath.Base(filepath.Dir(d)))
	}
	return 0, fmt.Errorf("no process %q", strings.Join(argv, " "))
}
