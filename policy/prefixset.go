package policy

import (
	"net/netip"
	"slices"
)

// PrefixSet maps IPv4 prefixes to a value and finds the longest prefix holding an
// address without allocating: one map probe per distinct prefix length present (in
// practice one: every gateway gets a /22). The zero value is an empty set.
type PrefixSet struct {
	lens []uint8          // distinct prefix lengths, longest first
	m    map[uint64]int32 // bits<<32 | masked address -> value
}

// Add inserts p (masked) with value v; an IPv6 prefix is ignored. A prefix added twice
// keeps its first value.
func (s *PrefixSet) Add(p netip.Prefix, v int32) {
	if !p.Addr().Is4() || !p.IsValid() {
		return
	}
	bits := uint8(p.Bits())
	if s.m == nil {
		s.m = make(map[uint64]int32)
	}
	k := uint64(bits)<<32 | uint64(U32(p.Masked().Addr()))
	if _, ok := s.m[k]; ok {
		return
	}
	s.m[k] = v
	if !slices.Contains(s.lens, bits) {
		s.lens = append(s.lens, bits)
		slices.SortFunc(s.lens, func(a, b uint8) int { return int(b) - int(a) })
	}
}

// Lookup returns the value of the longest prefix holding a.
func (s *PrefixSet) Lookup(a uint32) (int32, bool) {
	for _, bits := range s.lens {
		var mask uint32
		if bits > 0 {
			mask = ^uint32(0) << (32 - bits)
		}
		if v, ok := s.m[uint64(bits)<<32|uint64(a&mask)]; ok {
			return v, true
		}
	}
	return 0, false
}

// Len is the number of prefixes in the set.
func (s *PrefixSet) Len() int { return len(s.m) }
