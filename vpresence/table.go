// Package vpresence holds one gateway's virtual-presence state:
//
//   - Table: the immutable translation table built from one api.Snapshot — VIP → service
//     (remote: its ov(S); local: its real IP), hosted ov(S) → real service, reverse lookups
//     by (service IP, protocol, port) and by ov(S). VIPs are found through the snapshot's
//     index (internal/snapidx), which policy shares. A new snapshot builds a new Table;
//     the caller swaps it in with one atomic store.
//   - Pool: a lease pool of 1:1 address mappings (client overlay addresses ov(c) from the
//     upper half of the overlay prefix; presence IPs from the upper half of the VP CIDR).
//     Pools outlive Tables: leases carry over across snapshot swaps. Leases are refreshed
//     by traffic either way and expire after an idle timeout decided with the caller's
//     clock; a freed address sits out a quiet period, reuse takes the longest-free address,
//     and exhaustion is reported, never a panic or a wrong mapping.
//   - EchoTable: which service each ICMP echo request handed to a service host was sent
//     to, so the host's echo reply (which carries no port) is attributed to that service
//     even when one host runs several. Bounded, allocation-free, expiring with the
//     caller's clock.
//
// Hot-path addresses are IPv4 as big-endian uint32, as read from the packet header (see
// ip4.U32).
package vpresence

import (
	"fmt"
	"net/netip"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/snapidx"
)

// Service is one entry of the table: a service consumed here at a VIP, or hosted here at
// an overlay address.
type Service struct {
	Name      string
	VIP       uint32 // local VIP (consumed services)
	Overlay   uint32 // ov(S)
	ServiceIP uint32 // real address (hosted and local services)
	Proto     uint8  // ip4.ProtoAny for ANY
	Port      uint16
	Local     bool // consumed service that lives at this very site
}

// Range is an address range [First, Last] as uint32.
type Range struct{ First, Last uint32 }

// Contains reports whether a lies in r.
func (r Range) Contains(a uint32) bool { return a >= r.First && a <= r.Last }

// Size is the number of addresses in r.
func (r Range) Size() int {
	if r.Last < r.First {
		return 0
	}
	return int(r.Last-r.First) + 1
}

// UpperHalf is the lease range of a prefix: its upper half without the very last
// address (which looks like a broadcast address to hosts).
func UpperHalf(p netip.Prefix) (Range, error) {
	if !p.Addr().Is4() || p.Bits() > 30 || p.Bits() < 1 {
		return Range{}, fmt.Errorf("prefix %s: need an IPv4 prefix between /1 and /30", p)
	}
	base := ip4.U32(p.Masked().Addr())
	size := uint32(1) << (32 - p.Bits())
	return Range{First: base + size/2, Last: base + size - 2}, nil
}

// svcKey packs (service IP, protocol, port) into one word, so the reverse lookups are
// fast64 map probes.
type svcKey uint64

func mkSvcKey(ip uint32, proto uint8, port uint16) svcKey {
	return svcKey(uint64(ip)<<32 | uint64(proto)<<16 | uint64(port))
}

// Table is the immutable per-snapshot translation table.
type Table struct {
	Revision      int64
	Hub           bool
	OverlayCIDR   netip.Prefix
	OverlayPrefix netip.Prefix
	OverlayIP     uint32
	VPCIDR        netip.Prefix
	VPAddr        uint32
	ClientRange   Range // ov(c) pool: upper half of the overlay prefix
	PresenceRange Range // presence pool: upper half of the VP CIDR

	overlayCIDR Range
	ownPrefix   Range

	idx         *snapidx.Index      // VIP -> index in vipList (parallel to Snapshot.VIPs)
	vipList     []Service           // consumed services
	byOverlay   map[uint32]*Service // ov(S) -> consumed remote service (its VIP here)
	hosted      map[uint32]*Service // ov(S) -> hosted service
	hostedBySvc map[svcKey]*Service // (service IP, proto, port) -> hosted
	localBySvc  map[svcKey]*Service // (service IP, proto, port) -> local consumed service
}

