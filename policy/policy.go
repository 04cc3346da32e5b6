// Package policy compiles the EPolicy part of one gateway's api.Snapshot into an immutable
// ACL and answers the hot-path questions about it without allocating:
//
//   - CheckVIP: may this site client reach this VIP with this protocol and port?
//     (per VIP: the allowed client IPs, or the whole site)
//   - CheckHosted: may a packet from this overlay address reach this hosted service?
//     (per hosted ov(S): the allowed sites and their gateways' overlay prefixes)
//
// A Compiled value is never changed after Compile returns; a new snapshot compiles a new
// one, which the caller swaps in atomically, so a revocation takes effect at the next
// packet. Explain answers the same questions for people, naming what decided.
//
// Addresses on the hot path are IPv4 addresses as big-endian uint32 (see ip4.U32), which is
// what the packet parser in package nat reads straight from the header.
package policy

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/snapidx"
)

// Verdict is the answer of a Check: Allow, or why not. Verdicts are constants so a drop
// can be counted without allocating.
type Verdict uint8

const (
	Allow          Verdict = iota
	DenyNoRule             // the destination is not a service this table knows
	DenyClient             // the client (or its site) is not allowed
	DenyPort               // protocol or port is not the service's
	DenyUnknownSrc         // the overlay source belongs to no known gateway
)

func (v Verdict) String() string {
	switch v {
	case Allow:
		return "allow"
	case DenyNoRule:
		return "deny: no such service"
	case DenyClient:
		return "deny: client not allowed"
	case DenyPort:
		return "deny: protocol/port not the service's"
	case DenyUnknownSrc:
		return "deny: source is no known gateway's"
	}
	return "unknown"
}

// U32 returns an IPv4 address as a big-endian uint32 (0 for anything that is not IPv4).
// It is ip4.U32, kept for callers outside the data plane.
func U32(a netip.Addr) uint32 { return ip4.U32(a) }

// vipRule is one consumable service at this site.
type vipRule struct {
	v         *api.VIP
	proto     uint8
	port      uint16
	allowSite bool
	valid     bool     // protocol known
	clients   []uint32 // allowed client addresses, sorted (a window of Compiled.clientsAll)
}

// hostedRule is one service hosted at this site.
type hostedRule struct {
	h        *api.Hosted
	proto    uint8
	port     uint16
	sites    []int32 // site indices, sorted
	prefixes ip4.PrefixSet
	valid    bool
}

// Compiled is the immutable ACL of one gateway at one snapshot revision.
type Compiled struct {
	Revision int64
	site     string

	idx        *snapidx.Index // VIP -> index in vipList (parallel to Snapshot.VIPs); gateway prefix -> site
	vipList    []vipRule
	clientsAll []uint32 // every VIP's sorted allowed clients, back to back

	hosted     map[uint32]int32 // ov(S) -> index in hostedList
	hostedList []hostedRule
}

// Compile builds the ACL from a snapshot. It returns an error naming the object for
// input the data plane cannot use (a non-IPv4 address); a service with an unknown
// protocol compiles to "allows nothing" rather than failing the whole snapshot.
func Compile(s *api.Snapshot) (*Compiled, error) {
	if s == nil {
		return nil, fmt.Errorf("policy: nil snapshot")
	}
	idx, err := snapidx.Build(s)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return CompileIndexed(s, idx)
}

