package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func TestBuildSYN(t *testing.T) {
	for _, tc := range []struct {
		name     string
		src, dst string
		sp, dp   uint16
	}{
		{"client to VIP", "10.0.0.21", "192.168.0.2", 40000, 443},
		{"odd bytes", "10.255.1.3", "172.16.9.77", 1, 65535},
		{"zeros", "0.0.0.0", "0.0.0.0", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, dst := netip.MustParseAddr(tc.src), netip.MustParseAddr(tc.dst)
			var b [synLen + 8]byte
			p := buildSYN(b[:], src, dst, tc.sp, tc.dp)
			if len(p) != synLen || int(binary.BigEndian.Uint16(p[2:])) != synLen {
				t.Fatalf("length %d, total length field %d", len(p), binary.BigEndian.Uint16(p[2:]))
			}
			if got := checksum(0, p[:20]); got != 0 {
				t.Fatalf("IPv4 header does not sum to 0xffff: %#04x", got)
			}
			var ph [12]byte
			copy(ph[0:4], p[12:16])
			copy(ph[4:8], p[16:20])
			ph[9] = 6
			binary.BigEndian.PutUint16(ph[10:], synLen-20)
			if got := checksum(sum16(0, ph[:]), p[20:]); got != 0 {
				t.Fatalf("TCP checksum wrong: residue %#04x", got)
			}
			if netip.AddrFrom4([4]byte(p[12:16])) != src || netip.AddrFrom4([4]byte(p[16:20])) != dst ||
				binary.BigEndian.Uint16(p[20:]) != tc.sp || binary.BigEndian.Uint16(p[22:]) != tc.dp || p[33] != 0x02 {
				t.Fatalf("fields wrong: % x", p)
			}
		})
	}
}

func TestParseStatusField(t *testing.T) {
	status := []byte("Name:\tcpscale\nVmHWM:\t   2048 kB\nVmRSS:\t    1024 kB\nThreads:\t4\n")
	for _, tc := range []struct {
		field string
		want  int64
		err   string
	}{
		{"VmRSS", 1024 * 1024, ""},
		{"VmHWM", 2048 * 1024, ""},
		{"Threads", 0, "unexpected value"},
		{"RssAnon", 0, "no RssAnon"},
	} {
		got, err := parseStatusField(status, tc.field)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.field, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s = %d, %v; want %d", tc.field, got, err, tc.want)
		}
	}
}

func TestPct(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		in   []time.Duration
		p    int
		want time.Duration
	}{
		{ms(5), 50, 5 * time.Millisecond},
		{ms(3, 1, 2), 50, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{ms(4, 1, 3, 2), 100, 4 * time.Millisecond},
		{nil, 50, 0},
	} {
		if got := pct(tc.in, tc.p); got != tc.want {
			t.Errorf("pct(%v, %d) = %v, want %v", tc.in, tc.p, got, tc.want)
		}
	}
}

// TestLatency runs the enforcement benchmark on 3 gateways in both sync modes: every
// change must be seen enforced by every agent (runLatency fails otherwise), and adding
// servers no policy names must wake nobody.
func TestLatency(t *testing.T) {
	for _, mode := range []string{modeHTTP, modeWatch} {
		t.Run(mode, func(t *testing.T) {
			res, err := runLatency(context.Background(), t.TempDir(), 3, mode, 2)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Allow) != 2 || len(res.Revoke) != 2 || len(res.PerGateway) != 12 || len(res.CPU) != 4 {
				t.Fatalf("samples: allow %d revoke %d per-gateway %d cpu %d", len(res.Allow), len(res.Revoke), len(res.PerGateway), len(res.CPU))
			}
			for _, d := range append(res.Allow, res.Revoke...) {
				if d <= 0 || d > 30*time.Second {
					t.Fatalf("latency %v out of range", d)
				}
			}
			if res.UnrelatedWoken != 0 || res.ApplyErrors != 0 {
				t.Fatalf("unrelated write woke %d, engines refused %d", res.UnrelatedWoken, res.ApplyErrors)
			}
		})
	}
	if _, err := runLatency(context.Background(), t.TempDir(), 1, "carrier-pigeon", 1); err == nil || !strings.Contains(err.Error(), "unknown sync mode") {
		t.Fatalf("unknown mode: %v", err)
	}
}

// TestScale runs the cloud-scale benchmark on a small world and checks the figures that
// follow from its shape.
func TestScale(t *testing.T) {
	out, err := runScale(t.TempDir(), scaleParams{Gateways: 12, Services: 2, Fanout: 3, Batch: 5, Changes: 2}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, r := range out.Records {
		got[strings.TrimPrefix(r.Name, "scale.")] = r.Value
	}
	want := map[string]float64{
		"objects_applied":              12 * (4 + 2*2),
		"virtual_presences":            12 * 2 * 3,
		"policy_change_gateways_woken": 1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for _, k := range []string{"apply_total_cpu", "compile_wall", "heap_inuse", "rss", "store_file", "edge_snapshot_size", "hub_snapshot_size"} {
		if got[k] <= 0 {
			t.Errorf("%s = %v, want > 0", k, got[k])
		}
	}
}

// TestWorldsDecode checks the generated objects survive a JSON round trip through the api
// decoder, i.e. they are what an operator could apply with egwctl.
func TestWorldsDecode(t *testing.T) {
	for name, objs := range map[string][]api.Object{
		"latency": latencyWorld(4),
		"scale":   scaleBatch(0, 3, 3, 2, 2),
		"servers": newServers(2),
	} {
		var b strings.Builder
		for _, o := range objs {
			if err := api.Validate(o); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			data, err := json.Marshal(o)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
			b.WriteByte('\n')
		}
		dec, err := api.Decode(name, []byte(b.String()))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(dec) != len(objs) {
			t.Fatalf("%s: decoded %d of %d", name, len(dec), len(objs))
		}
	}
}
