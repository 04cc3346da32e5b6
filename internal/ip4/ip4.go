// Package ip4 provides the IPv4 primitives the data-plane packages share: conversion
// between netip.Addr and the big-endian uint32 the packet parser reads straight from the
// header (U32, Addr); PrefixSet, an allocation-free longest-prefix match over IPv4
// prefixes; and the IP protocol numbers of services with ParseProto for their api names. It imports nothing of the project, so both policy and vpresence use it
// without depending on each other.
package ip4

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strings"
)

// Protocol numbers as they appear in the IPv4 header. ProtoAny marks a service that
// accepts any protocol and port.
const (
	ProtoAny  uint8 = 0
	ProtoICMP uint8 = 1
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
)

// ParseProto maps an api protocol name (TCP, UDP, ICMP, ANY or empty for ANY; any case)
// to its IP protocol number. ok is false for any other name, and p is then ProtoAny.
func ParseProto(s string) (p uint8, ok bool) {
	switch strings.ToUpper(s) {
	case "TCP":
		return ProtoTCP, true
	case "UDP":
		return ProtoUDP, true
	case "ICMP":
		return ProtoICMP, true
	case "ANY", "":
		return ProtoAny, true
	}
	return ProtoAny, false
}

// U32 returns an IPv4 (or IPv4-mapped IPv6) address as a big-endian uint32; it returns 0
// for anything else, including the zero Addr.
func U32(a netip.Addr) uint32 {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// Addr is the inverse of U32.
func Addr(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}

// PrefixSet maps IPv4 prefixes to a value and finds the longest prefix holding an
// address without allocating: one map probe per distinct prefix length present (in
// practice one: every gateway gets a /22). The zero value is an empty set. Add must not
// run concurrently with anything; Lookup and Len may run concurrently with each other.
type PrefixSet struct {
	lens []uint8          // distinct prefix lengths, longest first
	m    map[uint64]int32 // bits<<32 | masked address -> value
}

// Add inserts p (masked) with value v; an invalid or non-IPv4 prefix is ignored. A
// prefix added twice keeps its first value.
func (s *PrefixSet) Add(p netip.Prefix, v int32) {
	if !p.IsValid() || !p.Addr().Is4() {
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

// Lookup returns the value of the longest prefix holding a (a big-endian uint32, see U32).
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
