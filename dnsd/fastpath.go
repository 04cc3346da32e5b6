package dnsd

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The fast path answers the common query — A for an exposed name, by a client allowed to
// use it, with no EDNS or one plain OPT — straight from the datagram bytes: no unpacking,
// no dns.Msg, no allocation. Anything else (other types, escapes or compression in the
// name, trailing bytes, a reply that would need truncation, a denied client) returns
// false and takes the general path. The reply is byte-for-byte what the general path
// would send; FuzzServeDNS checks that.

// fastAnswer writes the reply to pkt into w and reports whether it did.
func (s *Server) fastAnswer(pkt []byte, w *udpWriter) bool {
	if len(pkt) < 12+1+4 {
		return false
	}
	flags := binary.BigEndian.Uint16(pkt[2:])
	// QR=0, opcode QUERY, no AA/TC/Z, rcode 0: only RD, AD (dig sets it) and CD may be
	// set. The reply copies RD and CD, like the general path.
	if flags&^(1<<8|1<<5|1<<4) != 0 {
		return false
	}
	if binary.BigEndian.Uint16(pkt[4:]) != 1 || binary.BigEndian.Uint16(pkt[6:]) != 0 || binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return false
	}

	// The question name: plain labels of letters, digits, '-' and '_' only, so its
	// presentation form needs no escapes; lower-cased into key.
	var key [256]byte
	k, off := 0, 12
	for {
		if off >= len(pkt) {
			return false
		}
		l := int(pkt[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(pkt) || k+l+1 > 254 {
			return false
		}
		for _, c := range pkt[off : off+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return false
			}
			key[k] = c
			k++
		}
		key[k] = '.'
		k++
		off += l
	}
	if k == 0 || off+4 > len(pkt) {
		return false // the root, or no room for type and class
	}
	qname := pkt[12:off]
	if binary.BigEndian.Uint16(pkt[off:]) != dns.TypeA || binary.BigEndian.Uint16(pkt[off+2:]) != dns.ClassINET {
		return false
	}
	qend := off + 4

	// At most one OPT: root owner, version 0, only cookie or padding options (ignored;
	// other options take the general path, whose parser may reject them), nothing after.
	size, edns, do := dns.MinMsgSize, false, false
	if arcount == 1 {
		o := pkt[qend:]
		if len(o) < 11 || o[0] != 0 || binary.BigEndian.Uint16(o[1:]) != dns.TypeOPT {
			return false
		}
		if o[6] != 0 { // EDNS version
			return false
		}
		if int(binary.BigEndian.Uint16(o[9:]))+11 != len(o) || !plainOptions(o[11:]) {
			return false
		}
		edns = true
		size = min(max(int(binary.BigEndian.Uint16(o[3:])), dns.MinMsgSize), MaxUDPSize)
		do = o[7]&0x80 != 0
	} else if qend != len(pkt) {
		return false
	}

	z := s.zone.Load()
	e, ok := z.names[string(key[:k])] // no allocation: the conversion is only a lookup key
	if !ok {
		return false
	}
	client := w.clientAddr()
	inSite := s.inSite(client)
	n := 0
	for i := range e.records {
		if !s.cfg.PolicyAware || e.records[i].allows(client, inSite) {
			n++
		}
	}
	rrLen := len(qname) + 14
	total := qend + n*rrLen
	if edns {
		total += 11
	}
	if n == 0 || total > size {
		return false
	}

	b := w.replyBuffer(total)
	copy(b, pkt[:qend])          // ID, question
	out := uint16(1<<15 | 1<<10) // QR, AA
	out |= flags & (1<<8 | 1<<4) // RD, CD
	if inSite && len(s.cfg.SiteNetworks) > 0 && len(s.upstreams) > 0 {
		out |= 1 << 7 // RA
	}
	binary.BigEndian.PutUint16(b[2:], out)
	binary.BigEndian.PutUint16(b[6:], uint16(n))
	binary.BigEndian.PutUint16(b[8:], 0)
	binary.BigEndian.PutUint16(b[10:], 0)
	p := qend
	for i := range e.records {
		v := &e.records[i]
		if s.cfg.PolicyAware && !v.allows(client, inSite) {
			continue
		}
		p += copy(b[p:], qname)
		binary.BigEndian.PutUint16(b[p:], dns.TypeA)
		binary.BigEndian.PutUint16(b[p+2:], dns.ClassINET)
		binary.BigEndian.PutUint32(b[p+4:], s.ttl)
		binary.BigEndian.PutUint16(b[p+8:], 4)
		a := v.vip.As4()
		copy(b[p+10:], a[:])
		p += 14
	}
	if edns {
		binary.BigEndian.PutUint16(b[10:], 1)
		b[p] = 0
		binary.BigEndian.PutUint16(b[p+1:], dns.TypeOPT)
		binary.BigEndian.PutUint16(b[p+3:], MaxUDPSize)
		ttl := uint32(0)
		if do {
			ttl = 1 << 15
		}
		binary.BigEndian.PutUint32(b[p+5:], ttl)
		binary.BigEndian.PutUint16(b[p+9:], 0)
	}
	s.stats.answers.Add(1)
	if err := w.send(b); err != nil {
		s.stats.writeErrors.Add(1)
	}
	return true
}

// plainOptions reports whether the OPT rdata b is a well-formed list of cookie and padding
// options only.
func plainOptions(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 4 {
			return false
		}
		code, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if (code != dns.EDNS0COOKIE && code != dns.EDNS0PADDING) || 4+n > len(b) {
			return false
		}
		b = b[4+n:]
	}
	return true
}
