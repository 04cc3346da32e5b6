package nat

import (
	"bytes"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/pkttest"
	"github.com/google/gopacket/layers"
)

// world is the three gateways of the test world sharing one clock.
type world struct {
	clk          *fakeClock
	a, hub, b    *Engine
	reply        []byte
	lastA, lastB Result
}

// newWorld makes the three engines with the control rules a real deployment gives them:
// the edges talk control traffic with the hub's overlay IP, the hub serves sync port 7443.
func newWorld(t testing.TB, mod ...func(*Config)) *world {
	clk := newClock()
	edge := append([]func(*Config){func(c *Config) { c.ControlPeer = ovHub }}, mod...)
	hub := append([]func(*Config){func(c *Config) { c.ControlPort = 7443 }}, mod...)
	return &world{clk: clk, a: newEngine(t, snapA(), clk, edge...), hub: newEngine(t, snapHub(), clk, hub...),
		b: newEngine(t, snapB(), clk, edge...), reply: make([]byte, 1500)}
}

// toService walks a packet from a site-a client to site-b's service host; it returns the
// packet as the service sees it (nil if dropped somewhere). Edge A's output goes straight
// to edge B's engine: the edges share one WireGuard session, whichever path (direct, or
// the hub's ciphertext relay) carries it, so no other engine sees the packet.
func (w *world) toService(t testing.TB, pkt []byte) []byte {
	t.Helper()
	b := append([]byte(nil), pkt...)
	if w.lastA = w.a.FromSite(b, w.reply); w.lastA.Action != ToOverlay {
		return nil
	}
	if w.lastB = w.b.FromOverlay(b, w.reply); w.lastB.Action != ToSite {
		return nil
	}
	verify(t, b)
	return b
}

// toClient walks a packet from site-b's service host back to the site-a client.
func (w *world) toClient(t testing.TB, pkt []byte) []byte {
	t.Helper()
	b := append([]byte(nil), pkt...)
	if w.lastB = w.b.FromSite(b, w.reply); w.lastB.Action != ToOverlay {
		return nil
	}
	if w.lastA = w.a.FromOverlay(b, w.reply); w.lastA.Action != ToSite {
		return nil
	}
	verify(t, b)
	return b
}

func drops(e *Engine, r Reason) uint64 { return e.Stats().Drops[r.String()] }

func TestOutboundTCP(t *testing.T) {
	clk := newClock()
	a := newEngine(t, snapA(), clk)
	in := tcpTo(clientA, vipNginx, 8080).build(t)
	b := append([]byte(nil), in...)
	r := a.FromSite(b, nil)
	if r.Action != ToOverlay || r.Reason != ReasonOK {
		t.Fatalf("got %v %v", r.Action, r.Reason)
	}
	oc := srcOf(b)
	if !mp("100.64.6.0/23").Contains(oc) || dstOf(b) != ovNginx {
		t.Fatalf("got %s -> %s, want upper half of 100.64.4.0/22 -> %s", oc, dstOf(b), ovNginx)
	}
	if want := reference(t, in, oc, ovNginx, 1, 0); !bytes.Equal(b, want) {
		t.Fatalf("got\n% x\nwant\n% x", b, want)
	}
	verify(t, b)
}

func TestRoundTripTCPAndReply(t *testing.T) {
	w := newWorld(t)
	atS := w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	if atS == nil {
		t.Fatalf("dropped: A %v B %v", w.lastA.Reason, w.lastB.Reason)
	}
	p := srcOf(atS)
	if !mp("172.16.5.128/25").Contains(p) || dstOf(atS) != nginxIP {
		t.Fatalf("service sees %s -> %s", p, dstOf(atS))
	}
	back := w.toClient(t, mirror(atS))
	if back == nil {
		t.Fatalf("reply dropped: A %v B %v", w.lastA.Reason, w.lastB.Reason)
	}
	if srcOf(back) != vipNginx || dstOf(back) != clientA {
		t.Fatalf("client sees reply %s -> %s", srcOf(back), dstOf(back))
	}
}

func TestChecksumRFC1624(t *testing.T) {
	// RFC 1624 §4 example: HC 0xDD2F, field 0x5555 -> 0x3285 gives HC' 0x0000.
	if got := csum16(0xdd2f, 0x5555, 0x3285); got != 0x0000 {
		t.Fatalf("csum16 = %#04x, want 0x0000", got)
	}
	// Incremental equals full recompute on random headers.
	b := tcpTo(clientA, vipNginx, 8080).build(t)
	for i := uint32(0); i < 1000; i++ {
		h := append([]byte(nil), b[:20]...)
		c := get16(h, 10)
		old := get32(h, 12)
		nv := i*2654435761 + 1
		put32(h, 12, nv)
		put16(h, 10, csum32(c, old, nv))
		if pkttest.Checksum(h, 0) != 0 {
			t.Fatalf("incremental checksum wrong for %#x", nv)
		}
	}
}

func TestUDPChecksumZeroStaysZero(t *testing.T) {
	w := newWorld(t)
	spec := udpTo(clientA, vipDNS, 53)
	spec.udpZero = true
	atS := w.toService(t, spec.build(t))
	if atS == nil {
		t.Fatal("dropped")
	}
	if get16(atS, 20+6) != 0 {
		t.Fatalf("UDP checksum 0 became %#04x", get16(atS, 26))
	}
}

