package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSetRatios(t *testing.T) {
	r := Report{Reference: "wireguard-go", Figures: []Figure{
		{Name: "veth/tcp_1stream", Path: "veth", Metric: "tcp_1stream", Value: 20, Unit: "Gbit/s"},
		{Name: "wireguard-go/tcp_1stream", Path: "wireguard-go", Metric: "tcp_1stream", Value: 2.5, Unit: "Gbit/s"},
		{Name: "egw/tcp_1stream", Path: "egw", Metric: "tcp_1stream", Value: 2.25, Unit: "Gbit/s"},
		{Name: "veth/udp64_rate", Path: "veth", Metric: "udp64_rate", Value: 1e5, Unit: "packets/s"},
		{Name: "egw/ping_p50", Path: "egw", Metric: "ping_p50", Value: 0.2, Unit: "ms"},
		{Name: "wireguard-go/ping_p50", Path: "wireguard-go", Metric: "ping_p50", Value: 0, Unit: "ms"},
	}}
	r.SetRatios()
	tests := []struct {
		name string
		want float64 // 0: no ratio
	}{
		{"veth/tcp_1stream", 8},
		{"wireguard-go/tcp_1stream", 0},
		{"egw/tcp_1stream", 0.9},
		{"veth/udp64_rate", 0},       // no reference figure for the metric
		{"egw/ping_p50", 0},          // reference value 0: no ratio rather than +Inf
		{"wireguard-go/ping_p50", 0}, // the reference itself
	}
	for _, tc := range tests {
		var f *Figure
		for i := range r.Figures {
			if r.Figures[i].Name == tc.name {
				f = &r.Figures[i]
			}
		}
		switch {
		case tc.want == 0 && f.Ratio != nil:
			t.Errorf("%s: ratio %v, want none", tc.name, *f.Ratio)
		case tc.want != 0 && (f.Ratio == nil || abs(*f.Ratio-tc.want) > 1e-9):
			t.Errorf("%s: ratio %v, want %v", tc.name, f.Ratio, tc.want)
		case tc.want != 0 && f.Reference != "wireguard-go/"+f.Metric:
			t.Errorf("%s: reference %q", tc.name, f.Reference)
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestWriteReport(t *testing.T) {
	ratio := 0.5
	r := Report{
		Started: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC), Duration: "1m0s", Reference: "wireguard-go",
		Hardware: Hardware{CPUModel: "Test CPU", Cores: 2, Kernel: "6.1"},
		Figures:  []Figure{{Name: "veth/tcp_1stream", Path: "veth", Metric: "tcp_1stream", Value: 12.345, Unit: "Gbit/s", Ratio: &ratio, Reference: "wireguard-go/tcp_1stream"}},
		Skipped:  []string{"egw: binaries missing"},
	}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Test CPU, 2 cores", "veth", "tcp_1stream", "12.3", "0.50x", "skipped: egw: binaries missing"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := r.WriteJSON(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Figures []map[string]any `json:"figures"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	f := back.Figures[0]
	if f["name"] != "veth/tcp_1stream" || f["value"] != 12.345 || f["unit"] != "Gbit/s" || f["ratio"] != 0.5 {
		t.Errorf("JSON figure = %v", f)
	}
}

func TestSetRatiosKeepsOwnRatio(t *testing.T) {
	own := 0.6
	r := Report{Reference: "wireguard-go", Figures: []Figure{
		{Name: "wireguard-go/ns", Path: "wireguard-go", Metric: "ns", Value: 100, Unit: "ns"},
		{Name: "nat.UDP/ns", Path: "nat.UDP", Metric: "ns", Value: 90, Unit: "ns", Ratio: &own, Reference: "target 150 ns"},
	}}
	r.SetRatios()
	if f := r.Figures[1]; *f.Ratio != 0.6 || f.Reference != "target 150 ns" {
		t.Errorf("SetRatios replaced a ratio set by the measurement: %v %q", *f.Ratio, f.Reference)
	}
}

func TestWriteTextTargetsAndGroups(t *testing.T) {
	r := Report{Reference: "wireguard-go",
		Targets: []Target{{Goal: "idle edge gateway RSS <= 40 MB", Measured: "16.2 MiB", Status: Met, Figures: "x/edge_idle_rss"}},
		Figures: []Figure{
			{Name: "nat.UDP/ns_per_packet", Path: "nat.UDP", Metric: "ns_per_packet", Value: 92, Unit: "ns", Group: "translate+acl"},
			{Name: "veth/tcp_4streams", Path: "veth", Metric: "tcp_4streams", Value: 18, Unit: "Gbit/s"},
			{Name: "veth/tcp_1stream", Path: "veth", Metric: "tcp_1stream", Value: 10, Unit: "Gbit/s"},
		}}
	var buf bytes.Buffer
	if err := r.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	order := []string{"TARGETS", "idle edge gateway RSS <= 40 MB", "16.2 MiB", "MET", "[paths]", "tcp_1stream", "tcp_4streams", "[translate+acl]", "nat.UDP", "92"}
	at := 0
	for _, want := range order {
		i := strings.Index(out[at:], want)
		if i < 0 {
			t.Fatalf("text report lacks %q after offset %d:\n%s", want, at, out)
		}
		at += i + len(want)
	}
}
