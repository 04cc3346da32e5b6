package nat

import "github.com/egw-project/egw/internal/ip4"

// rewrite sets the outer addresses (and decrements TTL), updating the IPv4 header
// checksum and, for an unfragmented packet or a first fragment, the TCP/UDP checksum
// (whose pseudo-header holds the addresses) incrementally. ICMP has no pseudo-header.
func rewrite(p *packet, src, dst uint32, decTTL bool) {
	b := p.b
	c := get16(b, 10)
	if src != p.src {
		c = csum32(c, p.src, src)
		put32(b, 12, src)
	}
	if dst != p.dst {
		c = csum32(c, p.dst, dst)
		put32(b, 16, dst)
	}
	if decTTL {
		w := get16(b, 8)
		c = csum16(c, w, w-0x0100)
		b[8]--
	}
	put16(b, 10, c)
	if p.fragOff != 0 || (src == p.src && dst == p.dst) {
		return
	}
	switch p.proto {
	case ip4.ProtoTCP:
		o := p.l4 + 16
		c := csum32(csum32(get16(b, o), p.src, src), p.dst, dst)
		put16(b, o, c)
	case ip4.ProtoUDP:
		o := p.l4 + 6
		if c := get16(b, o); c != 0 { // 0: no checksum, stays 0
			c = csum32(csum32(c, p.src, src), p.dst, dst)
			if c == 0 {
				c = 0xffff
			}
			put16(b, o, c)
		}
	}
}

// rewriteInner rewrites the packet quoted by an ICMP error: its source becomes src and
// its destination dst. It updates the quoted IPv4 checksum, the quoted UDP/TCP checksum
// when the quote holds it, and the ICMP checksum over all of that.
func rewriteInner(p *packet, src, dst uint32) {
	b := p.b
	in := p.in
	ic := get16(b, p.l4+2) // ICMP checksum
	oldSrc, oldDst := p.inSrc, p.inDst
	if src == oldSrc && dst == oldDst {
		return
	}
	// Quoted IPv4 header.
	oc := get16(b, in+10)
	nc := csum32(csum32(oc, oldSrc, src), oldDst, dst)
	put32(b, in+12, src)
	put32(b, in+16, dst)
	put16(b, in+10, nc)
	ic = csum32(ic, oldSrc, src)
	ic = csum32(ic, oldDst, dst)
	ic = csum16(ic, oc, nc)
	// Quoted L4 checksum (pseudo-header), when present in the quote.
	l4 := in + p.inIHL
	switch p.inProto {
	case ip4.ProtoUDP:
		o := l4 + 6
		if old := get16(b, o); old != 0 {
			n := csum32(csum32(old, oldSrc, src), oldDst, dst)
			if n == 0 {
				n = 0xffff
			}
			put16(b, o, n)
			ic = csum16(ic, old, n)
		}
	case ip4.ProtoTCP:
		if p.inL4Len >= 18 {
			o := l4 + 16
			old := get16(b, o)
			n := csum32(csum32(old, oldSrc, src), oldDst, dst)
			put16(b, o, n)
			ic = csum16(ic, old, n)
		}
	}
	put16(b, p.l4+2, ic)
}

// clampMSS lowers the MSS option of a TCP SYN (or SYN-ACK) to mss.
func clampMSS(p *packet, mss uint16) {
	b := p.b
	o := p.l4 + 20
	end := p.l4 + p.tcpHdrLen
	for o < end {
		kind := b[o]
		if kind == 0 {
			return
		}
		if kind == 1 {
			o++
			continue
		}
		if o+1 >= end {
			return
		}
		l := int(b[o+1])
		if l < 2 || o+l > end {
			return
		}
		if kind == 2 && l == 4 {
			old := get16(b, o+2)
			if old <= mss {
				return
			}
			put16(b, o+2, mss)
			co := p.l4 + 16
			c := get16(b, co)
			if (o+2-p.l4)&1 == 0 {
				c = csum16(c, old, mss)
			} else { // value straddles two checksum words: its bytes count swapped
				c = csum16(c, old<<8|old>>8, mss<<8|mss>>8)
			}
			put16(b, co, c)
			return
		}
		o += l
	}
}

// sendICMP writes an ICMP error (typ, code) from src about the packet p to p's sender
// into reply, rate-limited, and returns its length and where it goes (back the way p
// came). It writes nothing about ICMP errors, later fragments, or from/to addresses that
// must not get one (RFC 1122 3.2.2).
func (e *Engine) sendICMP(dir int, reply []byte, p *packet, typ, code uint8, src uint32, now int64) (int, Action) {
	if p.isErr || p.fragOff != 0 || src == 0 || p.src == 0 || p.src == 0xffffffff || p.src>>28 == 0xe {
		return 0, Drop
	}
	orig := p.b
	quote := len(orig)
	if quote > 548 { // keep the message within 576 bytes (RFC 1812 4.3.2.3)
		quote = 548
	}
	if room := len(reply) - 28; quote > room {
		quote = room
	}
	if quote < p.ihl+8 {
		return 0, Drop
	}
	if !e.lim.allow(now) {
		return 0, Drop
	}
	n := 28 + quote
	r := reply[:n]
	r[0], r[1] = 0x45, 0
	put16(r, 2, uint16(n))
	put16(r, 4, 0)
	put16(r, 6, 0)
	r[8], r[9] = 64, ip4.ProtoICMP
	put16(r, 10, 0)
	put32(r, 12, src)
	put32(r, 16, p.src)
	put16(r, 10, checksum(r[:20], 0))
	r[20], r[21] = typ, code
	put16(r, 22, 0)
	put32(r, 24, 0)
	copy(r[28:], orig[:quote])
	put16(r, 22, checksum(r[20:], 0))
	e.icmp.Add(1)
	if dir == dirSite {
		return n, ToSite
	}
	return n, ToOverlay
}
