package pathbind

import (
	"bytes"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/egw-project/egw/api"
)

func FuzzParseRelayed(f *testing.F) {
	f.Add(relayed(ovA, ovB, 100))
	f.Add(relayed(ovA, ovA, 32))
	f.Add([]byte{4, 0xEE, 'R', 1})
	f.Add(wgMessage(40, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		src, dst, inner, err := ParseRelayed(b)
		if !bytes.Equal(in, b) {
			t.Fatal("ParseRelayed modified its input")
		}
		if err != nil {
			return
		}
		if inner != len(b)-TrailerLen || inner < wgMinMessage || src == dst || !src.Is4() || !dst.Is4() {
			t.Fatalf("accepted %x as src %v dst %v inner %d", b, src, dst, inner)
		}
		// Re-marking the inner message gives back the datagram.
		m := bytes.Clone(b[:inner])
		unmarkRelayed(m)
		if got := markRelayed(make([]byte, len(b)), m, src, dst); !bytes.Equal(got, b) {
			t.Fatalf("re-marked %x, want %x", got, b)
		}
	})
}

func FuzzProbe(f *testing.F) {
	var key [32]byte
	f.Add(appendProbe(nil, probe{kind: kindPing, src: ovA, dst: ovB}, &key))
	f.Add(appendProbe(nil, probe{kind: kindCall, src: ovA, dst: ovB}, &key))
	f.Add([]byte{kindPong, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseProbe(b)
		if err != nil {
			return
		}
		if verifyProbe(b, &key) {
			if got := appendProbe(nil, p, &key); !bytes.Equal(got, b) {
				t.Fatalf("verified probe %x re-encodes as %x", b, got)
			}
		}
	})
}

// FuzzDemux feeds arbitrary datagrams from arbitrary sources to a hub's and an edge's
// receive path: nothing panics, nothing handed to WireGuard grows, and whatever the hub
// forwards passed every check.
func FuzzDemux(f *testing.F) {
	f.Add(relayed(ovA, ovB, 100), uint16(40001), false)
	f.Add(relayed(ovB, netip.MustParseAddr("100.64.0.9"), 60), uint16(51820), true)
	f.Add(appendProbe(nil, probe{kind: kindPing, src: ovA, dst: ovB}, &[32]byte{}), uint16(40001), true)
	f.Add(wgMessage(32, 0), uint16(1), true)
	f.Fuzz(func(t *testing.T, pkt []byte, port uint16, fromA bool) {
		clk := newClock()
		r, c, hub := newTestRelay(clk, RelayConfig{})
		from := netip.AddrPortFrom(udpA.Addr(), port)
		if !fromA {
			from = netip.AddrPortFrom(udpB.Addr(), port)
		}
		sizes := deliver(hub, from, pkt)
		if sizes[0] > len(pkt) {
			t.Fatalf("size grew to %d", sizes[0])
		}
		if r.Stats().Forwarded > 0 {
			src, dst, _, err := ParseRelayed(pkt)
			if err != nil || from != udpA && from != udpB || len(c.sent) != 1 {
				t.Fatalf("forwarded %x from %v (%v %v %v)", pkt, from, src, dst, err)
			}
		}

		// An edge (edge-b) with a hub at from.
		edge := New(&capture{}, Config{Self: ovB, Direct: true, Now: clk.Now, ManualTick: true})
		if err := edge.SetHubs([]netip.AddrPort{netip.AddrPortFrom(from.Addr(), max(port, 1))}); err != nil {
			t.Fatal(err)
		}
		if err := edge.SetPeers([]Peer{{Name: "edge-a", OverlayIP: ovA, PublicKey: [32]byte{9}, Candidates: []netip.AddrPort{udpA}}}); err != nil {
			t.Fatal(err)
		}
		bufs := [][]byte{append(make([]byte, 0, 65535), pkt...)}
		sz := []int{len(pkt)}
		eps := []conn.Endpoint{&conn.StdNetEndpoint{AddrPort: from}}
		edge.demux(bufs, sz, eps, &rxScratch{})
		if sz[0] > len(pkt) {
			t.Fatalf("edge size grew to %d", sz[0])
		}
		edge.Tick()
	})
}

func TestSetLinksIgnoresBadPairs(t *testing.T) {
	r := NewRelay(RelayConfig{})
	r.SetLinks([]api.Link{{A: ovA, B: ovA}, {A: netip.MustParseAddr("::1"), B: ovB}, {A: ovB, B: ovA}})
	if n := len(*r.links.Load()); n != 1 {
		t.Fatalf("%d links, want 1", n)
	}
}