func TestUDPChecksumComputedZeroBecomesFFFF(t *testing.T) {
	clk := newClock()
	a := newEngine(t, snapA(), clk)
	// Learn the client's overlay address.
	probe := udpTo(clientA, vipDNS, 53).build(t)
	a.FromSite(probe, nil)
	oc := srcOf(probe)
	// Choose the payload's last word so the translated datagram sums to 0xFFFF: its
	// checksum then computes to 0, which UDP must send as 0xFFFF.
	spec := udpTo(clientA, vipDNS, 53)
	spec.payload = []byte{1, 2, 3, 4, 0, 0}
	after := spec
	after.src, after.dst = oc, ovDNS
	ab := after.build(t)
	put16(ab, 26, 0)
	s := get32(ab, 12)
	d := get32(ab, 16)
	sum := pkttest.Sum(ab[20:], pkttest.Pseudo(s, d, ip4.ProtoUDP, len(ab)-20))
	x := ^sum
	spec.payload[4], spec.payload[5] = byte(x>>8), byte(x)
	b := spec.build(t)
	if r := a.FromSite(b, nil); r.Action != ToOverlay {
		t.Fatal(r.Reason)
	}
	if got := get16(b, 26); got != 0xffff {
		t.Fatalf("UDP checksum %#04x, want 0xffff", got)
	}
	verify(t, b)
}