// CompileIndexed is Compile with the snapshot's index already built (snapidx.Build of the
// same s), so the engine builds it once for the translation table and the ACL.
func CompileIndexed(s *api.Snapshot, idx *snapidx.Index) (*Compiled, error) {
	c := &Compiled{
		Revision: s.Revision,
		site:     s.Site,
		idx:      idx,
		hosted:   make(map[uint32]int32, len(s.Hosted)),
	}
	nclients := 0
	for i := range s.VIPs {
		nclients += len(s.VIPs[i].AllowedClients)
	}
	c.clientsAll = make([]uint32, 0, nclients)
	c.vipList = make([]vipRule, 0, len(s.VIPs))
	for i := range s.VIPs {
		v := &s.VIPs[i] // IPv4 and unique: checked by snapidx.Build
		proto, ok := ip4.ParseProto(v.Protocol)
		start := len(c.clientsAll)
		for _, a := range v.AllowedClients {
			if !a.Is4() {
				return nil, fmt.Errorf("policy: VIP %s (service %q): allowed client %q is not IPv4", v.VIP, v.Service, a)
			}
			c.clientsAll = append(c.clientsAll, ip4.U32(a))
		}
		cl := c.clientsAll[start:len(c.clientsAll):len(c.clientsAll)]
		slices.Sort(cl)
		c.vipList = append(c.vipList, vipRule{v: v, proto: proto, port: v.Port, allowSite: v.AllowSite, valid: ok, clients: cl})
	}
	c.hostedList = make([]hostedRule, 0, len(s.Hosted))
	for i := range s.Hosted {
		h := &s.Hosted[i]
		if !h.ServiceOverlay.Is4() || !h.ServiceIP.Is4() {
			return nil, fmt.Errorf("policy: hosted service %q: overlay %q / service IP %q must be IPv4", h.Service, h.ServiceOverlay, h.ServiceIP)
		}
		k := ip4.U32(h.ServiceOverlay)
		if _, dup := c.hosted[k]; dup {
			return nil, fmt.Errorf("policy: overlay address %s given to two hosted services (second: %q)", h.ServiceOverlay, h.Service)
		}
		proto, ok := ip4.ParseProto(h.Protocol)
		r := hostedRule{h: h, proto: proto, port: h.Port, valid: ok}
		for _, sn := range h.AllowedSites {
			// A site with no gateway in the snapshot holds no source address: skip it.
			if si, ok := idx.SiteIndex(sn); ok {
				r.sites = append(r.sites, si)
			}
		}
		slices.Sort(r.sites)
		for _, p := range h.AllowedPrefixes {
			r.prefixes.Add(p, 0)
		}
		c.hosted[k] = int32(len(c.hostedList))
		c.hostedList = append(c.hostedList, r)
	}
	return c, nil
}

// matchService reports whether proto/port (or an ICMP echo) fits a service.
func matchService(svcProto uint8, svcPort uint16, proto uint8, port uint16, echo bool) bool {
	if svcProto == ip4.ProtoAny {
		return true
	}
	if proto == ip4.ProtoICMP && echo {
		return true
	}
	return proto == svcProto && (proto == ip4.ProtoICMP || port == svcPort)
}

// CheckVIP decides a packet between site client and vip. port is the service-side port
// (the destination port of a request, the source port of a reply); echo says the packet
// is an ICMP echo going the right way (request to the VIP, reply from it), which passes
// for an allowed client whatever the service's protocol.
func (c *Compiled) CheckVIP(vip, client uint32, proto uint8, port uint16, echo bool) Verdict {
	r := c.vipRule(vip)
	if r == nil {
		return DenyNoRule
	}
	if !r.valid {
		return DenyPort
	}
	if !r.allowSite && !r.hasClient(client) {
		return DenyClient
	}
	if !matchService(r.proto, r.port, proto, port, echo) {
		return DenyPort
	}
	return Allow
}

// CheckHosted decides a packet between the overlay address src (a client of another
// site, or of this one through the hub) and the hosted service ov. port and echo are as
// for CheckVIP. The source site is the site whose gateway's overlay prefix holds src.
func (c *Compiled) CheckHosted(ov, src uint32, proto uint8, port uint16, echo bool) Verdict {
	i, ok := c.hosted[ov]
	if !ok {
		return DenyNoRule
	}
	r := &c.hostedList[i]
	if !r.valid {
		return DenyPort
	}
	allowed := false
	if _, ok := r.prefixes.Lookup(src); ok {
		allowed = true
	} else if si, ok := c.idx.SiteOf(src); ok {
		_, allowed = slices.BinarySearch(r.sites, si)
	} else {
		return DenyUnknownSrc
	}
	if !allowed {
		return DenyClient
	}
	if !matchService(r.proto, r.port, proto, port, echo) {
		return DenyPort
	}
	return Allow
}

func (r *vipRule) hasClient(a uint32) bool {
	_, ok := slices.BinarySearch(r.clients, a)
	return ok
}

// vipRule finds the rule of a VIP (nil if none).
func (c *Compiled) vipRule(vip uint32) *vipRule {
	if i, ok := c.idx.VIP(vip); ok {
		return &c.vipList[i]
	}
	return nil
}
