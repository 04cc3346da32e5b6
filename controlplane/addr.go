package controlplane

import (
	"encoding/binary"
	"net/netip"
)

// IPv4 arithmetic on prefixes. Every prefix here is a canonical IPv4 prefix (validated).

func u32(a netip.Addr) uint32 { b := a.As4(); return binary.BigEndian.Uint32(b[:]) }

func addrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// size is the number of addresses in p.
func size(p netip.Prefix) uint64 { return uint64(1) << (32 - p.Bits()) }

// firstAddr is the first usable address of p (network address + 1): the gateway's own
// address in its overlay prefix and in its VP CIDR.
func firstAddr(p netip.Prefix) netip.Addr { return addrOf(u32(p.Masked().Addr()) + 1) }

// lowerHalf returns the range [lo, hi] of p's lower half that the control plane allocates
// from: network address and first address excluded. ok is false if the range is empty.
func lowerHalf(p netip.Prefix) (lo, hi uint32, ok bool) {
	p = p.Masked()
	if !p.Addr().Is4() || p.Bits() > 30 {
		return 0, 0, false
	}
	base := u32(p.Addr())
	return base + 2, base + uint32(size(p)/2) - 1, true
}

// inLowerHalf reports whether a is an allocatable address of p's lower half.
func inLowerHalf(p netip.Prefix, a netip.Addr) bool {
	lo, hi, ok := lowerHalf(p)
	if !ok || !a.Is4() {
		return false
	}
	v := u32(a)
	return v >= lo && v <= hi
}

// allocLowest returns the lowest address of p's lower half not in used.
func allocLowest(p netip.Prefix, used map[netip.Addr]bool) (netip.Addr, bool) {
	lo, hi, ok := lowerHalf(p)
	if !ok {
		return netip.Addr{}, false
	}
	for v := lo; v <= hi; v++ {
		a := addrOf(v)
		if !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// allocLowestFunc returns the lowest address of p's lower half for which used is false.
func allocLowestFunc(p netip.Prefix, used func(netip.Addr) bool) (netip.Addr, bool) {
	lo, hi, ok := lowerHalf(p)
	if !ok {
		return netip.Addr{}, false
	}
	for v := lo; v <= hi; v++ {
		if a := addrOf(v); !used(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// subPrefix returns the i-th prefix of length bits inside outer.
func subPrefix(outer netip.Prefix, bits int, i uint64) (netip.Prefix, bool) {
	n := uint64(1) << (bits - outer.Bits())
	if i >= n {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(addrOf(u32(outer.Addr())+uint32(i<<(32-bits))), bits), true
}

// clientHalf is the upper half of a gateway's overlay prefix, where the gateway leases the
// overlay addresses of its clients (ov(c)).
func clientHalf(p netip.Prefix) netip.Prefix {
	p = p.Masked()
	size := uint32(1) << (32 - p.Bits())
	return netip.PrefixFrom(addrOf(u32(p.Addr())+size/2), p.Bits()+1)
}
