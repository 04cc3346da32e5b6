// Command egwbench is EGW's one benchmark driver (issue 7); `make bench` runs it. It needs
// root, iperf3, ping and wg (scripts/install-deps.sh).
//
//	egwbench [-stages micro,dns,cpscale,paths,leases] [-t 5s] [-out bench/results] [-paths ...] [-bin bin]
//
// Stages, in order: the translate + ACL micro-benchmarks of nat and policy and dnsd's
// loopback load generator (go test subprocesses, output parsed; see subproc.go), the
// control-plane benchmark bench/cpscale (subprocess, JSON merged), the end-to-end paths in
// network namespaces it creates and removes (TCP throughput with 1 and 4 streams, ping and
// TCP request/response latency p50/p99, the rate of 64-byte UDP datagrams; every figure also
// as a ratio to the same figure of the plain wireguard-go tunnel measured in the same run),
// and an edge gateway's RSS with 10,000 leases (leases.go). It prints the hardware, judges
// the run against the targets of issues 7 and 10 (targets.go), writes one text and one JSON report, and
// its last line on stdout is the path of the JSON file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/egw-project/egw/bench"
	"github.com/egw-project/egw/netns-tests/harness"
)

// reference is the path all ratios compare with.
const reference = "wireguard-go"

func main() {
	jsonPath, err := run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "egwbench:", err)
	}
	if jsonPath != "" {
		fmt.Println(jsonPath) // the last line printed, always, even when something failed
	}
	if err != nil {
		os.Exit(1)
	}
}

// stageNames are the parts of a run, in the order they run.
var stageNames = []string{"micro", "dns", "cpscale", "paths", "leases"}

type options struct {
	duration time.Duration
	pings    int
	rrCount  int
	rounds   int
	outDir   string
	binDir   string
	paths    string
	stages   map[string]bool
	cpReps   int
}

