package pathbind

import (
	"net/netip"
	"testing"
)

func TestCandidate(t *testing.T) {
	overlay := netip.MustParsePrefix("100.64.0.0/10")
	vp := netip.MustParsePrefix("192.168.0.0/24")
	for _, tc := range []struct {
		ip   string
		port uint16
		ok   bool
	}{
		{"10.0.0.5", 51820, true},
		{"203.0.113.7", 40000, true},
		{"10.0.0.5", 0, false},        // no port yet
		{"127.0.0.1", 51820, false},   // loopback
		{"169.254.1.1", 51820, false}, // link-local
		{"100.64.4.1", 51820, false},  // the overlay (vp0)
		{"192.168.0.1", 51820, false}, // the VP CIDR (vp0)
		{"fd00::1", 51820, false},     // the underlay is IPv4
		{"224.0.0.1", 51820, false},   // multicast
	} {
		_, ok := candidate(netip.MustParseAddr(tc.ip), tc.port, []netip.Prefix{overlay, vp})
		if ok != tc.ok {
			t.Errorf("candidate(%s, %d) = %v, want %v", tc.ip, tc.port, ok, tc.ok)
		}
	}
}

func TestLocalCandidatesExcludeLoopback(t *testing.T) {
	got, err := LocalCandidates(51820)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > maxLocalCandidates {
		t.Fatalf("%d candidates", len(got))
	}
	for _, c := range got {
		if c.Addr().IsLoopback() || c.Port() != 51820 {
			t.Fatalf("candidate %v", c)
		}
	}
}
