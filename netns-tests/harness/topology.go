//go:build linux

package harness

// The EGW end-to-end topology (docs/ARCHITECTURE.md, "Topology"), one namespace per box:
//
//	                           ┌──────────── wan (bridge br0, underlay 203.0.113.0/24) ────────────┐
//	                           │ u-c                          u-a                           u-b     │
//	                           └──┬──────────────────────────────┬──────────────────────────────┬───┘
//	                      wan0 .1 │                      wan0 .2 │                      wan0 .3 │
//	                        ┌─────┴─────┐                  ┌─────┴─────┐                  ┌─────┴─────┐
//	                        │    gwc    │ cloudgateway     │    gwa    │ edgegateway      │    gwb    │ edgegateway
//	                        │ vp0 192.168.9.0/24           │ vp0 192.168.0.0/24           │ vp0 172.16.5.0/24
//	                        │ lan0 10.1.0.1/24             │ lan0 10.0.0.1/24             │ lan0 10.0.0.1/24
//	                        └─────┬─────┘                  └──┬─────┬──┘                  └─────┬─────┘
//	                         eth0 │                      eth0 │     │ eth0                 eth0 │
//	                        ┌─────┴─────┐          ┌──────────┴┐   ┌┴──────────┐          ┌─────┴─────┐
//	                        │ c10       │          │ a20       │   │ a21       │          │ b10       │
//	                        │ 10.1.0.10 │          │ 10.0.0.20 │   │ 10.0.0.21 │          │ 10.0.0.10 │
//	                        │ (service) │          │ (allowed) │   │ (denied)  │          │ (service) │
//	                        └───────────┘          └───────────┘   └───────────┘          └───────────┘
//
// Site A and site B both use 10.0.0.0/24 and even the same gateway address: they are
// isolated by construction (no route, no link between them). Each host has exactly one route
// besides its LAN: its site's VP CIDR via its gateway's LAN address. A gateway's LAN leg is a
// bridge (lan0) with one veth port per host; the TUN (vp0) is created later by the daemon.

import (
	"fmt"
	"net/netip"
)

// HostSpec describes one host on a site LAN.
type HostSpec struct {
	Name string     // short namespace name, e.g. "a20"
	IP   netip.Addr // on the site LAN
}

// SiteSpec describes one site: its gateway and its LAN.
type SiteSpec struct {
	Site       string       // ESite name, e.g. "site-a"
	Gateway    string       // EGateway name, e.g. "edge-a"
	NS         string       // short namespace name of the gateway, e.g. "gwa"
	Key        string       // one letter used in link names ("c", "a", "b")
	Underlay   netip.Prefix // gateway's underlay address with the underlay's length
	LAN        netip.Prefix // gateway's LAN address with the LAN's length
	VPCIDR     netip.Prefix // the gateway's virtual-presence CIDR
	Hosts      []HostSpec
	Cloud      bool // true for the cloud site (runs cloudgateway)
	ListenPort int  // WireGuard UDP port of the gateway (0: any)
	// NAT, if set, puts a NAT box between the gateway and the underlay (nat.go): the NAT
	// box holds Underlay, the gateway only Inside.
	NAT NATKind
	// Inside is the gateway's address on the link to its NAT box, with the link's length;
	// the NAT box takes the first address of the prefix. Used only with NAT.
	Inside netip.Prefix
}

// Spec is a whole topology.
type Spec struct {
	Sites []SiteSpec
}

// DefaultSpec is the topology of issue 6: a cloud site and two edge sites whose LANs are
// both 10.0.0.0/24.
func DefaultSpec() Spec {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	return Spec{Sites: []SiteSpec{
		{Site: "cloud", Gateway: "cloud", NS: "gwc", Key: "c", Cloud: true, ListenPort: 51820,
			Underlay: p("203.0.113.1/24"), LAN: p("10.1.0.1/24"), VPCIDR: p("192.168.9.0/24"),
			Hosts: []HostSpec{{Name: "c10", IP: a("10.1.0.10")}}},
		{Site: "site-a", Gateway: "edge-a", NS: "gwa", Key: "a",
			Underlay: p("203.0.113.2/24"), LAN: p("10.0.0.1/24"), VPCIDR: p("192.168.0.0/24"),
			Hosts: []HostSpec{{Name: "a20", IP: a("10.0.0.20")}, {Name: "a21", IP: a("10.0.0.21")}}},
		{Site: "site-b", Gateway: "edge-b", NS: "gwb", Key: "b",
			Underlay: p("203.0.113.3/24"), LAN: p("10.0.0.1/24"), VPCIDR: p("172.16.5.0/24"),
			Hosts: []HostSpec{{Name: "b10", IP: a("10.0.0.10")}}},
	}}
}