func TestIPv4OptionsSurvive(t *testing.T) {
	w := newWorld(t)
	spec := tcpTo(clientA, vipNginx, 8080)
	spec.opts = []layers.IPv4Option{{OptionType: 1, OptionLength: 1}, {OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}
	in := spec.build(t)
	if in[0]&0xf != 7 {
		t.Fatalf("test packet IHL %d", in[0]&0xf)
	}
	atS := w.toService(t, in)
	if atS == nil {
		t.Fatal("dropped")
	}
	if !bytes.Equal(atS[20:28], in[20:28]) || !bytes.Equal(atS[28:], in[28:28+4]) && get16(atS, 28) != 40000 {
		t.Fatalf("options or ports damaged:\n% x\n% x", in[:40], atS[:40])
	}
	if get16(atS, 28) != 40000 || get16(atS, 30) != 8080 {
		t.Fatalf("ports read at the wrong offset")
	}
}

func TestICMPEchoTwoClientsSameID(t *testing.T) {
	w := newWorld(t)
	c1 := w.toService(t, echoTo(clientA, vipDNS, 77).build(t))
	c2 := w.toService(t, echoTo(clientA2, vipDNS, 77).build(t))
	if c1 == nil || c2 == nil {
		t.Fatal("echo dropped")
	}
	if srcOf(c1) == srcOf(c2) {
		t.Fatalf("two clients share presence %s", srcOf(c1))
	}
	r2 := w.toClient(t, mirror(c2))
	r1 := w.toClient(t, mirror(c1))
	if r1 == nil || r2 == nil || dstOf(r1) != clientA || dstOf(r2) != clientA2 || srcOf(r1) != vipDNS {
		t.Fatalf("replies went wrong: %v %v", r1 != nil, r2 != nil)
	}
	if r1[20] != icmpEchoReply {
		t.Fatal("not an echo reply")
	}
}

func TestICMPEchoDeniedClient(t *testing.T) {
	w := newWorld(t)
	if w.toService(t, echoTo(clientA2, vipNginx, 1).build(t)) != nil || w.lastA.Reason != ReasonDeniedClient {
		t.Fatalf("echo from a denied client: %v", w.lastA.Reason)
	}
}

// icmpErr builds an ICMP error (typ, code) from src to dst quoting q (whole or cut).
func icmpErr(t testing.TB, src, dst netip.Addr, typ, code uint8, q []byte) []byte {
	p := pk{src: src, dst: dst, proto: layers.IPProtocolICMPv4, icmpType: typ, payload: q}
	b := p.build(t)
	// gopacket put Id/Seq in the rest-of-header; errors carry zeros (or the MTU).
	put32(b, 24, 0)
	put16(b, 22, 0)
	put16(b, 22, pkttest.Checksum(b[20:], 0))
	b[21] = code
	put16(b, 22, 0)
	put16(b, 22, pkttest.Checksum(b[20:], 0))
	return b
}

func TestICMPErrorPortUnreachableFromService(t *testing.T) {
	w := newWorld(t)
	atS := w.toService(t, udpTo(clientA, vipDNS, 53).build(t))
	// The dns host answers "port unreachable", quoting the whole datagram.
	e := icmpErr(t, dnsIP, srcOf(atS), 3, 3, atS)
	got := w.toClient(t, e)
	if got == nil {
		t.Fatalf("error dropped: A %v B %v", w.lastA.Reason, w.lastB.Reason)
	}
	if srcOf(got) != vipDNS || dstOf(got) != clientA {
		t.Fatalf("outer %s -> %s", srcOf(got), dstOf(got))
	}
	if addrAt(got, 28+12) != clientA || addrAt(got, 28+16) != vipDNS {
		t.Fatalf("quoted %s -> %s", addrAt(got, 40), addrAt(got, 44))
	}
}

func TestICMPErrorFragNeededOnly8Bytes(t *testing.T) {
	w := newWorld(t)
	atS := w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	// A router at site-b (not the service) says "fragmentation needed", quoting the
	// header and only 8 bytes of TCP.
	e := icmpErr(t, ma("10.0.0.1"), srcOf(atS), 3, 4, atS[:28])
	put16(e, 26, 1300) // next-hop MTU
	put16(e, 22, 0)
	put16(e, 22, pkttest.Checksum(e[20:], 0))
	got := w.toClient(t, e)
	if got == nil {
		t.Fatalf("dropped: A %v B %v", w.lastA.Reason, w.lastB.Reason)
	}
	if srcOf(got) != vipNginx || dstOf(got) != clientA || addrAt(got, 40) != clientA || addrAt(got, 44) != vipNginx {
		t.Fatal("addresses not translated")
	}
	if get16(got, 26) != 1300 || got[21] != 4 {
		t.Fatal("MTU / code lost")
	}
}

func TestICMPErrorTimeExceededFromHub(t *testing.T) {
	w := newWorld(t)
	out := tcpTo(clientA, vipNginx, 8080).build(t)
	if r := w.a.FromSite(out, nil); r.Action != ToOverlay {
		t.Fatal(r.Reason)
	}
	oc := srcOf(out)
	e := icmpErr(t, ovHub, oc, 11, 0, out[:28])
	if r := w.a.FromOverlay(e, nil); r.Action != ToSite {
		t.Fatal(r.Reason)
	}
	verify(t, e)
	if srcOf(e) != vipNginx || dstOf(e) != clientA || addrAt(e, 40) != clientA || addrAt(e, 44) != vipNginx {
		t.Fatal("not translated")
	}
}

func TestICMPErrorParamProblemAtServiceGateway(t *testing.T) {
	w := newWorld(t)
	atS := w.toService(t, udpTo(clientA, vipDNS, 53).build(t))
	reply := mirror(atS)
	if r := w.b.FromSite(reply, nil); r.Action != ToOverlay {
		t.Fatal(r.Reason)
	}
	// The hub reports a parameter problem about B's reply; B translates it to the service.
	e := icmpErr(t, ovHub, ovDNS, 12, 0, reply)
	if r := w.b.FromOverlay(e, nil); r.Action != ToSite {
		t.Fatal(r.Reason)
	}
	verify(t, e)
	if dstOf(e) != dnsIP || srcOf(e) != srcOf(atS) || addrAt(e, 40) != dnsIP {
		t.Fatalf("got %s -> %s", srcOf(e), dstOf(e))
	}
}

func TestICMPErrorNoMappingDropped(t *testing.T) {
	w := newWorld(t)
	fake := udpTo(ma("172.16.5.200"), dnsIP, 53).build(t) // presence .200 leased to nobody
	e := icmpErr(t, dnsIP, ma("172.16.5.200"), 3, 3, fake)
	if r := w.b.FromSite(e, nil); r.Action != Drop || r.Reason != ReasonICMPNoMapping {
		t.Fatalf("got %v %v", r.Action, r.Reason)
	}
	// An error not addressed to the quoted packet's source.
	e2 := icmpErr(t, dnsIP, ma("172.16.5.201"), 3, 3, fake)
	if r := w.b.FromSite(e2, nil); r.Reason != ReasonICMPMismatch {
		t.Fatalf("got %v", r.Reason)
	}
}

// fragment cuts a built packet into a fragment with the given L3 payload range.
func fragment(full []byte, from, to int, mf bool) []byte {
	ihl := int(full[0]&0xf) * 4
	b := append(append([]byte(nil), full[:ihl]...), full[ihl+from:ihl+to]...)
	put16(b, 2, uint16(len(b)))
	ff := uint16(from / 8)
	if mf {
		ff |= 0x2000
	}
	put16(b, 6, ff)
	put16(b, 10, 0)
	put16(b, 10, pkttest.Checksum(b[:ihl], 0))
	return b
}

func TestFragments(t *testing.T) {
	w := newWorld(t)
	spec := udpTo(clientA, vipDNS, 53)
	spec.id = 4242
	spec.payload = bytes.Repeat([]byte("x"), 100)
	full := spec.build(t)
	first, second := fragment(full, 0, 56, true), fragment(full, 56, 108, false)
	if r := w.a.FromSite(first, nil); r.Action != ToOverlay {
		t.Fatal(r.Reason)
	}
	if r := w.a.FromSite(second, nil); r.Action != ToOverlay {
		t.Fatalf("later fragment: %v", r.Reason)
	}
	if srcOf(first) != srcOf(second) || dstOf(second) != ovDNS || pkttest.Checksum(second[:20], 0) != 0 {
		t.Fatal("later fragment not mapped like its first")
	}
	// Reassembled, the datagram's UDP checksum verifies.
	re := append(append([]byte(nil), first[:20]...), first[20:]...)
	re = append(re, second[20:]...)
	put16(re, 2, uint16(len(re)))
	put16(re, 6, 0)
	put16(re, 10, 0)
	put16(re, 10, pkttest.Checksum(re[:20], 0))
	verify(t, re)

	t.Run("later without first", func(t *testing.T) {
		spec.id = 999
		f := fragment(spec.build(t), 56, 108, false)
		if r := w.a.FromSite(f, nil); r.Reason != ReasonFragmentNoMapping {
			t.Fatal(r.Reason)
		}
	})
	t.Run("tiny first", func(t *testing.T) {
		tspec := tcpTo(clientA, vipNginx, 8080)
		f := fragment(tspec.build(t), 0, 8, true)
		if r := w.a.FromSite(f, nil); r.Reason != ReasonFragmentTiny {
			t.Fatal(r.Reason)
		}
	})
	t.Run("overlap", func(t *testing.T) {
		tspec := tcpTo(clientA, vipNginx, 8080)
		tspec.payload = make([]byte, 64)
		f := fragment(tspec.build(t), 8, 40, false)
		if r := w.a.FromSite(f, nil); r.Reason != ReasonFragmentOverlap {
			t.Fatal(r.Reason)
		}
	})
	t.Run("denied first: later dropped", func(t *testing.T) {
		tspec := tcpTo(clientA2, vipNginx, 8080)
		tspec.id, tspec.payload = 5, make([]byte, 64)
		full := tspec.build(t)
		w.a.FromSite(fragment(full, 0, 40, true), nil)
		if r := w.a.FromSite(fragment(full, 40, 84, false), nil); r.Reason != ReasonFragmentNoMapping {
			t.Fatal(r.Reason)
		}
	})
	t.Run("policy changed between fragments", func(t *testing.T) {
		tspec := tcpTo(clientA, vipNginx, 8080)
		tspec.id, tspec.payload = 6, make([]byte, 64)
		full := tspec.build(t)
		w.a.FromSite(fragment(full, 0, 40, true), nil)
		if err := w.a.Apply(snapA()); err != nil {
			t.Fatal(err)
		}
		if r := w.a.FromSite(fragment(full, 40, 84, false), nil); r.Reason != ReasonFragmentStale {
			t.Fatal(r.Reason)
		}
	})
}

func TestMSSClamp(t *testing.T) {
	for _, odd := range []bool{false, true} {
		w := newWorld(t)
		syn := tcpTo(clientA, vipNginx, 8080)
		syn.syn, syn.ack, syn.mss, syn.mssOdd = true, false, 1460, odd
		atS := w.toService(t, syn.build(t))
		mssOff := 20 + 20 + 2
		if odd {
			mssOff++
		}
		if got := get16(atS, mssOff); got != 1380 {
			t.Fatalf("odd=%v: SYN MSS %d, want 1380", odd, got)
		}
		// SYN-ACK from the service with MSS 8960 (jumbo LAN) is clamped too.
		sa := pk{src: nginxIP, dst: srcOf(atS), proto: layers.IPProtocolTCP, sport: 8080, dport: 40000, syn: true, ack: true, mss: 8960, mssOdd: odd}
		back := w.toClient(t, sa.build(t))
		if back == nil || get16(back, mssOff) != 1380 {
			t.Fatalf("odd=%v: SYN-ACK not clamped", odd)
		}
	}
	// A smaller MSS is left alone; MTU is configurable.
	w := newWorld(t, func(c *Config) { c.MTU = 1300 })
	syn := tcpTo(clientA, vipNginx, 8080)
	syn.syn, syn.mss = true, 1200
	if atS := w.toService(t, syn.build(t)); get16(atS, 42) != 1200 {
		t.Fatal("smaller MSS changed")
	}
	syn.mss, syn.sport = 1460, 40002
	if atS := w.toService(t, syn.build(t)); get16(atS, 42) != 1260 {
		t.Fatalf("MSS %d, want 1260 for MTU 1300", get16(atS, 42))
	}
}

func TestTTLExpiry(t *testing.T) {
	w := newWorld(t)
	spec := tcpTo(clientA, vipNginx, 8080)
	spec.ttl = 1
	in := spec.build(t)
	b := append([]byte(nil), in...)
	r := w.a.FromSite(b, w.reply)
	if r.Action != Drop || r.Reason != ReasonTTLExpired || r.ReplyLen == 0 || r.ReplyAction != ToSite {
		t.Fatalf("got %+v", r)
	}
	rep := w.reply[:r.ReplyLen]
	verify(t, rep)
	if rep[20] != 11 || srcOf(rep) != vipNginx || dstOf(rep) != clientA || !bytes.Equal(rep[28:], in[:len(rep)-28]) {
		t.Fatalf("bad time-exceeded % x", rep)
	}
	// TTL 2 passes A (→1) and expires at B... which forwards only if > 1; B answers from
	// the service's overlay address.
	spec.ttl = 2
	b = spec.build(t)
	w.a.FromSite(b, nil)
	if b[8] != 1 {
		t.Fatal("TTL not decremented")
	}
	if r := w.b.FromOverlay(b, w.reply); r.Reason != ReasonTTLExpired || r.ReplyAction != ToOverlay || srcOf(w.reply) != ovNginx {
		t.Fatalf("B: %+v", r)
	}
}

func TestDeniedAndReject(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.ICMPBurst = 2; c.ICMPRate = 1 })
	mk := func() []byte { return tcpTo(clientA2, vipNginx, 8080).build(t) }
	r := w.a.FromSite(mk(), w.reply)
	if r.Reason != ReasonDeniedClient || r.ReplyLen == 0 {
		t.Fatalf("got %+v", r)
	}
	rep := w.reply[:r.ReplyLen]
	verify(t, rep)
	if rep[20] != 3 || rep[21] != 13 || srcOf(rep) != vipNginx || dstOf(rep) != clientA2 {
		t.Fatal("not admin-prohibited from the VIP")
	}
	// Rate limit: the burst runs out, then one per second.
	n := 1
	for i := 0; i < 10; i++ {
		if w.a.FromSite(mk(), w.reply).ReplyLen > 0 {
			n++
		}
	}
	if n > 4 {
		t.Fatalf("%d rejects sent in a burst of 11", n)
	}
	w.clk.Advance(5 * time.Second)
	if w.a.FromSite(mk(), w.reply).ReplyLen == 0 {
		t.Fatal("no reject after the limiter refilled")
	}
	if drops(w.a, ReasonDeniedClient) != 12 {
		t.Fatalf("denied counter %d", drops(w.a, ReasonDeniedClient))
	}
	// Wrong port.
	if r := w.a.FromSite(tcpTo(clientA, vipNginx, 22).build(t), w.reply); r.Reason != ReasonDeniedPort {
		t.Fatal(r.Reason)
	}
	// RejectDenied off.
	off := false
	q := newWorld(t, func(c *Config) { c.RejectDenied = &off })
	if r := q.a.FromSite(mk(), q.reply); r.ReplyLen != 0 || r.Reason != ReasonDeniedClient {
		t.Fatalf("got %+v", r)
	}
	// At the service's gateway: a site that is not allowed (the hub's own prefix).
	b := tcpTo(ma("100.64.0.77"), ovNginx, 8080).build(t)
	if r := w.b.FromOverlay(b, w.reply); r.Reason != ReasonDeniedClient {
		t.Fatal(r.Reason)
	}
	// From an overlay address of no gateway.
	b = tcpTo(ma("100.65.0.77"), ovNginx, 8080).build(t)
	if r := w.b.FromOverlay(b, w.reply); r.Reason != ReasonDeniedSource {
		t.Fatal(r.Reason)
	}
}

