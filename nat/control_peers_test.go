package nat

import (
	"net/netip"
	"testing"

	"github.com/egw-project/egw/internal/ip4"
)

// TestSetControlPeers: the gateway's own overlay IP talks with the configured control peer
// and with the peers set later (other hubs), with nobody else.
func TestSetControlPeers(t *testing.T) {
	e := NewEngine(Config{ControlPeer: netip.MustParseAddr("100.64.0.1")})
	hub1, hub2, other := ip4.U32(netip.MustParseAddr("100.64.0.1")), ip4.U32(netip.MustParseAddr("100.64.1.255")), ip4.U32(netip.MustParseAddr("100.64.8.1"))
	f := &flow{proto: ip4.ProtoTCP}
	if !e.control(f, hub1, 40000) || e.control(f, hub2, 40000) || e.control(f, other, 40000) {
		t.Fatal("before SetControlPeers")
	}
	e.SetControlPeers([]netip.Addr{netip.MustParseAddr("100.64.1.255")})
	if !e.control(f, hub1, 40000) || !e.control(f, hub2, 40000) || e.control(f, other, 40000) {
		t.Fatal("after SetControlPeers")
	}
	e.SetControlPeers(nil)
	if e.control(f, hub2, 40000) {
		t.Fatal("a removed hub is still a control peer")
	}
}
