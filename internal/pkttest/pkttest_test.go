package pkttest

import "testing"

// The IPv4 header example of RFC 1071's companions (checksum 0xb861), and a UDP segment
// whose checksum is checked with its pseudo-header.
func TestChecksum(t *testing.T) {
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
		0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if c := Checksum(h, 0); c != 0xb861 {
		t.Fatalf("header checksum %#04x, want 0xb861", c)
	}
	h[10], h[11] = 0xb8, 0x61
	if Sum(h, 0) != 0xffff || Checksum(h, 0) != 0 {
		t.Fatalf("a valid header does not verify: sum %#04x", Sum(h, 0))
	}
	// UDP 10.0.0.1:1000 -> 10.0.0.2:2000, payload "abc" (odd length).
	src, dst := uint32(0x0a000001), uint32(0x0a000002)
	u := []byte{0x03, 0xe8, 0x07, 0xd0, 0x00, 0x0b, 0x00, 0x00, 'a', 'b', 'c'}
	c := Checksum(u, Pseudo(src, dst, 17, len(u)))
	u[6], u[7] = byte(c>>8), byte(c)
	if Sum(u, Pseudo(src, dst, 17, len(u))) != 0xffff {
		t.Fatal("UDP checksum does not verify with its pseudo-header")
	}
	u[9] ^= 1
	if Sum(u, Pseudo(src, dst, 17, len(u))) == 0xffff {
		t.Fatal("a corrupted segment verifies")
	}
}