func TestRevocationStopsOpenConnection(t *testing.T) {
	w := newWorld(t)
	atS := w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	if atS == nil {
		t.Fatal("dropped")
	}
	s := snapA()
	s.Revision = 2
	s.VIPs[0].AllowedClients = nil
	if err := w.a.Apply(s); err != nil {
		t.Fatal(err)
	}
	// Nothing of the flow passes any more: its segments become resets (reset_test.go).
	if got := w.toClient(t, mirror(atS)); w.lastA.Reason != ReasonDeniedClient || got == nil || verifyRST(got) != "" {
		t.Fatalf("reply after revocation: %v", w.lastA.Reason)
	}
	if got := w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t)); got == nil || verifyRST(got) != "" {
		t.Fatal("packet after revocation passed")
	}
	// And at the service's side.
	w2 := newWorld(t)
	atS = w2.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	sb := snapB()
	sb.Hosted[0].AllowedSites, sb.Hosted[0].AllowedPrefixes = nil, nil
	if err := w2.b.Apply(sb); err != nil {
		t.Fatal(err)
	}
	if got := w2.toClient(t, mirror(atS)); w2.lastB.Reason != ReasonDeniedClient || got == nil || verifyRST(got) != "" {
		t.Fatalf("service reply after revocation: %v", w2.lastB.Reason)
	}
	// With resets off, the segments are dropped.
	off := false
	w3 := newWorld(t, func(c *Config) { c.ResetRevoked = &off })
	atS = w3.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	if err := w3.a.Apply(s); err != nil {
		t.Fatal(err)
	}
	if w3.toClient(t, mirror(atS)) != nil || w3.lastA.Reason != ReasonDeniedClient {
		t.Fatalf("reply after revocation: %v", w3.lastA.Reason)
	}
}