func prefixRange(p netip.Prefix) Range {
	base := ip4.U32(p.Masked().Addr())
	return Range{First: base, Last: base + (uint32(1)<<(32-p.Bits()) - 1)}
}

// NewTable builds the table of one snapshot, with idx the snapshot's index (snapidx.Build
// of the same s, which the engine shares with policy). It fails, naming the field, on what
// the data plane cannot use (non-IPv4 prefixes, a VP CIDR inside the overlay, VIPs outside
// the VP CIDR).
func NewTable(s *api.Snapshot, idx *snapidx.Index) (*Table, error) {
	if s == nil || idx == nil {
		return nil, fmt.Errorf("vpresence: nil snapshot or index")
	}
	t := &Table{
		Revision:      s.Revision,
		Hub:           s.Hub,
		OverlayCIDR:   s.OverlayCIDR,
		OverlayPrefix: s.OverlayPrefix,
		OverlayIP:     ip4.U32(s.OverlayIP),
		VPCIDR:        s.VPCIDR,
		VPAddr:        ip4.U32(s.VPAddr),
		idx:           idx,
		vipList:       make([]Service, len(s.VIPs)),
		byOverlay:     make(map[uint32]*Service, len(s.VIPs)),
		hosted:        make(map[uint32]*Service, len(s.Hosted)),
		hostedBySvc:   make(map[svcKey]*Service, 2*len(s.Hosted)),
		localBySvc:    make(map[svcKey]*Service),
	}
	var err error
	if !s.OverlayCIDR.Addr().Is4() || !s.OverlayCIDR.IsValid() {
		return nil, fmt.Errorf("vpresence: overlayCIDR %s: not an IPv4 prefix", s.OverlayCIDR)
	}
	t.overlayCIDR = prefixRange(s.OverlayCIDR)
	if t.ClientRange, err = UpperHalf(s.OverlayPrefix); err != nil {
		return nil, fmt.Errorf("vpresence: overlayPrefix: %w", err)
	}
	t.ownPrefix = prefixRange(s.OverlayPrefix)
	if t.PresenceRange, err = UpperHalf(s.VPCIDR); err != nil {
		return nil, fmt.Errorf("vpresence: vpCIDR: %w", err)
	}
	if s.VPCIDR.Overlaps(s.OverlayCIDR) {
		return nil, fmt.Errorf("vpresence: vpCIDR %s overlaps overlayCIDR %s", s.VPCIDR, s.OverlayCIDR)
	}
	if !s.OverlayIP.Is4() {
		return nil, fmt.Errorf("vpresence: overlayIP %q: not IPv4", s.OverlayIP)
	}
	for i := range s.VIPs {
		v := &s.VIPs[i]
		if !s.VPCIDR.Contains(v.VIP) { // IPv4 and unique: checked by snapidx.Build
			return nil, fmt.Errorf("vpresence: VIP %s of service %q: not an IPv4 address in vpCIDR %s", v.VIP, v.Service, s.VPCIDR)
		}
		if t.PresenceRange.Contains(ip4.U32(v.VIP)) {
			return nil, fmt.Errorf("vpresence: VIP %s of service %q lies in the presence pool (upper half of %s)", v.VIP, v.Service, s.VPCIDR)
		}
		e := &t.vipList[i]
		*e = Service{Name: v.Service, VIP: ip4.U32(v.VIP), Overlay: ip4.U32(v.ServiceOverlay), Proto: proto(v.Protocol), Port: v.Port, Local: v.Local}
		if v.Local {
			if !v.ServiceIP.Is4() {
				return nil, fmt.Errorf("vpresence: local service %q: serviceIP %q is not IPv4", v.Service, v.ServiceIP)
			}
			e.ServiceIP = ip4.U32(v.ServiceIP)
			addSvc(t.localBySvc, e)
		} else {
			if !v.ServiceOverlay.Is4() {
				return nil, fmt.Errorf("vpresence: service %q: serviceOverlay %q is not IPv4", v.Service, v.ServiceOverlay)
			}
			if _, dup := t.byOverlay[e.Overlay]; !dup {
				t.byOverlay[e.Overlay] = e
			}
		}
	}
	for i := range s.Hosted {
		h := &s.Hosted[i]
		if !h.ServiceOverlay.Is4() || !h.ServiceIP.Is4() {
			return nil, fmt.Errorf("vpresence: hosted service %q: serviceOverlay %q / serviceIP %q must be IPv4", h.Service, h.ServiceOverlay, h.ServiceIP)
		}
		e := &Service{Name: h.Service, Overlay: ip4.U32(h.ServiceOverlay), ServiceIP: ip4.U32(h.ServiceIP), Proto: proto(h.Protocol), Port: h.Port}
		if _, dup := t.hosted[e.Overlay]; dup {
			return nil, fmt.Errorf("vpresence: hosted overlay address %s used twice (second: service %q)", h.ServiceOverlay, h.Service)
		}
		t.hosted[e.Overlay] = e
		addSvc(t.hostedBySvc, e)
	}
	return t, nil
}

