//go:build linux

package harness

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOwnerPID(t *testing.T) {
	tests := []struct {
		name string
		pid  int
		ok   bool
	}{
		{"egw123x9f3a-wan", 123, true},
		{"egw1x0-a", 1, true},
		{"egw123x9f3a", 0, false}, // no short name: not ours
		{"egw-123x9f3a-wan", 0, false},
		{"egwabcx9f3a-wan", 0, false},
		{"egw0x9f3a-wan", 0, false},
		{"egw01x-", 0, false},
		{"egw+1x-a", 0, false},
		{"wg-test-123-0", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		pid, ok := ownerPID(tc.name)
		if pid != tc.pid || ok != tc.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", tc.name, pid, ok, tc.pid, tc.ok)
		}
	}
}

func TestPoll(t *testing.T) {
	ctx := context.Background()
	n := 0
	if err := Poll(ctx, time.Second, time.Millisecond, "third try", func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("Poll = %v after %d calls; want nil after 3", err, n)
	}

	start := time.Now()
	err := Poll(ctx, 50*time.Millisecond, 5*time.Millisecond, "never", func() error { return errors.New("still no") })
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Poll = %v after %v; want a timeout error soon after 50ms", err, time.Since(start))
	}
	if want := "waiting for never (50ms): still no"; err.Error() != want {
		t.Errorf("Poll error %q; want %q", err, want)
	}

	calls := 0
	boom := errors.New("process exited")
	err = Poll(ctx, time.Minute, time.Millisecond, "daemon", func() error { calls++; return Permanent(boom) })
	if !errors.Is(err, boom) || calls != 1 {
		t.Errorf("Poll with a permanent error = %v after %d calls; want %v after 1", err, calls, boom)
	}
}

func TestDevName(t *testing.T) {
	l := &Lab{ID: "egw4194304x9f3a"}
	if got := l.DevName("vp", "a"); got != "vp9f3aa" {
		t.Errorf("DevName = %q", got)
	}
	if got := l.DevName("wg", "r"); len(got) > 15 {
		t.Errorf("DevName %q longer than IFNAMSIZ-1", got)
	}
}

// FuzzOwnerPID: any name parses without panic, and a name it claims names its owner as
// Prefix + the decimal PID.
func FuzzOwnerPID(f *testing.F) {
	for _, s := range []string{"egw123x9f3a-wan", "egw-1x-", "egw99999999999999999999x0-a", "egw1x", "x-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		pid, ok := ownerPID(name)
		if !ok {
			return
		}
		if pid <= 0 || !strings.HasPrefix(name, Prefix+strconv.Itoa(pid)+"x") {
			t.Errorf("ownerPID(%q) = %d", name, pid)
		}
	})
}

func TestParseMetrics(t *testing.T) {
	page := `# HELP egw_relay_packets_total Ciphertext packets forwarded.
# TYPE egw_relay_packets_total counter
egw_relay_packets_total{gateway="cloud"} 42
# TYPE egw_relay_drops_total counter
egw_relay_drops_total{gateway="cloud",reason="forged-sender"} 3
egw_relay_drops_total{gateway="cloud",reason="unlinked"} 1.5e+01
# TYPE egw_path_direct gauge
egw_path_direct{gateway="edge-a",peer="edge-b"} 1
egw_path_direct{gateway="edge-a",peer="edge \"c\""} 0
go_goroutines 12
# TYPE egw_empty_total counter
`
	m, err := ParseMetrics(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := m.Sum("egw_relay_packets_total", nil); !ok || v != 42 {
		t.Errorf("relay packets = %v, %v", v, ok)
	}
	if v, _ := m.Sum("egw_relay_drops_total", nil); v != 18 {
		t.Errorf("drops sum = %v", v)
	}
	if d := m.ByLabel("egw_relay_drops_total", "reason"); d["unlinked"] != 15 || d["forged-sender"] != 3 {
		t.Errorf("drops by reason = %v", d)
	}
	if v, ok := m.Sum("egw_path_direct", map[string]string{"peer": "edge-b"}); !ok || v != 1 {
		t.Errorf("path direct edge-b = %v, %v", v, ok)
	}
	if _, ok := m.Sum("egw_path_direct", map[string]string{"peer": `edge "c"`}); !ok {
		t.Error("escaped label value not parsed")
	}
	if !m.Has("egw_empty_total") || !m.Has("go_goroutines") || m.Has("egw_missing") {
		t.Errorf("families = %v", m.Families)
	}
	for _, bad := range []string{"x{a=\"b} 1", "x{a} 1", "x", "x{a=\"b\"}", "x notanumber"} {
		if _, err := ParseMetrics(strings.NewReader(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestNATSpec(t *testing.T) {
	s := NATSpec(NATPortPreserving, NATEndpointDependent)
	kinds := map[string]NATKind{}
	for _, ss := range s.Sites {
		kinds[ss.Site] = ss.NAT
		if ss.NAT != "" && (!ss.Inside.IsValid() || ss.ListenPort != EdgeListenPort || ss.Inside.Overlaps(ss.LAN)) {
			t.Errorf("%s: inside %v, listen port %d", ss.Site, ss.Inside, ss.ListenPort)
		}
	}
	if kinds["cloud"] != "" || kinds["site-a"] != NATPortPreserving || kinds["site-b"] != NATEndpointDependent {
		t.Errorf("NAT kinds %v", kinds)
	}
	hub := s.Sites[0].Underlay.Addr()
	pp, err := natRuleset(NATPortPreserving, hub)
	if err != nil || !strings.Contains(pp, "oifname \"wan0\" masquerade\n") || strings.Contains(pp, "random") {
		t.Errorf("port-preserving ruleset (%v):\n%s", err, pp)
	}
	ed, err := natRuleset(NATEndpointDependent, hub)
	if err != nil || !strings.Contains(ed, "fully-random") || !strings.Contains(ed, "ip daddr "+hub.String()+" counter name "+CounterToHub) {
		t.Errorf("endpoint-dependent ruleset (%v):\n%s", err, ed)
	}
	for _, r := range []string{pp, ed} {
		if !strings.Contains(r, `iifname "wan0" ct state new drop`) {
			t.Errorf("ruleset lets unsolicited packets in:\n%s", r)
		}
	}
	if _, err := natRuleset("full-cone", hub); err == nil {
		t.Error("unknown NAT kind accepted")
	}
}

func TestMergeConfig(t *testing.T) {
	cfg := map[string]any{"name": "cloud", "paths": map[string]any{"direct": false}, "tun": map[string]any{"mtu": 1420}}
	mergeConfig(cfg, map[string]any{"paths": map[string]any{"relayRate": 1e6}, "tun": "x", "new": 1})
	paths := cfg["paths"].(map[string]any)
	if paths["direct"] != false || paths["relayRate"] != 1e6 || cfg["tun"] != "x" || cfg["new"] != 1 || cfg["name"] != "cloud" {
		t.Errorf("merged %v", cfg)
	}
	mergeConfig(cfg, nil)
	if len(cfg) != 4 {
		t.Errorf("merging nothing changed %v", cfg)
	}
}
