package nat

// Incremental Internet checksum updates (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')).

func fold(s uint32) uint16 {
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return uint16(s)
}

// csum16 updates checksum c for a 16-bit word changing from old to new.
func csum16(c, old, new uint16) uint16 {
	return ^fold(uint32(^c) + uint32(^old) + uint32(new))
}

// csum32 updates checksum c for a 32-bit value (two aligned words) changing from old to new.
func csum32(c uint16, old, new uint32) uint16 {
	s := uint32(^c) + (^old)>>16 + (^old)&0xffff + new>>16 + new&0xffff
	return ^fold(s)
}

// checksum computes the Internet checksum of b with an initial partial sum.
func checksum(b []byte, initial uint32) uint16 {
	s := initial
	n := len(b) &^ 1
	for i := 0; i < n; i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)&1 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return ^fold(s)
}

func get16(b []byte, o int) uint16 { return uint16(b[o])<<8 | uint16(b[o+1]) }
func put16(b []byte, o int, v uint16) {
	b[o] = byte(v >> 8)
	b[o+1] = byte(v)
}
func get32(b []byte, o int) uint32 {
	return uint32(b[o])<<24 | uint32(b[o+1])<<16 | uint32(b[o+2])<<8 | uint32(b[o+3])
}
func put32(b []byte, o int, v uint32) {
	b[o] = byte(v >> 24)
	b[o+1] = byte(v >> 16)
	b[o+2] = byte(v >> 8)
	b[o+3] = byte(v)
}