func TestLeasesCarryOverAndExpire(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.ClientLeaseIdle = time.Minute; c.LeaseQuiet = 10 * time.Minute })
	out := tcpTo(clientA, vipNginx, 8080).build(t)
	w.a.FromSite(out, nil)
	oc := srcOf(out)
	s := snapA()
	s.Revision = 2
	if err := w.a.Apply(s); err != nil {
		t.Fatal(err)
	}
	out2 := tcpTo(clientA, vipNginx, 8080).build(t)
	w.a.FromSite(out2, nil)
	if srcOf(out2) != oc {
		t.Fatal("lease did not carry over the swap")
	}
	// Replies refresh the lease.
	w.clk.Advance(50 * time.Second)
	if r := w.a.FromOverlay(mirror(out2), nil); r.Action != ToSite {
		t.Fatal(r.Reason)
	}
	w.clk.Advance(50 * time.Second)
	if r := w.a.FromOverlay(mirror(out2), nil); r.Action != ToSite {
		t.Fatal("refreshed lease expired", r.Reason)
	}
	// Idle past the timeout: a late reply finds no mapping.
	w.clk.Advance(2 * time.Minute)
	if r := w.a.FromOverlay(mirror(out2), nil); r.Reason != ReasonNoMapping {
		t.Fatal(r.Reason)
	}
	if st := w.a.Stats().ClientPool; st.InUse != 0 || st.Quiet != 1 {
		t.Fatalf("pool %+v", st)
	}
}

func TestPoolExhausted(t *testing.T) {
	clk := newClock()
	s := snapB()
	s.VPCIDR, s.VPAddr = mp("172.16.5.0/29"), ma("172.16.5.1") // presence pool .4-.6: 3 addresses
	b := newEngine(t, s, clk)
	reply := make([]byte, 1500)
	for i := 0; i < 3; i++ {
		p := tcpTo(netip.AddrFrom4([4]byte{100, 64, 6, byte(i + 1)}), ovNginx, 8080).build(t)
		if r := b.FromOverlay(p, reply); r.Action != ToSite {
			t.Fatal(r.Reason)
		}
	}
	p := tcpTo(ma("100.64.6.9"), ovNginx, 8080).build(t)
	r := b.FromOverlay(p, reply)
	if r.Reason != ReasonPoolExhausted || r.ReplyLen == 0 || r.ReplyAction != ToOverlay || reply[21] != 1 {
		t.Fatalf("got %+v", r)
	}
	if st := b.Stats().PresencePool; st.Size != 3 || st.InUse != 3 {
		t.Fatalf("pool %+v", st)
	}
}

func TestSameSiteHairpin(t *testing.T) {
	clk := newClock()
	a := newEngine(t, snapA(), clk)
	b := tcpTo(clientA, vipWeb, 80).build(t)
	if r := a.FromSite(b, nil); r.Action != ToSite {
		t.Fatal(r.Reason)
	}
	verify(t, b)
	p := srcOf(b)
	if !mp("192.168.0.128/25").Contains(p) || dstOf(b) != webIP {
		t.Fatalf("%s -> %s", p, dstOf(b))
	}
	rep := mirror(b)
	if r := a.FromSite(rep, nil); r.Action != ToSite {
		t.Fatal(r.Reason)
	}
	verify(t, rep)
	if srcOf(rep) != vipWeb || dstOf(rep) != clientA {
		t.Fatalf("%s -> %s", srcOf(rep), dstOf(rep))
	}
	if r := a.FromSite(tcpTo(clientA2, vipWeb, 80).build(t), nil); r.Reason != ReasonDeniedClient {
		t.Fatal(r.Reason)
	}
}

