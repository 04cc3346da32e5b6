package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func TestSummarizeConditions(t *testing.T) {
	tests := []struct {
		in   []api.Condition
		want string
	}{
		{nil, ""},
		{[]api.Condition{{Type: "ResolvedRefs", Status: "True"}, {Type: "Allocated", Status: "True"}}, "OK"},
		{[]api.Condition{{Type: "ResolvedRefs", Status: "False", Reason: "NotFound"}, {Type: "Allocated", Status: "True"}}, "ResolvedRefs=False(NotFound)"},
		{[]api.Condition{{Type: "ResolvedRefs", Status: "False", Reason: "NotFound"}, {Type: "Allocated", Status: "Unknown"}}, "ResolvedRefs=False(NotFound),Allocated=Unknown"},
	}
	for _, tt := range tests {
		if got := summarizeConditions(tt.in); got != tt.want {
			t.Errorf("summarizeConditions(%+v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBytesIEC(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"},
		{5 << 20, "5.0 MiB"}, {3 << 30, "3.0 GiB"}, {1 << 62, "4.0 EiB"}, {^uint64(0), "16.0 EiB"},
	}
	for _, tt := range tests {
		if got := bytesIEC(tt.n); got != tt.want {
			t.Errorf("bytesIEC(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(time.Second), "0s"}, // clock skew: never negative
		{now.Add(-59 * time.Second), "59s"},
		{now.Add(-61 * time.Second), "1m1s"},
		{now.Add(-(2*time.Hour + 5*time.Minute)), "2h5m"},
		{now.Add(-(75 * time.Hour)), "3d3h"},
	}
	for _, tt := range tests {
		if got := age(tt.t, now); got != tt.want {
			t.Errorf("age(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestLeasesAndDrops(t *testing.T) {
	if got := leases([]api.PoolUse{{Pool: "client", Used: 1, Size: 510}, {Pool: "presence", Used: 0, Size: 126}}); got != "client 1/510, presence 0/126" {
		t.Errorf("leases = %q", got)
	}
	if got := drops(map[string]uint64{"zeta": 1, "alpha": 2, "none": 0}); got != "alpha=2 zeta=1" {
		t.Errorf("drops = %q", got)
	}
	if got := drops(nil); got != "0" {
		t.Errorf("drops(nil) = %q", got)
	}
}

func TestShortKey(t *testing.T) {
	if got := shortKey("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="); got != "xTIBA5rb..." {
		t.Errorf("shortKey = %q", got)
	}
	if got := shortKey(""); got != "" {
		t.Errorf("shortKey(\"\") = %q", got)
	}
}

// TestTableOfForeignObject checks a column of one kind shows an object of another kind as
// empty rather than panicking.
func TestTableOfForeignObject(t *testing.T) {
	var buf bytes.Buffer
	s := &api.ESite{TypeMeta: api.TypeMeta{Kind: api.KindESite}, Metadata: api.ObjectMeta{Name: "x"}}
	if err := printTable(&buf, api.KindEService, []api.Object{s}); err != nil {
		t.Fatal(err)
	}
	got := rows(buf.String())
	if len(got) != 2 || got[1][0] != "x" || got[1][1] != "-" {
		t.Errorf("table = %q", got)
	}
}

func TestPrinters(t *testing.T) {
	vp := &api.VirtualPresence{TypeMeta: api.TypeMeta{Kind: api.KindVirtualPresence, APIVersion: "v1"},
		Metadata: api.ObjectMeta{Name: "vp1", ResourceVersion: 3}, VirtualIP: "192.168.0.10", EServiceName: "nginx",
		Status: api.Status{ESiteName: "tokyo", EGateway: "gw1", Conditions: []api.Condition{{Type: "ResolvedRefs", Status: "True"}}}}
	tests := []struct {
		format string
		want   string
	}{
		{formatTable, "NAME   SERVICE   SITE    GATEWAY   VIP            CONDITIONS\nvp1    nginx     tokyo   gw1       192.168.0.10   OK\n"},
		{formatJSON, `{
  "kind": "VirtualPresenceList",
  "revision": 9,
  "items": [
    {
      "kind": "VirtualPresence",
      "apiVersion": "v1",
      "metadata": {
        "name": "vp1",
        "resourceVersion": "3"
      },
      "virtualIp": "192.168.0.10",
      "eServiceName": "nginx",
      "status": {
        "conditions": [
          {
            "type": "ResolvedRefs",
            "status": "True"
          }
        ],
        "eSiteName": "tokyo",
        "eGateway": "gw1"
      }
    }
  ]
}
`},
		{formatYAML, `items:
- apiVersion: v1
  eServiceName: nginx
  kind: VirtualPresence
  metadata:
    name: vp1
    resourceVersion: "3"
  status:
    conditions:
    - status: "True"
      type: ResolvedRefs
    eGateway: gw1
    eSiteName: tokyo
  virtualIp: 192.168.0.10
kind: VirtualPresenceList
revision: 9
`},
	}
	for _, tt := range tests {
		p, err := newPrinter(tt.format)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := p.Objects(&buf, api.KindVirtualPresence, 9, []api.Object{vp}); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("%s:\n%s\nwant:\n%s", tt.format, buf.String(), tt.want)
		}
	}
	if _, err := newPrinter("xml"); err == nil {
		t.Error("newPrinter(xml) succeeded")
	}
}
