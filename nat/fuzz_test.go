package nat

import (
	"bytes"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/pkttest"
)

// fixChecksums recomputes every checksum of b (IPv4 header; TCP/UDP/ICMP of an
// unfragmented packet; the quoted header of an ICMP error) so fuzzed packets are
// well-formed apart from what the fuzzer varies on purpose.
func fixChecksums(b []byte) {
	var p packet
	if parse(b, &p) != ReasonOK {
		return
	}
	put16(b, 10, 0)
	put16(b, 10, pkttest.Checksum(b[:p.ihl], 0))
	if p.fragOff != 0 || p.mf {
		return
	}
	l4 := b[p.ihl:]
	ps := pkttest.Pseudo
	switch p.proto {
	case ip4.ProtoTCP:
		put16(l4, 16, 0)
		put16(l4, 16, pkttest.Checksum(l4, ps(p.src, p.dst, ip4.ProtoTCP, len(l4))))
	case ip4.ProtoUDP:
		if get16(l4, 6) != 0 {
			put16(l4, 6, 0)
			c := pkttest.Checksum(l4, ps(p.src, p.dst, ip4.ProtoUDP, len(l4)))
			if c == 0 {
				c = 0xffff
			}
			put16(l4, 6, c)
		}
	case ip4.ProtoICMP:
		if p.isErr {
			in := b[p.in:]
			put16(in, 10, 0)
			put16(in, 10, pkttest.Checksum(in[:p.inIHL], 0))
			if itl := int(get16(in, 2)); itl == len(in) && get16(in, 6)&0x3fff == 0 {
				s, d := get32(in, 12), get32(in, 16)
				il4 := in[p.inIHL:]
				switch p.inProto {
				case ip4.ProtoUDP:
					if get16(il4, 6) != 0 {
						put16(il4, 6, 0)
						c := pkttest.Checksum(il4, ps(s, d, ip4.ProtoUDP, len(il4)))
						if c == 0 {
							c = 0xffff
						}
						put16(il4, 6, c)
					}
				case ip4.ProtoTCP:
					if len(il4) >= 20 {
						put16(il4, 16, 0)
						put16(il4, 16, pkttest.Checksum(il4, ps(s, d, ip4.ProtoTCP, len(il4))))
					}
				}
			}
		}
		put16(l4, 2, 0)
		put16(l4, 2, pkttest.Checksum(l4, 0))
	}
}

// fuzzWorld is a world with some flows open, so replies and errors find mappings.
func fuzzWorld(f *testing.F) (*world, [][]byte) {
	w := newWorld(f)
	var seeds [][]byte
	add := func(b []byte) { seeds = append(seeds, append([]byte(nil), b...)) }
	out := tcpTo(clientA, vipNginx, 8080).build(f)
	add(out)
	atS := w.toService(f, out)
	add(mirror(atS))
	u := udpTo(clientA, vipDNS, 53).build(f)
	add(u)
	uS := w.toService(f, u)
	add(icmpErr(f, dnsIP, srcOf(uS), 3, 3, uS))
	add(icmpErr(f, dnsIP, srcOf(uS), 3, 3, uS[:28]))
	add(echoTo(clientA, vipDNS, 9).build(f))
	eS := w.toService(f, echoTo(clientA, vipDNS, 10).build(f))
	add(mirror(eS))                                      // the host's echo reply
	add(icmpErr(f, ma("10.0.0.1"), srcOf(eS), 3, 1, eS)) // an error quoting the request
	le := echoTo(clientA, vipWeb, 11).build(f)
	add(le)
	w.a.FromSite(le, nil)
	add(mirror(le)) // same-site echo reply
	add(tcpTo(clientA, vipWeb, 80).build(f))
	syn := tcpTo(clientA, vipNginx, 8080)
	syn.syn, syn.mss, syn.mssOdd = true, 1460, true
	add(syn.build(f))
	big := udpTo(clientA, vipDNS, 53)
	big.id, big.payload = 77, make([]byte, 100)
	add(fragment(big.build(f), 0, 56, true))
	add(fragment(big.build(f), 56, 108, false))
	ov := tcpTo(clientA, vipNginx, 8080).build(f)
	w.a.FromSite(ov, nil)
	add(ov)
	add(mirror(ov))
	add(icmpErr(f, ovHub, srcOf(ov), 11, 0, ov[:28]))
	add(tcpTo(ovA, ovHub, 7443).build(f)) // control traffic (edge → hub's sync port)
	add(mirror(tcpTo(ovA, ovHub, 7443).build(f)))
	add(tcpTo(ovB, ovA, 22).build(f)) // denied-control
	return w, seeds
}