// proto is the service's protocol number; a name the data plane does not know maps to
// ip4.ProtoAny here (policy, not translation, makes such a service allow nothing).
func proto(name string) uint8 {
	p, _ := ip4.ParseProto(name)
	return p
}

// addSvc registers e under (ip, proto, port); ICMP and ANY services under port 0. An
// echo reply is not looked up here: it carries no port, so several services sharing a
// host could not be told apart; the gateway attributes it through the EchoTable to the
// service the request was sent to. When two services share (ip, proto, port), the one
// with the lowest overlay address / VIP wins (deterministic across restarts).
func addSvc(m map[svcKey]*Service, e *Service) {
	port := e.Port
	if e.Proto == ip4.ProtoAny || e.Proto == ip4.ProtoICMP {
		port = 0
	}
	k := mkSvcKey(e.ServiceIP, e.Proto, port)
	if old, ok := m[k]; !ok || less(e, old) {
		m[k] = e
	}
}

func less(a, b *Service) bool {
	if a.Overlay != b.Overlay {
		return a.Overlay < b.Overlay
	}
	return a.VIP < b.VIP
}

func lookupSvc(m map[svcKey]*Service, ip uint32, proto uint8, port uint16) (*Service, bool) {
	if proto == ip4.ProtoICMP {
		port = 0
	}
	if e, ok := m[mkSvcKey(ip, proto, port)]; ok {
		return e, true
	}
	e, ok := m[mkSvcKey(ip, ip4.ProtoAny, 0)]
	return e, ok
}

// VIP returns the service consumed at vip.
func (t *Table) VIP(vip uint32) (*Service, bool) {
	if i, ok := t.idx.VIP(vip); ok {
		return &t.vipList[i], true
	}
	return nil, false
}

// Hosted returns the hosted service at overlay address ov.
func (t *Table) Hosted(ov uint32) (*Service, bool) { e, ok := t.hosted[ov]; return e, ok }

// RemoteByOverlay returns the remote service consumed here whose overlay address is ov.
func (t *Table) RemoteByOverlay(ov uint32) (*Service, bool) { e, ok := t.byOverlay[ov]; return e, ok }

// HostedByService returns the hosted service at (ip, proto, port), or the host's ANY
// service; for ICMP the port is ignored and only an ICMP (or ANY) service matches. Echo
// replies are attributed through the EchoTable, not here.
func (t *Table) HostedByService(ip uint32, proto uint8, port uint16) (*Service, bool) {
	return lookupSvc(t.hostedBySvc, ip, proto, port)
}

// LocalByService returns the same-site consumed service at (ip, proto, port), as
// HostedByService does.
func (t *Table) LocalByService(ip uint32, proto uint8, port uint16) (*Service, bool) {
	return lookupSvc(t.localBySvc, ip, proto, port)
}

// InOverlay reports whether a lies in the whole overlay CIDR.
func (t *Table) InOverlay(a uint32) bool { return t.overlayCIDR.Contains(a) }

// InOwnPrefix reports whether a lies in this gateway's overlay prefix.
func (t *Table) InOwnPrefix(a uint32) bool { return t.ownPrefix.Contains(a) }
