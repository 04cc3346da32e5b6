package main

import (
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	tests := []struct {
		p    float64
		want float64
	}{{0, 1}, {10, 1}, {50, 5}, {90, 9}, {99, 10}, {100, 10}}
	for _, tc := range tests {
		if got := percentile(v, tc.p); got != tc.want {
			t.Errorf("percentile(%v) = %v; want %v", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(nil) = %v", got)
	}
	if v[0] != 5 {
		t.Error("percentile sorted its input in place")
	}
}

func TestSelectPaths(t *testing.T) {
	all := append([]path{vethPath, wgPath}, egwPaths()...)
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", []string{"veth", "wireguard-go", "egw-edge-cloud", "egw-edge-edge-direct", "egw-edge-hub-edge", "egw-same-site", "egw-edge-cloud-water"}, ""},
		{"wireguard-go, veth", []string{"wireguard-go", "veth"}, ""},
		{"veth,nope", nil, `unknown path "nope"`},
	}
	for _, tc := range tests {
		got, err := selectPaths(all, tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("selectPaths(%q) error %v; want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		var names []string
		for _, p := range got {
			names = append(names, p.name)
		}
		if strings.Join(names, ",") != strings.Join(tc.want, ",") {
			t.Errorf("selectPaths(%q) = %v; want %v", tc.in, names, tc.want)
		}
	}
}

func TestBenchObjects(t *testing.T) {
	doc := benchObjects("cloud", "10.1.0.10")
	for _, want := range []string{
		"eServerName: client-a20", "eServerName: client-a21\nip: 10.0.0.21", "allowedServers: [client-a20]",
		"metadata: {name: iperf}\nprotocol: TCP\nport: 5201\nip: 10.1.0.10\neSiteName: cloud",
		"metadata: {name: udp}\nprotocol: UDP\nport: 9090",
		"dnsName: echo.bench.test\neSites: [site-a]\nePolicys: [bench-allow]",
	} {
		if !strings.Contains(doc, want) {
			t.Errorf("bench objects lack %q:\n%s", want, doc)
		}
	}
	if n := strings.Count(doc, "\n---\n"); n != 8 {
		t.Errorf("%d document separators; want 8 (9 objects)", n)
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"short", 100, "short"},
		{"a\n  b\tc\n", 100, "a b c"},
		{"0123456789abcdefghij", 9, "012 … efghij"},
		{"ééééé", 6, "é … éé"},
	}
	for _, tc := range tests {
		if got := oneLine(tc.in, tc.max); got != tc.want {
			t.Errorf("oneLine(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
	}
}