// Host is a built host namespace.
type Host struct {
	Name string     // short name
	NS   string     // full namespace name
	IP   netip.Addr // LAN address
	Dev  string     // its LAN interface ("eth0")
	Port string     // the gateway-side veth (a port of lan0), in the gateway's namespace
	Site *Site
}

// Site is a built site.
type Site struct {
	SiteSpec
	GWNS  string // full namespace name of the gateway
	NATNS string // full namespace name of its NAT box ("" without NAT)
	Hosts map[string]*Host
}

// Topology is a built topology; Close of its Lab removes it.
type Topology struct {
	Lab   *Lab
	WAN   string // full name of the underlay namespace
	Sites map[string]*Site
	order []string
}

// Site returns the site by ESite name; it panics on a name that is not in the spec, which
// is a bug in the test, not a runtime condition.
func (t *Topology) Site(name string) *Site {
	s, ok := t.Sites[name]
	if !ok {
		panic("harness: no site " + name)
	}
	return s
}

// Host returns a host by short name.
func (t *Topology) Host(name string) *Host {
	for _, s := range t.Sites {
		if h, ok := s.Hosts[name]; ok {
			return h
		}
	}
	panic("harness: no host " + name)
}

// SiteList returns the sites in spec order.
func (t *Topology) SiteList() []*Site {
	out := make([]*Site, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, t.Sites[n])
	}
	return out
}

// Build creates spec's namespaces, links, addresses and routes in l.
func Build(l *Lab, spec Spec) (*Topology, error) {
	t := &Topology{Lab: l, Sites: map[string]*Site{}}
	var err error
	if t.WAN, err = l.AddNS("wan"); err != nil {
		return nil, err
	}
	if err := l.Bridge(t.WAN, "br0", ""); err != nil {
		return nil, err
	}
	for _, ss := range spec.Sites {
		s := &Site{SiteSpec: ss, Hosts: map[string]*Host{}}
		if s.GWNS, err = l.AddNS(ss.NS); err != nil {
			return nil, err
		}
		// Underlay leg: the gateway's own, or its NAT box's (nat.go).
		if ss.NAT != "" {
			if err := t.buildNAT(l, s, spec); err != nil {
				return nil, err
			}
		} else {
			upLink := "u-" + ss.Key
			if err := l.Veth(t.WAN, upLink, s.GWNS, "wan0"); err != nil {
				return nil, err
			}
			if err := l.Enslave(t.WAN, upLink, "br0"); err != nil {
				return nil, err
			}
			if err := l.Addr(s.GWNS, "wan0", ss.Underlay.String()); err != nil {
				return nil, err
			}
		}
		// LAN leg: a bridge with one port per host.
		if err := l.Bridge(s.GWNS, "lan0", ss.LAN.String()); err != nil {
			return nil, err
		}
		if err := l.EnableForwarding(s.GWNS); err != nil {
			return nil, err
		}
		for _, hs := range ss.Hosts {
			h := &Host{Name: hs.Name, IP: hs.IP, Dev: "eth0", Port: "h-" + hs.Name, Site: s}
			if h.NS, err = l.AddNS(hs.Name); err != nil {
				return nil, err
			}
			if err := l.Veth(s.GWNS, h.Port, h.NS, h.Dev); err != nil {
				return nil, err
			}
			if err := l.Enslave(s.GWNS, h.Port, "lan0"); err != nil {
				return nil, err
			}
			cidr := netip.PrefixFrom(hs.IP, ss.LAN.Bits())
			if !ss.LAN.Masked().Contains(hs.IP) {
				return nil, fmt.Errorf("harness: host %s %s outside site %s LAN %s", hs.Name, hs.IP, ss.Site, ss.LAN)
			}
			if err := l.Addr(h.NS, h.Dev, cidr.String()); err != nil {
				return nil, err
			}
			if err := l.Route(h.NS, ss.VPCIDR.String(), ss.LAN.Addr().String()); err != nil {
				return nil, err
			}
			s.Hosts[hs.Name] = h
		}
		t.Sites[ss.Site] = s
		t.order = append(t.order, ss.Site)
	}
	return t, nil
}