func run() (string, error) {
	var o options
	flag.DurationVar(&o.duration, "t", 5*time.Second, "duration of each throughput and UDP-rate run (whole seconds)")
	flag.IntVar(&o.pings, "pings", 200, "echo requests per ping latency run (10 ms apart)")
	flag.IntVar(&o.rrCount, "rr", 2000, "round trips per TCP request/response latency run")
	flag.IntVar(&o.rounds, "rounds", 3, "measurement rounds; each figure is the median")
	flag.StringVar(&o.outDir, "out", "", "directory for the reports (default: <module>/bench/results)")
	flag.StringVar(&o.binDir, "bin", "", "directory of the EGW binaries and of wireguard-go/responder (default: <module>/bin)")
	flag.StringVar(&o.paths, "paths", "", "comma-separated paths to run (default: all); see -list")
	flag.IntVar(&o.cpReps, "cp-reps", 3, "bench/cpscale -reps: policy changes per direction per gateway count")
	stages := flag.String("stages", strings.Join(stageNames, ","), "comma-separated parts to run: micro (nat+policy go test -bench), dns (dnsd loopback load), cpscale (control plane), paths (end to end), leases (edge RSS with 10,000 leases)")
	list := flag.Bool("list", false, "list the paths and exit")
	flag.Parse()
	o.stages = map[string]bool{}
	for _, st := range strings.Split(*stages, ",") {
		st = strings.TrimSpace(st)
		if !slices.Contains(stageNames, st) {
			return "", fmt.Errorf("-stages: unknown stage %q (want some of %s)", st, strings.Join(stageNames, ","))
		}
		o.stages[st] = true
	}

	all := append([]path{vethPath, wgPath}, egwPaths()...)
	if *list {
		for _, p := range all {
			fmt.Printf("%-22s %s\n", p.name, p.desc)
		}
		return "", nil
	}
	if os.Geteuid() != 0 {
		return "", errors.New("needs root (network namespaces)")
	}
	for _, tool := range []string{"ip", "iperf3", "ping", "wg"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s not found: run scripts/install-deps.sh", tool)
		}
	}
	if o.duration < time.Second {
		o.duration = time.Second
	}
	if o.rounds < 1 {
		o.rounds = 1
	}
	selected, err := selectPaths(all, o.paths)
	if err != nil {
		return "", err
	}
	root, err := harness.ModuleRoot()
	if err != nil {
		return "", err
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(root, "bench", "results")
	}
	if o.binDir == "" {
		o.binDir = filepath.Join(root, "bin")
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return "", err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if removed, err := harness.SweepStale(); err != nil {
		logf("sweeping stale namespaces: %v", err)
	} else if len(removed) > 0 {
		logf("swept %d stale namespaces from crashed runs", len(removed))
	}

	started := time.Now()
	logf("building wireguard-go and the responder into %s", o.binDir)
	tools, err := harness.BuildTools(ctx, o.binDir, false) // go build's cache makes this cheap and never stale
	if err != nil {
		return "", err
	}
	e := &env{tools: tools}
	e.egw, e.egwOK = harness.FindEGW(o.binDir)

	rep := &bench.Report{Started: started, Reference: reference, Hardware: hardware(ctx, tools)}
	fmt.Printf("hardware: %s, %d cores, %d MiB memory, kernel %s, %s\n", rep.Hardware.CPUModel, rep.Hardware.Cores, rep.Hardware.MemoryMiB, rep.Hardware.Kernel, rep.Hardware.GoVersion)

	var failed []string
	logDir, err := os.MkdirTemp("", "egwbench-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(logDir)

	var stageTimes []string
	stage := func(name string, fn func() ([]bench.Figure, error)) {
		if !o.stages[name] || ctx.Err() != nil {
			return
		}
		logf("%s: running", name)
		t0 := time.Now()
		figs, err := fn()
		rep.Figures = append(rep.Figures, figs...)
		if reason, ok := isSkip(err); ok {
			rep.Skipped = append(rep.Skipped, name+": "+reason)
			logf("%s: skipped: %s", name, reason)
		} else if err != nil {
			rep.Notes = append(rep.Notes, name+" FAILED: "+oneLine(err.Error(), 600))
			logf("%s: %v", name, err)
			failed = append(failed, name)
		}
		d := time.Since(t0).Round(time.Second)
		stageTimes = append(stageTimes, fmt.Sprintf("%s %v", name, d))
		logf("%s: done in %v", name, d)
	}
	// The parts without namespaces first; then the paths, and the lease topology last.
	stage("micro", func() ([]bench.Figure, error) { return microFigures(ctx, root) })
	stage("dns", func() ([]bench.Figure, error) { return dnsFigures(ctx, root) })
	stage("cpscale", func() ([]bench.Figure, error) {
		figs, notes, err := cpscaleFigures(ctx, root, logDir, o.cpReps)
		rep.Notes = append(rep.Notes, notes...)
		return figs, err
	})
	stage("paths", func() ([]bench.Figure, error) {
		figs, failedPaths := runPaths(ctx, rep, selected, e, o, logDir)
		if len(failedPaths) > 0 {
			return figs, fmt.Errorf("paths failed: %s", strings.Join(failedPaths, ", "))
		}
		return figs, nil
	})
	stage("leases", func() ([]bench.Figure, error) { return leaseFigures(ctx, e, filepath.Join(logDir, "leases")) })

	if ctx.Err() != nil {
		rep.Notes = append(rep.Notes, "interrupted: "+ctx.Err().Error())
	}
	rep.Hardware.LoadAfter = loadavg()
	rep.Duration = time.Since(started).Round(time.Second).String()
	rep.Notes = append(rep.Notes,
		"stage times: "+strings.Join(stageTimes, ", "),
		"throughput: iperf3 receiver goodput; udp64_rate: 64-byte UDP payloads received per second from one unpaced Go sender (one write per datagram) into a Go sink",
		"tcp_rr: one TCP connection, 64-byte message echoed, Go client inside the client namespace",
		"ratios: value / the REFERENCE: the wireguard-go figure of the same metric in this run (for latency, > 1 is slower; RSS: one plain wireguard-go daemon of the reference tunnel), or a target of issue 7 (translate+acl: 150 ns; control plane: 1 s)",
		fmt.Sprintf("translate+acl: go test -run '^$' -bench . -benchmem -count %d ./nat/ ./policy/, median of the %d runs (ns/op wall clock, cpu-ns/op from getrusage, allocs/op)", microCount, microCount),
		fmt.Sprintf("dns: go test -run '^$' -bench Loopback -benchtime %dx ./dnsd/ (the server in its own process, Go load generator over loopback UDP)", dnsQueries),
		fmt.Sprintf("control-plane: bench/cpscale -reps %d (in-process control plane and simulated agents; see bench/cpscale/README.md)", o.cpReps),
		fmt.Sprintf("memory: edge gateway of a topology of its own (LAN /16, VP CIDR /17); one UDP datagram from each of %d source addresses (raw socket in the client namespace) to a same-site VIP", leaseClients),
		fmt.Sprintf("each figure is the median of %d interleaved rounds (all paths up at once, visited in turn)", o.rounds),
		"the machine is shared: compare rows of one run, not runs")
	rep.SetRatios()
	setOwnRatios(rep)
	rep.Targets = targets(rep)

	stamp := started.UTC().Format("20060102T150405Z")
	txtPath := filepath.Join(o.outDir, "egwbench-"+stamp+".txt")
	jsonPath := filepath.Join(o.outDir, "egwbench-"+stamp+".json")
	f, err := os.Create(txtPath)
	if err != nil {
		return "", err
	}
	if err := rep.WriteText(io.MultiWriter(f, os.Stdout)); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := rep.WriteJSON(jsonPath); err != nil {
		return "", err
	}
	fmt.Println("text report:", txtPath)
	if len(failed) > 0 {
		return jsonPath, fmt.Errorf("failed: %s (see the notes in %s)", strings.Join(failed, ", "), txtPath)
	}
	return jsonPath, ctx.Err()
}

// runPaths builds every selected path, measures them in interleaved rounds and removes
// their namespaces before it returns. It returns the figures and the paths that failed.
func runPaths(ctx context.Context, rep *bench.Report, selected []path, e *env, o options, logDir string) ([]bench.Figure, []string) {
	var figs []bench.Figure
	var failed []string
	// Every path is built first and stays up; then the measurements run in rounds, each
	// round visiting every path in turn, and each figure is the median of its rounds. On a
	// shared machine the load drifts; interleaving gives every path the same drift, so the
	// ratios to the reference hold even when the absolute figures move.
	var up []*runningPath
	defer func() {
		for i := len(up) - 1; i >= 0; i-- {
			if err := up[i].lab.Close(); err != nil {
				logf("%s: cleanup: %v", up[i].p.name, err)
			}
		}
	}()
	for _, p := range selected {
		if ctx.Err() != nil {
			break
		}
		r, err := setupPath(ctx, p, e, filepath.Join(logDir, p.name))
		if r != nil {
			up = append(up, r)
		}
		if reason, ok := isSkip(err); ok {
			rep.Skipped = append(rep.Skipped, p.name+": "+reason)
			logf("%s: skipped: %s", p.name, reason)
		} else if err != nil {
			rep.Notes = append(rep.Notes, p.name+" FAILED: "+oneLine(err.Error(), 400))
			logf("%s: %v", p.name, err)
			failed = append(failed, p.name)
		}
	}
	var ready []*runningPath
	for _, r := range up {
		if r.ok {
			ready = append(ready, r)
		}
	}
	for round := 1; round <= o.rounds && ctx.Err() == nil; round++ {
		for _, r := range ready {
			if ctx.Err() != nil {
				break
			}
			logf("round %d/%d: %s", round, o.rounds, r.p.name)
			r.measureOnce(ctx, e, o)
		}
	}
	for _, r := range ready {
		figs = append(figs, r.figures()...)
		if len(r.errs) > 0 {
			rep.Notes = append(rep.Notes, r.p.name+" FAILED: "+oneLine(errors.Join(r.errs...).Error(), 400))
			failed = append(failed, r.p.name)
		}
	}
	return figs, failed
}

// oneLine folds whitespace (multi-line daemon logs in errors) and keeps the first and the
// last part of a long message (what failed, and the daemon's last words), about max bytes.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max/3], "") + " … " + strings.ToValidUTF8(s[len(s)-max*2/3:], "")
	}
	return s
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func selectPaths(all []path, names string) ([]path, error) {
	if names == "" {
		return all, nil
	}
	var out []path
	for _, n := range strings.Split(names, ",") {
		found := false
		for _, p := range all {
			if p.name == strings.TrimSpace(n) {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown path %q (see -list)", n)
		}
	}
	return out, nil
}

// runningPath is a path whose namespaces and servers are up, with its samples so far.
type runningPath struct {
	p       path
	lab     *harness.Lab
	ep      endpoints
	ok      bool                 // setup finished; measure it
	samples map[string][]float64 // metric -> one value per round
	errs    []error
}

// metrics in report order, with their units.
var metrics = []struct{ name, unit string }{
	{"ping_p50", "ms"}, {"ping_p99", "ms"},
	{"tcp_rr_p50", "µs"}, {"tcp_rr_p99", "µs"},
	{"tcp_1stream", "Gbit/s"}, {"tcp_4streams", "Gbit/s"},
	{"udp64_rate", "packets/s"}, {"udp64_loss", "%"},
}

// setupPath builds p in a Lab of its own and starts its servers (iperf3, the responder's
// TCP echo). The Lab is returned even on error so the caller removes it.
func setupPath(ctx context.Context, p path, e *env, logDir string) (*runningPath, error) {
	lab, err := harness.New(logDir)
	if err != nil {
		return nil, err
	}
	r := &runningPath{p: p, lab: lab, samples: map[string][]float64{}}
	logf("%s: setting up (%s)", p.name, p.desc)
	dump := func() { lab.DumpLogs(func(f string, a ...any) { logf(f, a...) }) }
	r.ep, err = p.setup(ctx, lab, e)
	if err != nil {
		if _, ok := isSkip(err); !ok {
			dump()
		}
		return r, err
	}
	if _, err := lab.Start(r.ep.serverNS, "iperf3-server", nil, "iperf3", "-s", "-p", strconv.Itoa(iperfPort)); err != nil {
		return r, err
	}
	if _, err := lab.Start(r.ep.serverNS, "responder", nil, e.tools.Responder, "-http", "", "-udp", "",
		"-tcp", ":"+strconv.Itoa(echoPort)); err != nil {
		return r, err
	}
	if err := lab.WaitTCP(ctx, r.ep.clientNS, net.JoinHostPort(r.ep.echo, strconv.Itoa(echoPort)), 30*time.Second); err != nil {
		dump()
		return r, err
	}
	err = harness.Poll(ctx, 10*time.Second, 20*time.Millisecond, "iperf3 server", func() error {
		out, err := lab.Run(ctx, r.ep.serverNS, "ss", "-Hltn", "sport = :"+strconv.Itoa(iperfPort))
		if err == nil && !strings.Contains(out, "LISTEN") {
			err = errors.New("not listening")
		}
		return err
	})
	if err != nil {
		return r, err
	}
	if r.ep.afterStart != nil {
		extra, err := r.ep.afterStart(ctx)
		if err != nil {
			dump()
			return r, err
		}
		r.ep.extra = append(r.ep.extra, extra...)
	}
	r.ok = true
	return r, nil
}

// measureOnce runs every measurement of one round. A failed measurement is noted and the
// others still run.
func (r *runningPath) measureOnce(ctx context.Context, e *env, o options) {
	ep, lab, name := r.ep, r.lab, r.p.name
	add := func(metric string, v float64) {
		r.samples[metric] = append(r.samples[metric], v)
		logf("%s: %-12s %10.3f", name, metric, v)
	}
	note := func(what string, err error) {
		r.errs = append(r.errs, fmt.Errorf("%s: %w", what, err))
		logf("%s: %s failed: %v", name, what, err)
	}
	if rtts, err := pingLatency(ctx, lab, ep.clientNS, ep.ping, o.pings, 10*time.Millisecond); err != nil {
		note("ping", err)
	} else {
		add("ping_p50", percentile(rtts, 50))
		add("ping_p99", percentile(rtts, 99))
	}
	echoAddr := net.JoinHostPort(ep.echo, strconv.Itoa(echoPort))
	if rtts, err := tcpRR(ctx, lab, ep.clientNS, echoAddr, o.rrCount, 64); err != nil {
		note("tcp_rr", err)
	} else {
		add("tcp_rr_p50", percentile(rtts, 50))
		add("tcp_rr_p99", percentile(rtts, 99))
	}
	for _, streams := range []int{1, 4} {
		metric := "tcp_1stream"
		if streams > 1 {
			metric = "tcp_" + strconv.Itoa(streams) + "streams"
		}
		if g, err := tcpThroughput(ctx, lab, ep.clientNS, ep.iperf, iperfPort, streams, o.duration); err != nil {
			note(metric, err)
		} else {
			add(metric, g)
		}
	}
	if pps, loss, err := udpRate(ctx, lab, ep.clientNS, ep.serverNS, ep.udp, o.duration); err != nil {
		note("udp64_rate", err)
	} else {
		add("udp64_rate", pps)
		add("udp64_loss", loss*100)
	}
	if ep.verify != nil {
		if err := ep.verify(ctx); err != nil {
			note("after the round", err)
		}
	}
}

// figures returns the median of each metric's rounds, and the figures setup measured.
func (r *runningPath) figures() []bench.Figure {
	var figs []bench.Figure
	mk := func(metric string, v float64, unit, note string) {
		figs = append(figs, bench.Figure{Name: r.p.name + "/" + metric, Path: r.p.name, Metric: metric,
			Value: v, Unit: unit, Note: note})
	}
	for _, m := range metrics {
		if v := r.samples[m.name]; len(v) > 0 {
			mk(m.name, percentile(v, 50), m.unit, r.ep.note)
		}
	}
	for _, x := range r.ep.extra {
		mk(x.metric, x.value, x.unit, "measured once, at setup")
	}
	return figs
}

func hardware(ctx context.Context, t harness.Tools) bench.Hardware {
	h := bench.Hardware{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), LoadBefore: loadavg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB")); err == nil {
					h.MemoryMiB = kb / 1024
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	for _, argv := range [][]string{{"iperf3", "--version"}, {"ping", "-V"}, {t.WireGuardGo, "--version"}} {
		out, _ := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		if first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); first != "" {
			h.Tools = append(h.Tools, first)
		}
	}
	return h
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
