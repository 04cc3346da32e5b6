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
}

// Hardware says what the run ran on.
type Hardware struct {
	CPUModel   string   `json:"cpuModel"`
	Cores      int      `json:"cores"`
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
	fmt.Fprintf(&b, "CPU: %s, %d cores; kernel %s; %s\n", h.CPUModel, h.Cores, h.Kernel, h.GoVersion)
	if len(h.Tools) > 0 {
		fmt.Fprintf(&b, "tools: %s\n", strings.Join(h.Tools, "; "))
	}
	fmt.Fprintf(&b, "load average before: %s, after: %s\n", h.LoadBefore, h.LoadAfter)
	fmt.Fprintf(&b, "reference (ratio 1.00): %s\n\n", r.Reference)
	tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tMETRIC\tVALUE\tUNIT\tvs REF\tNOTE")
	figs := append([]Figure(nil), r.Figures...)
	sort.SliceStable(figs, func(i, j int) bool { return figs[i].Metric < figs[j].Metric })
	for _, f := range figs {
		ratio := "-"
		if f.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *f.Ratio)
			if *f.Ratio < 0.1 {
				ratio = fmt.Sprintf("%.3fx", *f.Ratio)
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Path, f.Metric, formatValue(f.Value), f.Unit, ratio, f.Note)
	}
	if err := tw.Flush(); err != nil {
		return err
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
	default:
		return fmt.Sprintf("%.3f", v)
	}
}
