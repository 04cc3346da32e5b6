package ip4

import (
	"net/netip"
	"strings"
	"testing"
)

func TestU32Addr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"0.0.0.0", 0},
		{"10.1.2.3", 0x0a010203},
		{"255.255.255.255", 0xffffffff},
		{"100.64.0.1", 0x64400001},
		{"::ffff:192.0.2.1", 0xc0000201}, // IPv4-mapped IPv6 counts as IPv4
		{"2001:db8::1", 0},               // IPv6: 0
		{"fe80::1%eth0", 0},
	} {
		a := netip.MustParseAddr(tc.in)
		if got := U32(a); got != tc.want {
			t.Errorf("U32(%s) = %#x, want %#x", tc.in, got, tc.want)
		}
		if a.Unmap().Is4() {
			if back := Addr(tc.want); back != a.Unmap() {
				t.Errorf("Addr(U32(%s)) = %s", tc.in, back)
			}
		}
	}
	if got := U32(netip.Addr{}); got != 0 {
		t.Errorf("U32(zero Addr) = %#x, want 0", got)
	}
}

func TestPrefixSet(t *testing.T) {
	mp := netip.MustParsePrefix
	u := func(s string) uint32 { return U32(netip.MustParseAddr(s)) }
	var empty PrefixSet
	if _, ok := empty.Lookup(u("10.0.0.1")); ok || empty.Len() != 0 {
		t.Fatal("zero PrefixSet is not empty")
	}
	var s PrefixSet
	s.Add(mp("10.0.0.0/8"), 1)
	s.Add(mp("10.1.0.0/16"), 2)
	s.Add(mp("10.1.2.0/24"), 3)
	s.Add(mp("10.1.2.77/24"), 99) // same prefix once masked: keeps its first value
	s.Add(mp("192.0.2.7/32"), 4)
	s.Add(mp("::/0"), 9)                                            // IPv6: ignored
	s.Add(netip.PrefixFrom(netip.MustParseAddr("10.0.0.0"), 33), 9) // invalid: ignored
	s.Add(netip.Prefix{}, 9)
	if s.Len() != 4 {
		t.Fatalf("Len = %d, want 4", s.Len())
	}
	for _, tc := range []struct {
		addr string
		want int32
		ok   bool
	}{
		{"10.9.9.9", 1, true},
		{"10.1.9.9", 2, true},
		{"10.1.2.9", 3, true},
		{"10.1.2.255", 3, true},
		{"10.1.3.0", 2, true},
		{"192.0.2.7", 4, true},
		{"192.0.2.8", 0, false},
		{"11.0.0.1", 0, false},
		{"0.0.0.0", 0, false},
	} {
		v, ok := s.Lookup(u(tc.addr))
		if v != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%s) = %d, %v; want %d, %v", tc.addr, v, ok, tc.want, tc.ok)
		}
	}
	var all PrefixSet
	all.Add(mp("0.0.0.0/0"), 7)
	all.Add(mp("10.0.0.0/8"), 8)
	for addr, want := range map[string]int32{"1.2.3.4": 7, "10.2.3.4": 8, "255.255.255.255": 7} {
		if v, ok := all.Lookup(u(addr)); !ok || v != want {
			t.Errorf("/0 set: Lookup(%s) = %d, %v; want %d", addr, v, ok, want)
		}
	}
}

func TestAllocateNothing(t *testing.T) {
	var s PrefixSet
	s.Add(netip.MustParsePrefix("100.64.0.0/22"), 1)
	s.Add(netip.MustParsePrefix("100.64.4.0/22"), 2)
	s.Add(netip.MustParsePrefix("100.64.0.0/10"), 3)
	a := netip.MustParseAddr("100.64.5.6")
	var sink uint32
	if n := testing.AllocsPerRun(1000, func() {
		u := U32(a)
		v, _ := s.Lookup(u)
		sink += u + uint32(v) + U32(Addr(u))
	}); n != 0 {
		t.Fatalf("U32/Addr/Lookup allocate %v times per run", n)
	}
	_ = sink
}

// FuzzPrefixSet checks Lookup against a linear scan for the longest matching prefix.
func FuzzPrefixSet(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 8, 10, 1, 0, 0, 16}, uint32(0x0a010203))
	f.Add([]byte{0, 0, 0, 0, 0}, uint32(0xffffffff))
	f.Add([]byte{192, 0, 2, 1, 32, 192, 0, 2, 0, 31, 1, 2, 3, 4, 40}, uint32(0xc0000201))
	f.Fuzz(func(t *testing.T, raw []byte, a uint32) {
		var s PrefixSet
		type entry struct {
			p netip.Prefix
			v int32
		}
		var added []entry
		for i := 0; i+5 <= len(raw) && i < 5*64; i += 5 {
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte(raw[i:i+4])), int(raw[i+4]))
			v := int32(i)
			s.Add(p, v)
			if p.IsValid() {
				p = p.Masked()
				dup := false
				for _, e := range added {
					dup = dup || e.p == p
				}
				if !dup {
					added = append(added, entry{p, v})
				}
			}
		}
		if s.Len() != len(added) {
			t.Fatalf("Len = %d, want %d", s.Len(), len(added))
		}
		want, wantOK, best := int32(0), false, -1
		for _, e := range added {
			if e.p.Contains(Addr(a)) && e.p.Bits() > best {
				want, wantOK, best = e.v, true, e.p.Bits()
			}
		}
		if v, ok := s.Lookup(a); v != want || ok != wantOK {
			t.Fatalf("Lookup(%s) = %d, %v; linear scan says %d, %v", Addr(a), v, ok, want, wantOK)
		}
	})
}

func TestParseProto(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint8
		ok   bool
	}{
		{"TCP", ProtoTCP, true},
		{"tcp", ProtoTCP, true},
		{"Udp", ProtoUDP, true},
		{"ICMP", ProtoICMP, true},
		{"ANY", ProtoAny, true},
		{"any", ProtoAny, true},
		{"", ProtoAny, true},
		{"SCTP", ProtoAny, false},
		{" TCP", ProtoAny, false},
		{"6", ProtoAny, false},
	} {
		if p, ok := ParseProto(tc.in); p != tc.want || ok != tc.ok {
			t.Errorf("ParseProto(%q) = %d, %v; want %d, %v", tc.in, p, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseProto checks that ParseProto never panics, answers only the four protocol
// numbers, and accepts exactly the four names in any case (and the empty name).
func FuzzParseProto(f *testing.F) {
	for _, s := range []string{"TCP", "udp", "Icmp", "ANY", "", "sctp", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseProto(s)
		switch p {
		case ProtoAny, ProtoICMP, ProtoTCP, ProtoUDP:
		default:
			t.Fatalf("ParseProto(%q) = %d", s, p)
		}
		u := strings.ToUpper(s)
		known := u == "TCP" || u == "UDP" || u == "ICMP" || u == "ANY" || u == ""
		if ok != known || (!ok && p != ProtoAny) {
			t.Fatalf("ParseProto(%q) = %d, %v", s, p, ok)
		}
	})
}
