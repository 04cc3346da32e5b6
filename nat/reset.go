package nat

// Revoked flows fail fast. When a policy change stops a TCP flow that was passing, both of
// its ends would otherwise retransmit into silence until their own timeouts (an ICMP error
// is only a soft error for an established TCP connection). So a TCP segment that policy
// now denies, of a flow that still holds its mappings (its leases: it was passing before
// the change), is answered with two resets:
//
//   - to its sender, in the reply buffer: a RST from the address the sender talked to,
//     with the sequence number the sender expects (the segment's ACK, RFC 793 §3.4);
//   - to its other end, in place: the segment itself becomes a RST with its own sequence
//     number (what the other end expects next), payload zeroed, translated as the flow was
//     while it was allowed, so it takes the path the flow took.
//
// The decision needs no per-flow state on the packet path: the segment carries the
// sequence numbers both ends expect, and the leases say the flow was seen. A flow that
// sends nothing gets its resets at its next segment, in either direction. SYNs, RSTs,
// fragments and flows with no mappings keep the usual answer (ICMP admin-prohibited when
// Config.RejectDenied). Resets are rate-limited (one pair per token, Config.ICMPRate and
// ICMPBurst, a limiter of their own so that denied scans cannot starve them); beyond the
// limit the segment gets the usual answer.

import (
	"time"

	"github.com/egw-project/egw/internal/ip4"
)

// revokes reports whether a flow denied for r may have been allowed before a policy
// change (and so gets resets): a policy verdict at a gateway that holds the flow's
// mappings: the gateways at both ends decide their flows.
func (r Reason) revokes() bool {
	switch r {
	case ReasonDeniedClient, ReasonDeniedPort, ReasonDeniedSource:
		return true
	}
	return false
}

// rstLen is the length of a generated RST: IPv4 and TCP headers without options.
const rstLen = 40

// resetFlow turns the denied TCP segment p into a RST for its other end and writes a RST
// for its sender into reply. ok is false when the segment does not qualify (then the
// caller answers as for any denial); p is not modified in that case.
func (e *Engine) resetFlow(dir int, st *state, p *packet, f *flow, r Reason, reply []byte, now time.Time) (Result, bool) {
	if p.fragOff != 0 || p.mf || p.tcpFlags&(tcpSYN|tcpRST) != 0 || len(reply) < rstLen {
		return Result{}, false
	}
	if p.src == 0 || p.src == 0xffffffff || p.src>>28 == 0xe || p.dst>>28 == 0xe {
		return Result{}, false
	}
	ff := *f
	ff.force = true
	x, fr := e.decide(dir, st, &ff, false, now)
	if fr != ReasonOK || (x.decTTL && p.ttl <= 1) {
		return Result{}, false
	}
	if !e.rst.allow(now.UnixNano()) {
		return Result{}, false
	}
	e.drops[r].Add(1)
	e.dirs[dir].dropped.Add(1)
	e.resets.Add(2)
	n := writeRST(reply, p)
	segmentToRST(p, x.src, x.dst, x.decTTL)
	back := ToSite
	if dir == dirOverlay {
		back = ToOverlay
	}
	return Result{Action: x.action, Reason: r, ReplyLen: n, ReplyAction: back}, true
}

// writeRST writes into reply the RST that answers segment p (RFC 793 §3.4, "Reset
// Generation"): from p's destination to its source, ports swapped; SEQ = p's ACK when p
// carries one, else SEQ 0 with ACK = p's SEQ + its length. It returns the length.
func writeRST(reply []byte, p *packet) int {
	b := p.b
	l4 := b[p.l4:]
	seq, ack := get32(l4, 4), get32(l4, 8)
	r := reply[:rstLen]
	r[0], r[1] = 0x45, 0
	put16(r, 2, rstLen)
	put16(r, 4, 0)
	put16(r, 6, 0x4000) // DF
	r[8], r[9] = 64, ip4.ProtoTCP
	put16(r, 10, 0)
	put32(r, 12, p.dst)
	put32(r, 16, p.src)
	put16(r, 10, checksum(r[:20], 0))
	t := r[20:]
	put16(t, 0, p.dport)
	put16(t, 2, p.sport)
	if p.tcpFlags&tcpACK != 0 {
		put32(t, 4, ack)
		put32(t, 8, 0)
		t[13] = tcpRST
	} else {
		n := uint32(len(l4) - p.tcpHdrLen)
		if p.tcpFlags&tcpFIN != 0 {
			n++
		}
		put32(t, 4, 0)
		put32(t, 8, seq+n)
		t[13] = tcpRST | tcpACK
	}
	t[12] = 5 << 4
	put16(t, 14, 0) // window
	put16(t, 16, 0)
	put16(t, 18, 0)
	put16(t, 16, checksum(t, tcpPseudo(p.dst, p.src, rstLen-20)))
	return rstLen
}

// segmentToRST rewrites segment p in place into a RST for its destination: addresses
// src→dst (as the allowed flow was translated), flags RST|ACK (its SEQ and ACK kept),
// window 0, payload zeroed so that nothing of a revoked flow's data passes. The length is
// unchanged; the TCP checksum is recomputed.
func segmentToRST(p *packet, src, dst uint32, decTTL bool) {
	rewrite(p, src, dst, decTTL)
	b := p.b
	t := b[p.l4:]
	clear(t[p.tcpHdrLen:])
	t[13] = tcpRST | tcpACK
	put16(t, 14, 0)
	put16(t, 18, 0) // urgent pointer
	put16(t, 16, 0)
	put16(t, 16, checksum(t, tcpPseudo(src, dst, len(t))))
}

// tcpPseudo is the partial sum of the TCP pseudo-header.
func tcpPseudo(src, dst uint32, n int) uint32 {
	return src>>16 + src&0xffff + dst>>16 + dst&0xffff + uint32(ip4.ProtoTCP) + uint32(n)
}