func TestOwnControlTrafficAndStrays(t *testing.T) {
	clk := newClock()
	a := newEngine(t, snapA(), clk, func(c *Config) { c.ControlPeer = ovHub })
	b := tcpTo(ovA, ovHub, 7443).build(t)
	in := append([]byte(nil), b...)
	if r := a.FromSite(b, nil); r.Action != ToOverlay || !bytes.Equal(b, in) {
		t.Fatalf("own traffic: %v", r.Reason)
	}
	b = mirror(in)
	in = append([]byte(nil), b...)
	if r := a.FromOverlay(b, nil); r.Action != ToSite || !bytes.Equal(b, in) {
		t.Fatal(r.Reason)
	}
	// Only the cloud is the control peer: another gateway cannot reach this gateway's
	// overlay IP (even where a VIP would otherwise match), and the overlay IP sends to
	// nobody else. Denials are answered like every other denial.
	reply := make([]byte, 1500)
	for _, c := range []struct {
		name     string
		fromSite bool
		pkt      []byte
	}{
		{"probe from another gateway", false, tcpTo(ovB, ovA, 22).build(t)},
		{"overlay IP to another gateway", true, tcpTo(ovA, ovB, 22).build(t)},
		{"overlay IP to a VIP", true, tcpTo(ovA, vipNginx, 8080).build(t)},
	} {
		var r Result
		if c.fromSite {
			r = a.FromSite(c.pkt, reply)
		} else {
			r = a.FromOverlay(c.pkt, reply)
		}
		if r.Action != Drop || r.Reason != ReasonDeniedControl || r.ReplyLen == 0 {
			t.Errorf("%s: %v %v reply %d", c.name, r.Action, r.Reason, r.ReplyLen)
		}
		want := ToSite
		if !c.fromSite {
			want = ToOverlay
		}
		if r.ReplyAction != want || reply[20] != 3 || reply[21] != 13 {
			t.Errorf("%s: reply %v type %d code %d", c.name, r.ReplyAction, reply[20], reply[21])
		}
	}
	if got := a.Stats().Drops["denied-control"]; got != 3 {
		t.Errorf("denied-control = %d, want 3", got)
	}
	// Without a control rule the overlay IP carries nothing.
	none := newEngine(t, snapA(), clk)
	if r := none.FromSite(tcpTo(ovA, ovHub, 7443).build(t), nil); r.Reason != ReasonDeniedControl {
		t.Errorf("no control rule: %v", r.Reason)
	}
	if r := a.FromSite(tcpTo(clientA, ovHub, 7443).build(t), nil); r.Reason != ReasonDeniedOverlay {
		t.Fatal(r.Reason)
	}
	if r := a.FromSite(tcpTo(clientA, ma("8.8.8.8"), 53).build(t), nil); r.Reason != ReasonDeniedNoRoute {
		t.Fatal(r.Reason)
	}
	if r := a.FromOverlay(tcpTo(ovHub, ma("100.64.8.9"), 1).build(t), nil); r.Reason != ReasonNotForUs {
		t.Fatal(r.Reason)
	}
	// A reply to a leased address that does not come from the service.
	out := tcpTo(clientA, vipNginx, 8080).build(t)
	a.FromSite(out, nil)
	fake := tcpTo(ma("100.64.8.77"), srcOf(out), 40000).build(t)
	if r := a.FromOverlay(fake, nil); r.Reason != ReasonNotServiceReply {
		t.Fatal(r.Reason)
	}
}

// TestHubControlPort: the hub's overlay IP serves only its TCP sync port.
func TestHubControlPort(t *testing.T) {
	h := newEngine(t, snapHub(), newClock(), func(c *Config) { c.ControlPort = 7443 })
	if r := h.FromOverlay(tcpTo(ovA, ovHub, 7443).build(t), nil); r.Action != ToSite {
		t.Fatalf("sync request: %v", r.Reason)
	}
	if r := h.FromSite(mirror(tcpTo(ovA, ovHub, 7443).build(t)), nil); r.Action != ToOverlay {
		t.Fatalf("sync answer: %v", r.Reason)
	}
	for name, c := range map[string]struct {
		fromSite bool
		pkt      []byte
	}{
		"tcp to another port":    {false, tcpTo(ovA, ovHub, 22).build(t)},
		"udp to the sync port":   {false, udpTo(ovA, ovHub, 7443).build(t)},
		"tcp from another port":  {true, mirror(tcpTo(ovA, ovHub, 22).build(t))},
		"echo to the overlay IP": {false, echoTo(ovA, ovHub, 1).build(t)},
	} {
		var r Result
		if c.fromSite {
			r = h.FromSite(c.pkt, nil)
		} else {
			r = h.FromOverlay(c.pkt, nil)
		}
		if r.Reason != ReasonDeniedControl {
			t.Errorf("%s: %v %v", name, r.Action, r.Reason)
		}
	}
}

