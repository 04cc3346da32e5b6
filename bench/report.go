package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one measured value.
type Figure struct {
	Name      string   `json:"name"`                // "<path>/<metric>", e.g. "wireguard-go/tcp_1stream"
	Path      string   `json:"path"`                // what the traffic crossed, e.g. "veth"
	Metric    string   `json:"metric"`              // e.g. "tcp_1stream", "ping_p99"
	Value     float64  `json:"value"`               // in Unit
	Unit      string   `json:"unit"`                // "Gbit/s", "ms", "µs", "packets/s"
	Ratio     *float64 `json:"ratio,omitempty"`     // Value / the reference's value for the same metric
	Reference string   `json:"reference,omitempty"` // the figure Ratio compares with
	Note      string   `json:"note,omitempty"`
	// Group is the report section: "" or GroupPaths for the end-to-end paths, else e.g.
	// "translate+acl", "dns", "control-plane", "memory".
	Group string `json:"group,omitempty"`
}

// GroupPaths is the section of the end-to-end path figures (the default).
const GroupPaths = "paths"

// Target is one goal of issue 7 beside what this run measured.
type Target struct {
	Goal     string `json:"goal"`     // e.g. "(b) TCP throughput >= 0.9x plain wireguard-go"
	Figures  string `json:"figures"`  // the figure(s) it was judged on
	Measured string `json:"measured"` // the measured value(s), readable
	Status   string `json:"status"`   // "met", "not met" or "not measured"
}

// Target statuses.
const (
	Met         = "met"
	NotMet      = "not met"
	NotMeasured = "not measured"
)

// Hardware says what the run ran on.
type Hardware struct {
	CPUModel   string   `json:"cpuModel"`
	Cores      int      `json:"cores"`
	MemoryMiB  int      `json:"memoryMiB"` // MemTotal
	Kernel     string   `json:"kernel"`
	GoVersion  string   `json:"goVersion"`
	Tools      []string `json:"tools,omitempty"` // versions of iperf3, ping, wireguard-go
	LoadBefore string   `json:"loadBefore"`      // /proc/loadavg at the start
	LoadAfter  string   `json:"loadAfter"`       // and at the end: the machine is shared
}

// Report is the whole run; it is what the JSON file holds.
type Report struct {
	Started   time.Time `json:"started"`
	Duration  string    `json:"duration"`
	Reference string    `json:"reference"` // path every ratio is relative to
	Hardware  Hardware  `json:"hardware"`
	Targets   []Target  `json:"targets,omitempty"`
	Figures   []Figure  `json:"figures"`
	Skipped   []string  `json:"skipped,omitempty"` // paths not measured, with why
	Notes     []string  `json:"notes,omitempty"`
}

// SetRatios fills Ratio and Reference of every figure whose metric was also measured on
// the reference path (the reference's own figures get none). For latencies lower is better,
// so a ratio above 1 there means slower than the reference.
func (r *Report) SetRatios() {
	ref := map[string]Figure{}
	for _, f := range r.Figures {
		if f.Path == r.Reference {
			ref[f.Metric] = f
		}
	}
	for i := range r.Figures {
		f := &r.Figures[i]
		if f.Ratio != nil {
			continue // set by whoever measured it (e.g. a ratio to a target)
		}
		rf, ok := ref[f.Metric]
		if !ok || f.Path == r.Reference || rf.Value == 0 || rf.Unit != f.Unit {
			continue
		}
		ratio := f.Value / rf.Value
		f.Ratio = &ratio
		f.Reference = rf.Name
	}
}

// WriteJSON writes r, indented, to path with mode 0644.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteText writes the readable report: hardware, then one table row per figure.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "EGW benchmark — %s (took %s)\n", r.Started.UTC().Format(time.RFC3339), r.Duration)
	h := r.Hardware
	fmt.Fprintf(&b, "CPU: %s, %d cores; memory %d MiB; kernel %s; %s\n", h.CPUModel, h.Cores, h.MemoryMiB, h.Kernel, h.GoVersion)
	if len(h.Tools) > 0 {
		fmt.Fprintf(&b, "tools: %s\n", strings.Join(h.Tools, "; "))
	}
	fmt.Fprintf(&b, "load average before: %s, after: %s\n", h.LoadBefore, h.LoadAfter)
	fmt.Fprintf(&b, "reference (ratio 1.00): %s\n\n", r.Reference)
	if len(r.Targets) > 0 {
		fmt.Fprintln(&b, "TARGETS (issue 7; goals, not assertions)")
		tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "GOAL\tMEASURED\tSTATUS\tFIGURES")
		for _, t := range r.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Goal, t.Measured, strings.ToUpper(t.Status), t.Figures)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(&b)
	}
	// One table per group, the end-to-end paths first (sorted by metric, so the paths of
	// one metric sit together), the others in the order they were measured.
	var groups []string
	byGroup := map[string][]Figure{}
	for _, f := range r.Figures {
		g := f.Group
		if g == "" {
			g = GroupPaths
		}
		if _, ok := byGroup[g]; !ok {
			groups = append(groups, g)
		}
		byGroup[g] = append(byGroup[g], f)
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i] == GroupPaths && groups[j] != GroupPaths })
	for _, g := range groups {
		figs := byGroup[g]
		if g == GroupPaths {
			sort.SliceStable(figs, func(i, j int) bool { return figs[i].Metric < figs[j].Metric })
		}
		fmt.Fprintf(&b, "[%s]\n", g)
		tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tMETRIC\tVALUE\tUNIT\tRATIO\tREFERENCE\tNOTE")
		for _, f := range figs {
			ratio, ref := "-", "-"
			if f.Ratio != nil {
				ratio = fmt.Sprintf("%.2fx", *f.Ratio)
				if *f.Ratio < 0.1 {
					ratio = fmt.Sprintf("%.3fx", *f.Ratio)
				}
				ref = f.Reference
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Path, f.Metric, formatValue(f.Value), f.Unit, ratio, ref, f.Note)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(&b)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "skipped: %s\n", s)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatValue(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v == float64(int64(v)):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
