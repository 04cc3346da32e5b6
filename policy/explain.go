package policy

import (
	"fmt"
	"net/netip"

	"github.com/egw-project/egw/internal/ip4"
)

// What decided a verdict, for Explanation.DecidedBy.
const (
	ByServer   = "server"    // an EPolicy names the client's EServer
	BySite     = "site"      // an EPolicy allows the client's whole site
	ByNoPolicy = "no policy" // nothing allows it (default deny)
	ByNoTarget = "not a service"
)

// Explanation says whether src may reach dst and what decided it. It is for people
// (egwctl explain); the hot path uses the Check methods.
type Explanation struct {
	Allowed   bool
	DecidedBy string // ByServer, BySite, ByNoPolicy, ByNoTarget
	Policy    string // the EPolicy that allowed it, when known
	Server    string // the EServer, when DecidedBy is ByServer
	Site      string // the allowed site, when DecidedBy is BySite
	Service   string // the EService behind dst
	Expose    string // its ServiceExpose
	Protocol  string // the service's protocol and port: only these pass (and ICMP echo)
	Port      uint16
}

func (e Explanation) String() string {
	verdict := "deny"
	if e.Allowed {
		verdict = "allow"
	}
	s := fmt.Sprintf("%s (by %s", verdict, e.DecidedBy)
	if e.Policy != "" {
		s += ", policy " + e.Policy
	}
	if e.Server != "" {
		s += ", server " + e.Server
	}
	if e.Site != "" {
		s += ", site " + e.Site
	}
	s += ")"
	if e.Service != "" {
		s += fmt.Sprintf(" service %s via %s, %s/%d only", e.Service, e.Expose, e.Protocol, e.Port)
	}
	return s
}

// Explain says whether src may reach dst and why. dst is a VIP of this site (src a site
// client) or a hosted service's overlay address (src an overlay address).
func (c *Compiled) Explain(src, dst netip.Addr) Explanation {
	s, d := ip4.U32(src), ip4.U32(dst)
	if r := c.vipRule(d); r != nil {
		v := r.v
		e := Explanation{Service: v.Service, Expose: v.Expose, Protocol: v.Protocol, Port: v.Port, DecidedBy: ByNoPolicy}
		if !r.valid {
			return e
		}
		if r.hasClient(s) {
			e.Allowed, e.DecidedBy = true, ByServer
			for _, dec := range v.Decisions {
				if dec.Server != "" && dec.IP == src.Unmap() {
					e.Policy, e.Server = dec.Policy, dec.Server
					break
				}
			}
			return e
		}
		if r.allowSite {
			e.Allowed, e.DecidedBy, e.Site = true, BySite, c.site
			for _, dec := range v.Decisions {
				if dec.Server == "" {
					e.Policy = dec.Policy
					if dec.Site != "" {
						e.Site = dec.Site
					}
					break
				}
			}
		}
		return e
	}
	if i, ok := c.hosted[d]; ok {
		r := &c.hostedList[i]
		h := r.h
		e := Explanation{Service: h.Service, Expose: h.Expose, Protocol: h.Protocol, Port: h.Port, DecidedBy: ByNoPolicy}
		if !r.valid {
			return e
		}
		if si, ok := c.idx.SiteOf(s); ok {
			e.Site = c.idx.SiteName(si)
		}
		if c.CheckHosted(d, s, r.proto, r.port, false) == Allow {
			e.Allowed, e.DecidedBy = true, BySite
		}
		return e
	}
	return Explanation{DecidedBy: ByNoTarget}
}