// TestHubForwardsNoDecryptedTraffic: edges reach each other on their own WireGuard
// sessions (the hub relays only their ciphertext), so a packet WireGuard decrypted at the
// hub for another gateway's overlay prefix is dropped as not for this gateway, whatever it
// carries, and counted.
func TestHubForwardsNoDecryptedTraffic(t *testing.T) {
	w := newWorld(t)
	for name, pkt := range map[string][]byte{
		"request to a service":                    tcpTo(ovA, ovNginx, 8080).build(t),
		"reply from a service":                    mirror(tcpTo(ovA, ovNginx, 8080).build(t)),
		"echo":                                    echoTo(ovA, ovNginx, 3).build(t),
		"to another edge's IP":                    tcpTo(ovA, ovB, 7443).build(t),
		"outside every prefix":                    tcpTo(ovA, ma("100.64.200.1"), 8080).build(t),
		"from an unknown address":                 udpTo(ma("100.64.10.1"), ovDNS, 53).build(t),
		"ICMP error about another gateway's flow": icmpErr(t, ovA, ovB, 3, 3, udpTo(ovB, ma("10.9.9.9"), 53).build(t)),
	} {
		before := drops(w.hub, ReasonNotForUs)
		in := append([]byte(nil), pkt...)
		r := w.hub.FromOverlay(pkt, w.reply)
		if r.Action != Drop || r.Reason != ReasonNotForUs || r.ReplyLen != 0 {
			t.Errorf("%s: %v %v reply %d", name, r.Action, r.Reason, r.ReplyLen)
		}
		if !bytes.Equal(pkt, in) {
			t.Errorf("%s: dropped packet changed", name)
		}
		if drops(w.hub, ReasonNotForUs) != before+1 {
			t.Errorf("%s: drop not counted as %s", name, ReasonNotForUs)
		}
	}
	// The hub's own control traffic still passes.
	if r := w.hub.FromOverlay(tcpTo(ovA, ovHub, 7443).build(t), w.reply); r.Action != ToSite {
		t.Fatalf("control: %v %v", r.Action, r.Reason)
	}
}

func TestMalformed(t *testing.T) {
	gspec := tcpTo(clientA, vipNginx, 8080)
	gspec.payload = make([]byte, 40)
	good := gspec.build(t)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	fixTL := func(b []byte) []byte { put16(b, 2, uint16(len(b))); return b }
	cases := []struct {
		name string
		pkt  []byte
		want Reason
	}{
		{"empty", nil, ReasonTruncated},
		{"short", good[:10], ReasonTruncated},
		{"ihl<5", mod(func(b []byte) []byte { b[0] = 0x44; return b }), ReasonBadIHL},
		{"ihl past buffer", mod(func(b []byte) []byte { b[0] = 0x4f; return b[:40] }), ReasonBadIHL},
		{"total length long", mod(func(b []byte) []byte { put16(b, 2, uint16(len(b)+1)); return b }), ReasonBadTotalLength},
		{"total length short", mod(func(b []byte) []byte { put16(b, 2, 30); return b }), ReasonBadTotalLength},
		{"ipv6", mod(func(b []byte) []byte { b[0] = 0x60; return b }), ReasonIPv6},
		{"version 7", mod(func(b []byte) []byte { b[0] = 0x75; return b }), ReasonBadVersion},
		{"tcp offset < 5", mod(func(b []byte) []byte { b[32] = 0x30; return b }), ReasonBadTCPOffset},
		{"tcp offset past", mod(func(b []byte) []byte { b[32] = 0xf0; return fixTL(b[:70]) }), ReasonBadTCPOffset},
		{"tcp truncated", mod(func(b []byte) []byte { return fixTL(b[:30]) }), ReasonTruncated},
		{"udp length", mod(func(b []byte) []byte { b[9] = ip4.ProtoUDP; put16(b, 24, 3); return b }), ReasonBadUDPLength},
		{"short icmp", mod(func(b []byte) []byte { b[9] = ip4.ProtoICMP; return fixTL(b[:24]) }), ReasonShortICMP},
		{"icmp error short quote", mod(func(b []byte) []byte { b[9] = ip4.ProtoICMP; b[20] = 3; return fixTL(b[:40]) }), ReasonShortICMP},
		{"icmp error quoting ipv6", mod(func(b []byte) []byte { b[9] = ip4.ProtoICMP; b[20] = 3; b[28] = 0x60; return b }), ReasonBadICMPInner},
		{"icmp timestamp", mod(func(b []byte) []byte { b[9] = ip4.ProtoICMP; b[20] = 13; return b }), ReasonICMPUnsupported},
	}
	clk := newClock()
	a := newEngine(t, snapA(), clk)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := drops(a, c.want)
			r := a.FromSite(c.pkt, make([]byte, 1500))
			if r.Action != Drop || r.Reason != c.want || r.ReplyLen != 0 {
				t.Fatalf("got %+v, want drop %v", r, c.want)
			}
			if drops(a, c.want) != before+1 {
				t.Fatal("counter not bumped")
			}
		})
	}
}

func TestNoSnapshotDenies(t *testing.T) {
	e := NewEngine(Config{})
	if r := e.FromSite(tcpTo(clientA, vipNginx, 8080).build(t), nil); r.Reason != ReasonNoSnapshot {
		t.Fatal(r.Reason)
	}
	if err := e.Apply(&api.Snapshot{}); err == nil {
		t.Fatal("empty snapshot applied")
	}
}

func TestStats(t *testing.T) {
	w := newWorld(t)
	w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	s := w.a.Stats()
	if s.FromSite.Packets != 1 || s.FromSite.Bytes == 0 || s.ClientPool.InUse != 1 || s.Revision != 1 {
		t.Fatalf("%+v", s)
	}
}

