// Package pkttest provides the Internet checksum arithmetic (RFC 1071) that tests use to
// build and verify IPv4 packets: the ones' complement sum, the checksum, and the TCP/UDP
// pseudo-header sum. It is written independently of the data plane's incremental
// checksum code (nat/checksum.go), so tests never check that code against itself.
package pkttest

// Sum is the folded ones' complement sum of b, started from initial (a partial sum such as
// Pseudo's); an odd last byte is padded with zero. It is 0xffff when a checksum inside b
// verifies.
func Sum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// Checksum is the Internet checksum of b over initial: the complement of Sum. Written into
// a zeroed checksum field it makes the sum verify; over data that holds a valid checksum
// it is 0.
func Checksum(b []byte, initial uint32) uint16 { return ^Sum(b, initial) }

// Pseudo is the partial sum of the IPv4 pseudo-header of a TCP or UDP segment: source and
// destination (big-endian uint32), protocol and segment length.
func Pseudo(src, dst uint32, proto uint8, length int) uint32 {
	return src>>16 + src&0xffff + dst>>16 + dst&0xffff + uint32(proto) + uint32(length)
}