func fuzzEngine(t *testing.T, e *Engine, fromSite bool, data []byte) {
	b := append([]byte(nil), data...)
	fixChecksums(b)
	valid := verifyErr(b) == ""
	in := append([]byte(nil), b...)
	reply := make([]byte, 600)
	var r Result
	if fromSite {
		r = e.FromSite(b, reply)
	} else {
		r = e.FromOverlay(b, reply)
	}
	if len(b) != len(in) {
		t.Fatal("length changed")
	}
	if r.Action == Drop {
		if !bytes.Equal(b, in) {
			t.Fatal("dropped packet was modified")
		}
	} else if valid {
		if err := verifyErr(b); err != "" {
			t.Fatalf("%s: %s\nin  % x\nout % x", r.Action, err, in, b)
		}
	}
	if r.ReplyLen > 0 {
		if r.ReplyLen > len(reply) {
			t.Fatal("reply overran")
		}
		if err := verifyReply(reply[:r.ReplyLen]); err != "" {
			t.Fatalf("reply: %s\n% x", err, reply[:r.ReplyLen])
		}
	}
}

func FuzzFromSite(f *testing.F) {
	w, seeds := fuzzWorld(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzEngine(t, w.a, true, data)
		fuzzEngine(t, w.b, true, data)
	})
}

func FuzzFromOverlay(f *testing.F) {
	w, seeds := fuzzWorld(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzEngine(t, w.a, false, data)
		fuzzEngine(t, w.b, false, data)
		fuzzEngine(t, w.hub, false, data)
	})
}

func FuzzParse(f *testing.F) {
	_, seeds := fuzzWorld(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var p packet
		if parse(data, &p) != ReasonOK {
			return
		}
		if p.ihl < 20 || p.ihl > len(data) || p.l4 != p.ihl {
			t.Fatalf("bad offsets %+v", p)
		}
		if p.fragOff == 0 {
			if p.l4+minL4(p.proto) > len(data) && (p.proto == ip4.ProtoTCP || p.proto == ip4.ProtoUDP || p.proto == ip4.ProtoICMP) {
				t.Fatal("L4 header past the buffer")
			}
			if p.proto == ip4.ProtoTCP && p.l4+p.tcpHdrLen > len(data) {
				t.Fatal("TCP header past the buffer")
			}
			if p.isErr && p.in+p.inIHL+8 > len(data) {
				t.Fatal("quoted header past the buffer")
			}
		}
	})
}

// verifyReply checks an ICMP message the engine generated: gopacket decodes it, both
// checksums verify, and it quotes an IPv4 header.
func verifyReply(b []byte) string {
	if len(b) > 9 && b[9] == ip4.ProtoTCP {
		return verifyRST(b)
	}
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	if pkt.Layer(layers.LayerTypeIPv4) == nil || pkt.Layer(layers.LayerTypeICMPv4) == nil {
		return "gopacket does not decode IPv4/ICMPv4"
	}
	if len(b) < 48 || int(get16(b, 2)) != len(b) || pkttest.Checksum(b[:20], 0) != 0 || pkttest.Checksum(b[20:], 0) != 0 {
		return "bad length or checksum"
	}
	if b[28]>>4 != 4 {
		return "does not quote an IPv4 header"
	}
	return ""
}