// The accept path allocates nothing.
func TestAcceptPathAllocatesNothing(t *testing.T) {
	w := newWorld(t)
	out := tcpTo(clientA, vipNginx, 8080).build(t)
	atS := w.toService(t, out)
	udp := udpTo(clientA, vipDNS, 53).build(t)
	udpS := w.toService(t, udp)
	icmp := icmpErr(t, dnsIP, srcOf(udpS), 3, 3, udpS)
	echo := echoTo(clientA, vipDNS, 5).build(t)
	echoS := w.toService(t, echo)
	localEcho := echoTo(clientA, vipWeb, 6).build(t)
	localEchoS := append([]byte(nil), localEcho...)
	w.a.FromSite(localEchoS, nil)
	buf := make([]byte, 1500)
	reply := make([]byte, 1500)
	cases := []struct {
		name string
		e    *Engine
		site bool
		pkt  []byte
	}{
		{"outbound tcp", w.a, true, out},
		{"inbound tcp", w.b, false, func() []byte { b := append([]byte(nil), out...); w.a.FromSite(b, nil); return b }()},
		{"reply tcp", w.b, true, mirror(atS)},
		{"udp", w.a, true, udp},
		{"icmp error", w.b, true, icmp},
		{"echo request at the service's gateway", w.b, false, func() []byte { b := append([]byte(nil), echo...); w.a.FromSite(b, nil); return b }()},
		{"echo reply", w.b, true, mirror(echoS)},
		{"same-site echo request", w.a, true, localEcho},
		{"same-site echo reply", w.a, true, mirror(localEchoS)},
	}
	for _, c := range cases {
		n := testing.AllocsPerRun(1000, func() {
			b := buf[:len(c.pkt)]
			copy(b, c.pkt)
			var r Result
			if c.site {
				r = c.e.FromSite(b, reply)
			} else {
				r = c.e.FromOverlay(b, reply)
			}
			if r.Action == Drop {
				panic(r.Reason.String())
			}
		})
		if n != 0 {
			t.Errorf("%s: %v allocs per packet", c.name, n)
		}
	}
}

// Packets on several goroutines while snapshots are swapped in: no race, no lost lease.
func TestConcurrentApplyAndTraffic(t *testing.T) {
	w := newWorld(t)
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			spec := udpTo(netip.AddrFrom4([4]byte{10, 0, 1, byte(g + 1)}), vipDNS, 53)
			pkt := spec.build(t)
			buf := make([]byte, len(pkt))
			for i := 0; i < 3000; i++ {
				copy(buf, pkt)
				if r := w.a.FromSite(buf, nil); r.Action != ToOverlay {
					t.Errorf("dropped: %v", r.Reason)
					return
				}
			}
		}(g)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	rev := int64(1)
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
			rev++
			s := snapA()
			s.Revision = rev
			if err := w.a.Apply(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := w.a.Stats(); st.ClientPool.InUse != 3 || st.Revision != rev || st.FromSite.Packets != 9000 {
		t.Fatalf("%+v", st)
	}
}

func TestFragmentTableBoundAndExpiry(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.FragmentTable = 4; c.FragmentTimeout = time.Second })
	mk := func(id uint16) []byte {
		s := udpTo(clientA, vipDNS, 53)
		s.id, s.payload = id, make([]byte, 100)
		return s.build(t)
	}
	for id := uint16(1); id <= 10; id++ {
		if r := w.a.FromSite(fragment(mk(id), 0, 56, true), nil); r.Action != ToOverlay {
			t.Fatal(r.Reason)
		}
	}
	if n := len(w.a.frags.m); n > 4 {
		t.Fatalf("fragment table holds %d > 4", n)
	}
	// The newest first fragment is always remembered; it expires after the timeout.
	if r := w.a.FromSite(fragment(mk(10), 56, 108, false), nil); r.Action != ToOverlay {
		t.Fatal(r.Reason)
	}
	w.clk.Advance(2 * time.Second)
	if r := w.a.FromSite(fragment(mk(10), 56, 108, false), nil); r.Reason != ReasonFragmentNoMapping {
		t.Fatal(r.Reason)
	}
}

func TestQuotedPacketsWeDoNotTranslate(t *testing.T) {
	w := newWorld(t)
	atS := w.toService(t, udpTo(clientA, vipDNS, 53).build(t))
	cases := []struct {
		name string
		mod  func(q []byte)
		want Reason
	}{
		{"quoted later fragment", func(q []byte) { put16(q, 6, 3) }, ReasonBadICMPInner},
		{"quoted GRE", func(q []byte) { q[9] = 47 }, ReasonICMPUnsupported},
		{"quoted ICMP error", func(q []byte) { q[9] = ip4.ProtoICMP; q[20] = 3 }, ReasonICMPUnsupported},
		{"quoted IHL < 5", func(q []byte) { q[0] = 0x43 }, ReasonBadICMPInner},
	}
	for _, c := range cases {
		q := append([]byte(nil), atS...)
		c.mod(q)
		e := icmpErr(t, dnsIP, srcOf(atS), 3, 3, q)
		if r := w.b.FromSite(e, nil); r.Reason != c.want {
			t.Errorf("%s: %v, want %v", c.name, r.Reason, c.want)
		}
	}
}

func TestSweepRevisionNames(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.ClientLeaseIdle = time.Minute })
	w.toService(t, udpTo(clientA, vipDNS, 53).build(t))
	if w.a.Revision() != 1 || NewEngine(Config{}).Revision() != 0 {
		t.Fatal("revision")
	}
	w.clk.Advance(2 * time.Minute)
	w.a.Sweep()
	if st := w.a.Stats(); st.ClientPool.InUse != 0 {
		t.Fatalf("%+v", st.ClientPool)
	}
	for r := Reason(0); r < NumReasons; r++ {
		if r.String() == "" || r.String() == "unknown" {
			t.Errorf("reason %d has no name", r)
		}
	}
	if NumReasons.String() != "unknown" || Drop.String() != "drop" || ToSite.String() != "to-site" || ToOverlay.String() != "to-overlay" || Action(9).String() != "unknown" {
		t.Error("names")
	}
}
