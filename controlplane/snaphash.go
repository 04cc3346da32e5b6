package controlplane

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"

	"github.com/egw-project/egw/api"
)

// snapHasher computes the digest Server.refresh compares snapshots by: sha256 of a
// compact binary form of every field except Revision (TestSnapshotHashCoversEveryField
// fails when api.Snapshot gains a field this does not cover). Its buffer is reused, so a
// snapHasher is for one goroutine.
type snapHasher struct{ b []byte }

func (h *snapHasher) sum(s *api.Snapshot) [sha256.Size]byte {
	h.b = h.b[:0]
	h.str(s.StoreID)
	h.str(s.Gateway)
	h.str(s.Site)
	h.bool(s.Hub)
	h.prefix(s.OverlayCIDR)
	h.prefix(s.OverlayPrefix)
	h.addr(s.OverlayIP)
	h.addr(s.CloudOverlayIP)
	h.prefix(s.VPCIDR)
	h.addr(s.VPAddr)
	h.len(len(s.Peers))
	for i := range s.Peers {
		p := &s.Peers[i]
		h.str(p.Name)
		h.str(p.Site)
		h.str(p.PublicKey)
		h.str(p.Endpoint)
		h.prefixes(p.AllowedIPs)
		h.addr(p.OverlayIP)
		h.bool(p.Hub)
		h.len(len(p.Candidates))
		for _, c := range p.Candidates {
			h.addr(c.Addr())
			h.u16(c.Port())
		}
	}
	h.len(len(s.Gateways))
	for _, g := range s.Gateways {
		h.str(g.Name)
		h.str(g.Site)
		h.prefix(g.OverlayPrefix)
	}
	h.len(len(s.VIPs))
	for i := range s.VIPs {
		v := &s.VIPs[i]
		h.addr(v.VIP)
		h.str(v.Service)
		h.str(v.Expose)
		h.str(v.Protocol)
		h.u16(v.Port)
		h.str(v.DNSName)
		h.str(v.DomainName)
		h.str(v.HomeSite)
		h.str(v.HomeGateway)
		h.addr(v.ServiceOverlay)
		h.bool(v.Local)
		h.addr(v.ServiceIP)
		h.len(len(v.AllowedClients))
		for _, a := range v.AllowedClients {
			h.addr(a)
		}
		h.bool(v.AllowSite)
		h.len(len(v.Decisions))
		for _, d := range v.Decisions {
			h.str(d.Policy)
			h.str(d.Server)
			h.addr(d.IP)
			h.str(d.Site)
		}
	}
	h.len(len(s.Hosted))
	for i := range s.Hosted {
		x := &s.Hosted[i]
		h.str(x.Service)
		h.str(x.Expose)
		h.addr(x.ServiceOverlay)
		h.addr(x.ServiceIP)
		h.str(x.Protocol)
		h.u16(x.Port)
		h.len(len(x.AllowedSites))
		for _, site := range x.AllowedSites {
			h.str(site)
		}
		h.prefixes(x.AllowedPrefixes)
	}
	h.len(len(s.Links))
	for _, l := range s.Links {
		h.addr(l.A)
		h.addr(l.B)
	}
	h.str(s.DNSZone)
	return sha256.Sum256(h.b)
}

func (h *snapHasher) len(n int) { h.b = binary.AppendUvarint(h.b, uint64(n)) }

func (h *snapHasher) str(s string) {
	h.len(len(s))
	h.b = append(h.b, s...)
}

func (h *snapHasher) bool(v bool) {
	if v {
		h.b = append(h.b, 1)
	} else {
		h.b = append(h.b, 0)
	}
}

func (h *snapHasher) u16(v uint16) { h.b = binary.BigEndian.AppendUint16(h.b, v) }

// addr appends a tagged form of a (invalid, IPv4, or IPv6 with its zone), unambiguous
// inside a sequence.
func (h *snapHasher) addr(a netip.Addr) {
	switch {
	case a.Is4():
		b := a.As4()
		h.b = append(h.b, 4)
		h.b = append(h.b, b[:]...)
	case a.Is6():
		b := a.As16()
		h.b = append(h.b, 16)
		h.b = append(h.b, b[:]...)
		h.str(a.Zone())
	default:
		h.b = append(h.b, 0)
	}
}

func (h *snapHasher) prefix(p netip.Prefix) {
	h.addr(p.Addr())
	h.b = append(h.b, byte(p.Bits()+1)) // Bits is -1 for an invalid prefix
}

func (h *snapHasher) prefixes(ps []netip.Prefix) {
	h.len(len(ps))
	for _, p := range ps {
		h.prefix(p)
	}
}
