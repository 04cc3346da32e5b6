package nat

import (
	"testing"
	"time"

	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/pkttest"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// withSeq sets a TCP segment's SEQ and ACK and fixes its checksums.
func withSeq(b []byte, seq, ack uint32) []byte {
	ihl := int(b[0]&0xf) * 4
	put32(b, ihl+4, seq)
	put32(b, ihl+8, ack)
	fixChecksums(b)
	return b
}

// verifyRST checks that b is a well-formed TCP RST (gopacket decodes it, checksums verify).
func verifyRST(b []byte) string {
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if pkt.Layer(layers.LayerTypeIPv4) == nil || !ok {
		return "gopacket does not decode IPv4/TCP"
	}
	if !tcp.RST || tcp.SYN || tcp.FIN {
		return "not a RST"
	}
	if int(get16(b, 2)) != len(b) || pkttest.Checksum(b[:20], 0) != 0 {
		return "bad length or IPv4 checksum"
	}
	ihl := int(b[0]&0xf) * 4
	if pkttest.Checksum(b[ihl:], pkttest.Pseudo(get32(b, 12), get32(b, 16), ip4.ProtoTCP, len(b)-ihl)) != 0 {
		return "bad TCP checksum"
	}
	return ""
}

// rst decodes a RST, failing the test unless b is one.
func rst(t *testing.T, b []byte) *layers.TCP {
	t.Helper()
	if err := verifyRST(b); err != "" {
		t.Fatalf("%s\n% x", err, b)
	}
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	tcp := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	for _, c := range tcp.Payload {
		if c != 0 {
			t.Fatal("data of a revoked flow passed inside the RST")
		}
	}
	return tcp
}

// openFlow passes one segment each way between clientA and nginx; it returns the segment
// as nginx saw it.
func openFlow(t testing.TB, w *world) []byte {
	t.Helper()
	atS := w.toService(t, tcpTo(clientA, vipNginx, 8080).build(t))
	if atS == nil {
		t.Fatal("dropped before the revocation")
	}
	if w.toClient(t, mirror(atS)) == nil {
		t.Fatal("reply dropped before the revocation")
	}
	return atS
}

func revokeAtA(t *testing.T, w *world) {
	s := snapA()
	s.Revision = 2
	s.VIPs[0].AllowedClients = nil
	if err := w.a.Apply(s); err != nil {
		t.Fatal(err)
	}
}

func revokeAtB(t *testing.T, w *world) {
	s := snapB()
	s.Revision = 2
	s.Hosted[0].AllowedSites, s.Hosted[0].AllowedPrefixes = nil, nil
	if err := w.b.Apply(s); err != nil {
		t.Fatal(err)
	}
}

// The client's gateway revokes: the client's next segment resets the client (from the VIP,
// SEQ = the segment's ACK) and reaches nginx as a RST with the segment's SEQ.
func TestRevokedFlowClientSegmentResetsBothEnds(t *testing.T) {
	w := newWorld(t)
	openFlow(t, w)
	revokeAtA(t, w)
	seg := withSeq(tcpTo(clientA, vipNginx, 8080).build(t), 5000, 9000)
	atS := w.toService(t, seg)
	if w.lastA.Reason != ReasonDeniedClient || w.lastA.ReplyLen != rstLen || w.lastA.ReplyAction != ToSite {
		t.Fatalf("at A: %+v", w.lastA)
	}
	back := rst(t, w.reply[:rstLen])
	if srcOf(w.reply) != vipNginx || dstOf(w.reply) != clientA || back.SrcPort != 8080 || back.DstPort != 40000 || back.Seq != 9000 {
		t.Fatalf("RST to the client: %s:%d -> %s:%d seq %d", srcOf(w.reply), back.SrcPort, dstOf(w.reply), back.DstPort, back.Seq)
	}
	if atS == nil {
		t.Fatal("no RST reached the service")
	}
	fwd := rst(t, atS)
	if dstOf(atS) != nginxIP || fwd.Seq != 5000 || fwd.DstPort != 8080 || len(atS) != len(seg) {
		t.Fatalf("RST to nginx: -> %s:%d seq %d len %d", dstOf(atS), fwd.DstPort, fwd.Seq, len(atS))
	}
	if drops(w.a, ReasonDeniedClient) != 1 || w.a.Stats().TCPResets != 2 {
		t.Fatalf("counters: %v resets %d", w.a.Stats().Drops, w.a.Stats().TCPResets)
	}
	// The service's next segment, at A from the overlay: the same, the other way round.
	atC := w.toClient(t, withSeq(mirror(openFlowSeg(t)), 7000, 3000))
	if w.lastA.Reason != ReasonDeniedClient || w.lastA.ReplyAction != ToOverlay {
		t.Fatalf("at A from the overlay: %+v", w.lastA)
	}
	if atC == nil || dstOf(atC) != clientA || srcOf(atC) != vipNginx || rst(t, atC).Seq != 7000 {
		t.Fatal("no RST to the client for the service's segment")
	}
	toS := w.reply[:rstLen]
	if rst(t, toS).Seq != 3000 || dstOf(toS) != ovNginx {
		t.Fatalf("RST toward nginx: -> %s seq %d", dstOf(toS), rst(t, toS).Seq)
	}
	// A new connection (SYN) is refused with admin-prohibited, as before.
	syn := tcpTo(clientA, vipNginx, 8080)
	syn.syn, syn.ack = true, false
	if r := w.a.FromSite(syn.build(t), w.reply); r.Action != Drop || r.ReplyLen == 0 || w.reply[9] != ip4.ProtoICMP || w.reply[21] != 13 {
		t.Fatalf("SYN after revocation: %+v", r)
	}
}

// openFlowSeg is a segment as nginx sees it for the world's flow (addresses only matter).
func openFlowSeg(t *testing.T) []byte {
	w := newWorld(t)
	return openFlow(t, w)
}

// The service's gateway revokes: nginx's next segment resets nginx (from its presence
// address) and reaches the client as a RST from the VIP.
func TestRevokedFlowServiceSegmentResetsBothEnds(t *testing.T) {
	w := newWorld(t)
	atS := openFlow(t, w)
	revokeAtB(t, w)
	seg := withSeq(mirror(atS), 111, 222)
	atC := w.toClient(t, seg)
	if w.lastB.Reason != ReasonDeniedClient || w.lastB.ReplyAction != ToSite {
		t.Fatalf("at B: %+v", w.lastB)
	}
	back := rst(t, w.reply[:rstLen])
	if dstOf(w.reply) != nginxIP || srcOf(w.reply) != dstOf(seg) || back.Seq != 222 {
		t.Fatalf("RST to nginx: %s -> %s seq %d", srcOf(w.reply), dstOf(w.reply), back.Seq)
	}
	if atC == nil || dstOf(atC) != clientA || srcOf(atC) != vipNginx || rst(t, atC).Seq != 111 {
		t.Fatal("no RST reached the client")
	}
	// The client's segment at B (from the overlay) resets both ends too.
	w.a.Apply(snapA())
	cseg := withSeq(tcpTo(clientA, vipNginx, 8080).build(t), 333, 444)
	if toS := w.toService(t, cseg); toS == nil || dstOf(toS) != nginxIP || rst(t, toS).Seq != 333 {
		t.Fatalf("at B from the overlay: %+v", w.lastB)
	}
	toC := w.reply[:rstLen]
	if w.lastB.ReplyAction != ToOverlay || !mp("100.64.4.0/22").Contains(dstOf(toC)) || srcOf(toC) != ovNginx || rst(t, toC).Seq != 444 {
		t.Fatalf("RST toward the client: %+v, %s -> %s", w.lastB, srcOf(toC), dstOf(toC))
	}
}

func TestRevokedSameSiteFlowResets(t *testing.T) {
	clk := newClock()
	a := newEngine(t, snapA(), clk)
	reply := make([]byte, 1500)
	b := tcpTo(clientA, vipWeb, 80).build(t)
	if r := a.FromSite(b, reply); r.Action != ToSite {
		t.Fatal(r.Reason)
	}
	s := snapA()
	s.Revision = 2
	s.VIPs[2].AllowedClients = nil
	if err := a.Apply(s); err != nil {
		t.Fatal(err)
	}
	seg := withSeq(mirror(b), 10, 20) // from web, to its presence address
	r := a.FromSite(seg, reply)
	if r.Action != ToSite || r.Reason != ReasonDeniedClient || r.ReplyAction != ToSite {
		t.Fatalf("%+v", r)
	}
	if dstOf(seg) != clientA || srcOf(seg) != vipWeb || rst(t, seg).Seq != 10 {
		t.Fatalf("RST to the client: %s -> %s", srcOf(seg), dstOf(seg))
	}
	if dstOf(reply) != webIP || rst(t, reply[:rstLen]).Seq != 20 {
		t.Fatalf("RST to web: -> %s", dstOf(reply))
	}
}

// What does not get resets: a flow with no mappings, a RST, a fragment, and every segment
// when ResetRevoked is off; beyond the rate limit, the usual answer.
func TestRevokedFlowResetLimits(t *testing.T) {
	w := newWorld(t, func(c *Config) { c.ICMPRate, c.ICMPBurst = 1, 2 })
	// clientA2 never had a lease: the usual admin-prohibited.
	if r := w.a.FromSite(tcpTo(clientA2, vipNginx, 8080).build(t), w.reply); r.Action != Drop || w.reply[9] != ip4.ProtoICMP {
		t.Fatalf("unseen flow: %+v", r)
	}
	openFlow(t, w)
	revokeAtA(t, w)
	p := tcpTo(clientA, vipNginx, 8080)
	reset := p.build(t)
	reset[int(reset[0]&0xf)*4+13] = tcpRST | tcpACK
	fixChecksums(reset)
	if r := w.a.FromSite(reset, w.reply); r.Action != Drop || r.ReplyLen != 0 && w.reply[9] == ip4.ProtoTCP {
		t.Fatalf("a RST was answered with a RST: %+v", r)
	}
	p.id, p.flags, p.payload = 9, layers.IPv4MoreFragments, make([]byte, 64)
	if r := w.a.FromSite(p.build(t), w.reply); r.Action != Drop {
		t.Fatalf("fragment: %+v", r)
	}
	// Rate: a burst of 2 (the limiter is the resets' own), then one per second.
	n := 0
	for i := 0; i < 6; i++ {
		if r := w.a.FromSite(tcpTo(clientA, vipNginx, 8080).build(t), w.reply); r.Action == ToOverlay {
			n++
		} else if r.Action != Drop || r.Reason != ReasonDeniedClient {
			t.Fatalf("%+v", r)
		}
	}
	if n != 3 { // burst 2 plus the one the first token's interval allows
		t.Fatalf("%d reset pairs in a burst of 6", n)
	}
	w.clk.Advance(3 * time.Second)
	if r := w.a.FromSite(tcpTo(clientA, vipNginx, 8080).build(t), w.reply); r.Action != ToOverlay {
		t.Fatalf("no reset after the limiter refilled: %+v", r)
	}
	// Off: dropped (and admin-prohibited), as before.
	off := false
	q := newWorld(t, func(c *Config) { c.ResetRevoked = &off })
	openFlow(t, q)
	revokeAtA(t, q)
	if r := q.a.FromSite(tcpTo(clientA, vipNginx, 8080).build(t), q.reply); r.Action != Drop || q.reply[9] != ip4.ProtoICMP {
		t.Fatalf("ResetRevoked off: %+v", r)
	}
	if q.a.Stats().TCPResets != 0 {
		t.Fatal("resets counted while off")
	}
}

// UDP (and ICMP) flows of a revoked policy get admin-prohibited at their next packet.
func TestRevokedUDPGetsAdminProhibited(t *testing.T) {
	w := newWorld(t)
	if w.toService(t, udpTo(clientA, vipDNS, 53).build(t)) == nil {
		t.Fatal("dropped before the revocation")
	}
	s := snapA()
	s.Revision = 2
	s.VIPs[1].AllowSite = false
	if err := w.a.Apply(s); err != nil {
		t.Fatal(err)
	}
	r := w.a.FromSite(udpTo(clientA, vipDNS, 53).build(t), w.reply)
	if r.Action != Drop || r.ReplyLen == 0 || w.reply[20] != 3 || w.reply[21] != 13 || srcOf(w.reply) != vipDNS {
		t.Fatalf("%+v", r)
	}
}

// FuzzRevoked runs arbitrary packets through engines whose policy was revoked while flows
// held leases, so the reset path (reset.go) sees malformed and odd segments too.
func FuzzRevoked(f *testing.F) {
	w, seeds := fuzzWorld(f)
	for _, s := range seeds {
		f.Add(s)
	}
	openFlow(f, w)
	seg := tcpTo(clientA, vipNginx, 8080).build(f)
	f.Add(seg)
	f.Add(mirror(seg))
	sa := snapA()
	sa.Revision = 2
	sa.VIPs[0].AllowedClients = nil
	sb := snapB()
	sb.Revision = 2
	sb.Hosted[0].AllowedSites, sb.Hosted[0].AllowedPrefixes = nil, nil
	if err := w.a.Apply(sa); err != nil {
		f.Fatal(err)
	}
	if err := w.b.Apply(sb); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzEngine(t, w.a, true, data)
		fuzzEngine(t, w.a, false, data)
		fuzzEngine(t, w.b, true, data)
		fuzzEngine(t, w.b, false, data)
	})
}
