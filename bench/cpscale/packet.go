package main

import (
	"encoding/binary"
	"net/netip"
)

// synLen is the size of the probe: a 20-byte IPv4 header and a 24-byte TCP header (the
// SYN carries an MSS option, which the engine clamps).
const synLen = 20 + 24

// buildSYN writes into b (at least synLen bytes) a TCP SYN from src:sport to dst:dport
// with valid IPv4 and TCP checksums and returns the packet. The engine translates packets
// in place, so every probe needs a fresh one.
func buildSYN(b []byte, src, dst netip.Addr, sport, dport uint16) []byte {
	p := b[:synLen]
	clear(p)
	// IPv4 header.
	p[0] = 0x45 // version 4, IHL 5
	binary.BigEndian.PutUint16(p[2:], synLen)
	binary.BigEndian.PutUint16(p[4:], 0x1234) // ID
	binary.BigEndian.PutUint16(p[6:], 0x4000) // DF
	p[8] = 64                                 // TTL
	p[9] = 6                                  // TCP
	s4, d4 := src.As4(), dst.As4()
	copy(p[12:16], s4[:])
	copy(p[16:20], d4[:])
	binary.BigEndian.PutUint16(p[10:], checksum(0, p[:20]))
	// TCP header.
	t := p[20:]
	binary.BigEndian.PutUint16(t[0:], sport)
	binary.BigEndian.PutUint16(t[2:], dport)
	binary.BigEndian.PutUint32(t[4:], 1000) // seq
	t[12] = 6 << 4                          // data offset: 6 words
	t[13] = 0x02                            // SYN
	binary.BigEndian.PutUint16(t[14:], 65535)
	t[20], t[21] = 2, 4 // MSS option
	binary.BigEndian.PutUint16(t[22:], 1460)
	// Pseudo-header: addresses, protocol, TCP length.
	var ph [12]byte
	copy(ph[0:4], s4[:])
	copy(ph[4:8], d4[:])
	ph[9] = 6
	binary.BigEndian.PutUint16(ph[10:], uint16(len(t)))
	sum := sum16(0, ph[:])
	binary.BigEndian.PutUint16(t[16:], checksum(sum, t))
	return p
}

// sum16 adds b to the one's-complement running sum acc (not folded).
func sum16(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// checksum returns the Internet checksum of b with the running sum acc.
func checksum(acc uint32, b []byte) uint16 {
	acc = sum16(acc, b)
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return ^uint16(acc)
}
