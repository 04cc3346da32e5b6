package nat

// The parser reads an IPv4 packet into offsets and a few header fields without
// allocating (in the style of Tailscale's net/packet). It validates exactly what the
// rewrite relies on, so the rewrite never indexes past the buffer. Protocol numbers are
// ip4's, the one set the data-plane packages share.

import "github.com/egw-project/egw/internal/ip4"

const (
	icmpEchoReply    = 0
	icmpUnreachable  = 3
	icmpSourceQuench = 4
	icmpEchoRequest  = 8
	icmpTimeExceeded = 11
	icmpParamProblem = 12

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// packet is a parsed IPv4 packet: offsets into b and the header fields the walk needs.
type packet struct {
	b        []byte
	ihl      int // header length in bytes
	proto    uint8
	ttl      uint8
	src, dst uint32
	id       uint16
	fragOff  int  // fragment offset in bytes
	mf       bool // more fragments

	// L4, valid when fragOff == 0.
	l4           int
	sport, dport uint16 // TCP/UDP ports; ICMP echo: the echo id in both
	icmpType     uint8
	icmpCode     uint8
	tcpFlags     uint8
	tcpHdrLen    int

	// ICMP error: the embedded (quoted) packet.
	isErr   bool
	in      int // offset of the embedded IPv4 header
	inIHL   int
	inProto uint8
	inSrc   uint32
	inDst   uint32
	inSport uint16
	inDport uint16
	inType  uint8 // embedded ICMP type
	inL4Len int   // embedded L4 bytes present (≥ 8)
}

func (p *packet) later() bool { return p.fragOff > 0 }
func (p *packet) first() bool { return p.fragOff == 0 && p.mf }

// minL4 is the smallest L4 header the walk needs for proto (TCP: the fixed header).
func minL4(proto uint8) int {
	if proto == ip4.ProtoTCP {
		return 20
	}
	return 8
}

// parse fills p, which must be zero, from b. It returns ReasonOK or the malformation it
// found. (The caller zeroes p: zeroing here too costs measurably on the hot path.)
func parse(b []byte, p *packet) Reason {
	p.b = b
	if len(b) < 1 {
		return ReasonTruncated
	}
	switch b[0] >> 4 {
	case 4:
	case 6:
		return ReasonIPv6
	default:
		return ReasonBadVersion
	}
	if len(b) < 20 {
		return ReasonTruncated
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || ihl > len(b) {
		return ReasonBadIHL
	}
	tl := int(get16(b, 2))
	if tl != len(b) || tl < ihl {
		return ReasonBadTotalLength
	}
	p.ihl = ihl
	p.ttl = b[8]
	p.proto = b[9]
	p.src = get32(b, 12)
	p.dst = get32(b, 16)
	p.id = get16(b, 4)
	ff := get16(b, 6)
	p.mf = ff&0x2000 != 0
	p.fragOff = int(ff&0x1fff) * 8
	p.l4 = ihl

	if p.fragOff > 0 {
		// RFC 1858: a later fragment that reaches into the L4 header could rewrite
		// the ports or flags the first fragment was judged by.
		if p.fragOff < minL4(p.proto) {
			return ReasonFragmentOverlap
		}
		return ReasonOK
	}
	l4 := b[ihl:]
	short := ReasonTruncated
	if p.mf {
		short = ReasonFragmentTiny
	}
	switch p.proto {
	case ip4.ProtoTCP:
		if len(l4) < 20 {
			return short
		}
		hl := int(l4[12]>>4) * 4
		if hl < 20 {
			return ReasonBadTCPOffset
		}
		if hl > len(l4) {
			if p.mf {
				return ReasonFragmentTiny
			}
			return ReasonBadTCPOffset
		}
		p.tcpHdrLen = hl
		p.sport, p.dport = get16(l4, 0), get16(l4, 2)
		p.tcpFlags = l4[13]
	case ip4.ProtoUDP:
		if len(l4) < 8 {
			return short
		}
		ul := int(get16(l4, 4))
		if ul < 8 || (!p.mf && ul != len(l4)) || (p.mf && ul < len(l4)) {
			return ReasonBadUDPLength
		}
		p.sport, p.dport = get16(l4, 0), get16(l4, 2)
	case ip4.ProtoICMP:
		if len(l4) < 8 {
			if p.mf {
				return ReasonFragmentTiny
			}
			return ReasonShortICMP
		}
		p.icmpType, p.icmpCode = l4[0], l4[1]
		switch p.icmpType {
		case icmpEchoRequest, icmpEchoReply:
			p.sport = get16(l4, 4)
			p.dport = p.sport
		case icmpUnreachable, icmpTimeExceeded, icmpParamProblem, icmpSourceQuench:
			p.isErr = true
			if r := parseInner(p); r != ReasonOK {
				if r == ReasonShortICMP && p.mf {
					return ReasonFragmentTiny
				}
				return r
			}
		}
	}
	return ReasonOK
}

// parseInner reads the packet quoted by an ICMP error: an IPv4 header and at least 8
// bytes of its L4 header (RFC 792), which hold the ports or the echo id.
func parseInner(p *packet) Reason {
	b := p.b
	in := p.l4 + 8
	if len(b)-in < 20 {
		return ReasonShortICMP
	}
	if b[in]>>4 != 4 {
		return ReasonBadICMPInner
	}
	ihl := int(b[in]&0x0f) * 4
	if ihl < 20 {
		return ReasonBadICMPInner
	}
	if len(b)-in < ihl+8 {
		return ReasonShortICMP
	}
	if get16(b, in+6)&0x1fff != 0 {
		return ReasonBadICMPInner // a later fragment quotes no ports
	}
	p.in, p.inIHL = in, ihl
	p.inProto = b[in+9]
	p.inSrc, p.inDst = get32(b, in+12), get32(b, in+16)
	l4 := in + ihl
	p.inL4Len = len(b) - l4
	switch p.inProto {
	case ip4.ProtoTCP, ip4.ProtoUDP:
		p.inSport, p.inDport = get16(b, l4), get16(b, l4+2)
	case ip4.ProtoICMP:
		p.inType = b[l4]
		if p.inType != icmpEchoRequest && p.inType != icmpEchoReply {
			return ReasonICMPUnsupported // no errors about errors
		}
		p.inSport = get16(b, l4+4)
		p.inDport = p.inSport
	default:
		return ReasonICMPUnsupported
	}
	return ReasonOK
}
