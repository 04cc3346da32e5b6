package nat

import (
	"bytes"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/pkttest"
)

// mirror turns a packet into its reply: addresses and ports swapped, an echo request
// into an echo reply (and back). Swapping does not change any checksum; the ICMP type
// change is followed by a full ICMP checksum recompute.
func mirror(b []byte) []byte {
	out := append([]byte(nil), b...)
	copy(out[12:16], b[16:20])
	copy(out[16:20], b[12:16])
	ihl := int(b[0]&0xf) * 4
	switch b[9] {
	case ip4.ProtoTCP, ip4.ProtoUDP:
		copy(out[ihl:ihl+2], b[ihl+2:ihl+4])
		copy(out[ihl+2:ihl+4], b[ihl:ihl+2])
	case ip4.ProtoICMP:
		switch out[ihl] {
		case icmpEchoRequest:
			out[ihl] = icmpEchoReply
		case icmpEchoReply:
			out[ihl] = icmpEchoRequest
		}
		put16(out, ihl+2, 0)
		put16(out, ihl+2, pkttest.Checksum(out[ihl:], 0))
	}
	return out
}

func randomPacket(rng *rand.Rand) (pk, netip.Addr, netip.Addr, netip.Addr) {
	c := netip.AddrFrom4([4]byte{10, 0, 0, byte(2 + rng.IntN(99))})
	p := pk{ttl: uint8(5 + rng.IntN(251)), id: uint16(rng.Uint32())}
	if rng.IntN(2) == 0 {
		p.flags = layers.IPv4DontFragment
	}
	if n := rng.IntN(4); n > 0 {
		for i := 0; i < n; i++ {
			p.opts = append(p.opts, layers.IPv4Option{OptionType: 1, OptionLength: 1})
		}
		if rng.IntN(2) == 0 { // router alert
			p.opts = append(p.opts, layers.IPv4Option{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}})
		}
	}
	p.payload = make([]byte, rng.IntN(1200))
	for i := range p.payload {
		p.payload[i] = byte(rng.Uint32())
	}
	var vip, ov, svc netip.Addr
	switch rng.IntN(3) {
	case 0:
		c = clientA
		p.proto, p.sport, p.dport = layers.IPProtocolTCP, uint16(1024+rng.IntN(60000)), 8080
		p.syn, p.ack = rng.IntN(3) == 0, rng.IntN(2) == 0
		if p.syn && rng.IntN(2) == 0 {
			p.mss = uint16(500 + rng.IntN(9000))
			p.mssOdd = rng.IntN(2) == 0
		}
		vip, ov, svc = vipNginx, ovNginx, nginxIP
	case 1:
		p.proto, p.sport, p.dport = layers.IPProtocolUDP, uint16(1024+rng.IntN(60000)), 53
		p.udpZero = rng.IntN(8) == 0
		vip, ov, svc = vipDNS, ovDNS, dnsIP
	default:
		p.proto, p.icmpType, p.icmpID = layers.IPProtocolICMPv4, layers.ICMPv4TypeEchoRequest, uint16(rng.Uint32())
		vip, ov, svc = vipDNS, ovDNS, dnsIP
	}
	p.src, p.dst = c, vip
	return p, ov, svc, c
}

// TestPropertyAgainstGopacket: 100,000 random packets walk A → B and back; at
// every step the in-place result equals gopacket's decode → rewrite → serialize, and
// out-and-back restores the original bytes (less the TTL the gateways took).
func TestPropertyAgainstGopacket(t *testing.T) {
	n := 100000
	if testing.Short() {
		n = 5000
	} else if raceEnabled {
		n = 20000
	}
	clk := newClock()
	a, bgw := newEngine(t, snapA(), clk), newEngine(t, snapB(), clk)
	rng := rand.New(rand.NewPCG(1, 2))
	ovc := map[netip.Addr]netip.Addr{}
	pres := map[netip.Addr]netip.Addr{}
	for i := 0; i < n; i++ {
		spec, ov, svc, c := randomPacket(rng)
		orig := spec.build(t)
		step := func(name string, e *Engine, fromSite bool, b []byte, want Action) []byte {
			t.Helper()
			out := append([]byte(nil), b...)
			var r Result
			if fromSite {
				r = e.FromSite(out, nil)
			} else {
				r = e.FromOverlay(out, nil)
			}
			if r.Action != want {
				t.Fatalf("packet %d %s: %v (%v), want %v\n% x", i, name, r.Action, r.Reason, want, b)
			}
			if len(out) != len(b) {
				t.Fatalf("length changed")
			}
			return out
		}
		outA := step("A out", a, true, orig, ToOverlay)
		oc := srcOf(outA)
		if prev, ok := ovc[c]; ok && prev != oc {
			t.Fatalf("client %s got two overlay addresses %s, %s", c, prev, oc)
		}
		ovc[c] = oc
		check := func(name string, got, want []byte) {
			t.Helper()
			if !bytes.Equal(got, want) {
				t.Fatalf("packet %d %s:\ngot  % x\nwant % x", i, name, got, want)
			}
		}
		check("A out", outA, reference(t, orig, oc, ov, 1, 1380))
		outB := step("B in", bgw, false, outA, ToSite)
		p := srcOf(outB)
		if prev, ok := pres[oc]; ok && prev != p {
			t.Fatalf("overlay client %s got two presence addresses", oc)
		}
		pres[oc] = p
		check("B in", outB, reference(t, outA, p, svc, 1, 1380))
		// Out and back at B: the service's reply becomes the overlay reply.
		backB := mirror(step("B reply", bgw, true, mirror(outB), ToOverlay))
		check("B out-and-back", backB, reference(t, outA, oc, ov, 2, 1380))
		// Out and back at A.
		backA := mirror(step("A reply", a, false, mirror(outA), ToSite))
		check("A out-and-back", backA, reference(t, orig, c, spec.dst, 2, 1380))
	}
}
