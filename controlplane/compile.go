package controlplane

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/egw-project/egw/api"
)

// Compile turns the objects and the IPAM state into one snapshot per gateway that has an
// overlay prefix. It is a pure function: the same input gives the same output, and it
// neither reads the store nor the clock. Revisions are left 0; the Server sets them.
//
// Default deny: a VIP's ACL lists only EServers of the consuming site that a policy of the
// exposure names, or the whole site if a policy names it; a reference to an object that
// does not exist grants nothing.
func Compile(objs []api.Object, ipam IPAM, cfg Config) map[string]*api.Snapshot {
	return CompileWith(objs, ipam, nil, cfg)
}

// CompileWith is Compile with the gateways' known UDP endpoints (Store.Endpoints), which
// become the Candidates of the peers linked gateways hold.
func CompileWith(objs []api.Object, ipam IPAM, eps map[string]GatewayEndpoints, cfg Config) map[string]*api.Snapshot {
	cfg = cfg.WithDefaults()
	ix := newIndex(objs)
	c := &compiler{ix: ix, ipam: ipam, cfg: cfg, names: ix.gatewayNames, eps: eps}
	c.exposures()
	out := make(map[string]*api.Snapshot, len(c.names))
	for _, n := range c.names {
		if s := c.gateway(ix.gateways[n]); s != nil {
			out[n] = s
		}
	}
	return out
}

type compiler struct {
	// hubs are the registered hub replicas: every edge lists them (hubPeers).
	hubs []HubInfo
	ix   *index
	ipam IPAM
	cfg  Config
	// names are the gateway names, sorted.
	names []string
	// vips are the usable VIPs by consuming site; hosted the exposed services by home
	// site.
	vips   map[string][]api.VIP
	hosted map[string][]api.Hosted
	// reach maps a home site to the gateways of the sites its hosted services are exposed
	// to (whether or not a policy allows them now): the sources an edge must tell apart.
	reach map[string]map[string]bool
	// peerIPs maps a gateway to its linked gateways (see api.Snapshot.Links) and, for each,
	// the AllowedIPs of that peer: the ov(S) of the peer's services exposed to the
	// gateway's site, and the peer's client half if the gateway hosts a service exposed to
	// the peer's site. Hubs are never in it.
	peerIPs map[string]map[string][]netip.Prefix
	// homeLinks maps a gateway to the gateways of the sites its site's services are
	// exposed to (hubs left out): the links it owns.
	homeLinks map[string]map[string]bool
	// eps are the gateways' known UDP endpoints (may be nil).
	eps map[string]GatewayEndpoints
	// managedVIP, if set, gives the VIP of the managed VirtualPresence of an (expose,
	// site) pair, besides those in the index (the store keeps most of them compactly).
	managedVIP func(expose, site string) (netip.Addr, bool)
	// focus, if set, is the one site whose gateways' snapshots and links are wanted:
	// exposures are then looked at only for that site as a consumer and for the services
	// at that site (the rest of a neighbourhood index is incomplete anyway).
	focus string
}

// gatewayPrefix is the overlay prefix of a gateway that serves an existing site.
func (c *compiler) sitePrefix(site string) (*api.EGateway, netip.Prefix, bool) {
	g, ok := c.ix.siteGateway(site)
	if !ok {
		return nil, netip.Prefix{}, false
	}
	p, ok := c.ipam.Gateways[g.Metadata.Name]
	return g, p, ok
}

// exposures computes every usable VIP and hosted service.
func (c *compiler) exposures() {
	ix := c.ix
	c.vips = map[string][]api.VIP{}
	c.hosted = map[string][]api.Hosted{}
	c.reach = map[string]map[string]bool{}
	c.peerIPs = map[string]map[string][]netip.Prefix{}
	c.homeLinks = map[string]map[string]bool{}

	// The VIP of (service, consuming site): a pin, else the managed VirtualPresence of
	// the exposure at that site.
	type pair struct{ service, site string }
	pinned := map[pair]netip.Addr{}
	for _, p := range ix.pins() {
		if p.site != "" && inLowerHalf(vpCIDR(p.gateway), p.ip) {
			pinned[pair{p.vp.EServiceName, p.site}] = p.ip
		}
	}
	managed := make(map[[2]string]netip.Addr, len(ix.managed)) // expose, site
	for _, vp := range ix.managed {
		if ip, err := netip.ParseAddr(vp.VirtualIP); err == nil {
			managed[[2]string{vp.Metadata.Labels[LabelExpose], vp.ESiteName}] = ip
		}
	}

	hostedBy := map[string]*api.Hosted{} // service -> entry
	for _, en := range ix.sortedExposes() {
		e := ix.exposes[en]
		svc, ok := ix.services[e.EServiceName]
		if !ok {
			continue
		}
		homeGw, _, ok := c.sitePrefix(svc.ESiteName)
		if !ok {
			continue
		}
		ov, ok := c.ipam.Services[svc.Metadata.Name]
		if !ok || ov.Gateway != homeGw.Metadata.Name {
			continue
		}
		svcIP, err := netip.ParseAddr(svc.IP)
		if err != nil || svc.Port < 1 || svc.Port > 65535 {
			continue
		}
		policies := make([]*api.EPolicy, 0, len(e.EPolicys))
		for _, pn := range e.EPolicys {
			if p, ok := ix.policies[pn]; ok && !slices.Contains(policies, p) {
				policies = append(policies, p)
			}
		}
		h := hostedBy[svc.Metadata.Name]
		if h == nil {
			h = &api.Hosted{Service: svc.Metadata.Name, Expose: en, ServiceOverlay: ov.Addr, ServiceIP: svcIP,
				Protocol: strings.ToUpper(svc.Protocol), Port: uint16(svc.Port)}
			hostedBy[svc.Metadata.Name] = h
		}
		seen := map[string]bool{}
		for _, site := range e.ESites {
			if seen[site] || (c.focus != "" && site != c.focus && svc.ESiteName != c.focus) {
				continue
			}
			seen[site] = true
			siteGw, prefix, ok := c.sitePrefix(site)
			if !ok {
				continue
			}
			if c.reach[svc.ESiteName] == nil {
				c.reach[svc.ESiteName] = map[string]bool{}
			}
			c.reach[svc.ESiteName][siteGw.Metadata.Name] = true
			c.link(homeGw.Metadata.Name, siteGw.Metadata.Name, ov.Addr, prefix)
			vip, ok := pinned[pair{svc.Metadata.Name, site}]
			if !ok {
				if vip, ok = managed[[2]string{en, site}]; !ok && c.managedVIP != nil {
					vip, ok = c.managedVIP(en, site)
				}
				if !ok {
					continue
				}
			}
			v := api.VIP{
				VIP: vip, Service: svc.Metadata.Name, Expose: en,
				Protocol: strings.ToUpper(svc.Protocol), Port: uint16(svc.Port),
				DNSName: fqdn(e.DNSName), DomainName: svc.DomainName,
				HomeSite: svc.ESiteName, HomeGateway: homeGw.Metadata.Name, ServiceOverlay: ov.Addr,
			}
			if svc.ESiteName == site {
				v.Local, v.ServiceIP = true, svcIP
			}
			for _, p := range policies {
				for _, sn := range p.AllowedServers {
					s, ok := ix.servers[sn]
					if !ok || s.ESiteName != site {
						continue
					}
					ip, err := netip.ParseAddr(s.IP)
					if err != nil {
						continue
					}
					if !slices.Contains(v.AllowedClients, ip) {
						v.AllowedClients = append(v.AllowedClients, ip)
					}
					v.Decisions = append(v.Decisions, api.Decision{Policy: p.Metadata.Name, Server: sn, IP: ip})
				}
				if slices.Contains(p.AllowedSites, site) {
					v.AllowSite = true
					v.Decisions = append(v.Decisions, api.Decision{Policy: p.Metadata.Name, Site: site})
				}
			}
			slices.SortFunc(v.AllowedClients, netip.Addr.Compare)
			c.vips[site] = append(c.vips[site], v)
			if (v.AllowSite || len(v.AllowedClients) > 0) && !slices.Contains(h.AllowedSites, site) {
				h.AllowedSites = append(h.AllowedSites, site)
				// Only the consuming gateway's client half: ov(c) addresses are leased
				// there, so neither the hub nor the service's gateway passes anything from
				// (or replies to) the rest of that prefix, such as the gateway's own address.
				h.AllowedPrefixes = append(h.AllowedPrefixes, clientHalf(prefix))
			}
		}
	}
	for _, n := range sortedKeys(hostedBy) {
		h := hostedBy[n]
		site := ix.services[n].ESiteName
		c.hosted[site] = append(c.hosted[site], *h)
	}
	for _, list := range c.vips {
		slices.SortFunc(list, func(a, b api.VIP) int { return a.VIP.Compare(b.VIP) })
	}
}

// link records that the service with overlay address ov at home's site is exposed to the
// site of consumer, whose overlay prefix is prefix: consumer holds home as a peer for ov,
// home holds consumer as a peer for consumer's client half. A gateway is not its own
// peer, and hubs are never linked (edges reach a hub on their own session with it).
func (c *compiler) link(home, consumer string, ov netip.Addr, prefix netip.Prefix) {
	if home == consumer || home == c.cfg.HubGateway || consumer == c.cfg.HubGateway {
		return
	}
	add := func(gw, peer string, p netip.Prefix) {
		m := c.peerIPs[gw]
		if m == nil {
			m = map[string][]netip.Prefix{}
			c.peerIPs[gw] = m
		}
		if !slices.Contains(m[peer], p) {
			m[peer] = append(m[peer], p)
		}
	}
	add(consumer, home, netip.PrefixFrom(ov, 32))
	add(home, consumer, clientHalf(prefix))
	if c.homeLinks[home] == nil {
		c.homeLinks[home] = map[string]bool{}
	}
	c.homeLinks[home][consumer] = true
}

// linksOf returns the links gateway home owns (see homeLinks), by overlay IP, sorted.
func (c *compiler) linksOf(home string) []api.Link {
	pa, ok := c.ipam.Gateways[home]
	if !ok {
		return nil
	}
	var out []api.Link
	for n := range c.homeLinks[home] {
		if pb, ok := c.ipam.Gateways[n]; ok {
			out = append(out, newLink(firstAddr(pa), firstAddr(pb)))
		}
	}
	slices.SortFunc(out, compareLink)
	return out
}

func newLink(a, b netip.Addr) api.Link {
	if b.Less(a) {
		a, b = b, a
	}
	return api.Link{A: a, B: b}
}

// edgePeer is the peer entry of linked gateway n in the snapshot of another gateway.
func (c *compiler) edgePeer(n string, allowed []netip.Prefix) (api.Peer, bool) {
	o, ok := c.ix.gateways[n]
	if !ok {
		return api.Peer{}, false
	}
	p, ok := c.ipam.Gateways[n]
	if !ok {
		return api.Peer{}, false
	}
	allowed = slices.Clone(allowed)
	slices.SortFunc(allowed, comparePrefix)
	return api.Peer{Name: n, Site: o.ESiteName, PublicKey: o.PublicKey, Endpoint: o.Endpoint,
		AllowedIPs: allowed, OverlayIP: firstAddr(p), Candidates: c.eps[n].Candidates()}, true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// links lists every linked pair by overlay IP, A < B, sorted.
func (c *compiler) links() []api.Link {
	var out []api.Link
	for gw, peers := range c.peerIPs {
		pa, ok := c.ipam.Gateways[gw]
		if !ok {
			continue
		}
		a := firstAddr(pa)
		for peer := range peers {
			pb, ok := c.ipam.Gateways[peer]
			if !ok {
				continue
			}
			if b := firstAddr(pb); a.Less(b) {
				out = append(out, api.Link{A: a, B: b})
			}
		}
	}
	slices.SortFunc(out, compareLink)
	return slices.Compact(out)
}

func compareLink(x, y api.Link) int {
	if c := x.A.Compare(y.A); c != 0 {
		return c
	}
	return x.B.Compare(y.B)
}

func fqdn(s string) string {
	if s == "" || strings.HasSuffix(s, ".") {
		return s
	}
	return s + "."
}

// gateway compiles the snapshot of g, or nil if g has no overlay prefix yet.
func (c *compiler) gateway(g *api.EGateway) *api.Snapshot {
	ix, cfg := c.ix, c.cfg
	name := g.Metadata.Name
	prefix, ok := c.ipam.Gateways[name]
	if !ok {
		return nil
	}
	vp := vpCIDR(g)
	s := &api.Snapshot{
		Gateway: name, Site: g.ESiteName, Hub: name == cfg.HubGateway,
		OverlayCIDR: cfg.OverlayCIDR, OverlayPrefix: prefix, OverlayIP: firstAddr(prefix),
		CloudOverlayIP: cfg.HubOverlayIP(), VPCIDR: vp, DNSZone: cfg.DNSZone,
	}
	if vp.IsValid() {
		s.VPAddr = firstAddr(vp)
	}
	// A gateway of a site that does not exist, or not the one serving its site, serves
	// nothing.
	sg, ok := ix.siteGateway(g.ESiteName)
	serves := ok && sg == g
	if s.Hub {
		// The hub tells every gateway's sources apart (relay, its own hosted services).
		for _, n := range c.names {
			o := ix.gateways[n]
			p, ok := c.ipam.Gateways[n]
			if !ok {
				continue
			}
			s.Gateways = append(s.Gateways, api.GatewayRef{Name: n, Site: o.ESiteName, OverlayPrefix: p})
			if n != name {
				s.Peers = append(s.Peers, api.Peer{Name: n, Site: o.ESiteName, PublicKey: o.PublicKey,
					Endpoint: o.Endpoint, AllowedIPs: []netip.Prefix{p}, OverlayIP: firstAddr(p)})
			}
		}
	} else {
		// An edge sees overlay sources only of the sites its hosted services are exposed
		// to (plus itself and the hub): it lists just those gateways, so its snapshot
		// does not grow, or move, with every gateway added elsewhere.
		list := map[string]bool{name: true, cfg.HubGateway: true}
		if serves {
			for n := range c.reach[g.ESiteName] {
				list[n] = true
			}
		}
		for _, n := range sortedKeys(list) {
			o, ok := ix.gateways[n]
			if !ok {
				continue
			}
			if p, ok := c.ipam.Gateways[n]; ok {
				s.Gateways = append(s.Gateways, api.GatewayRef{Name: n, Site: o.ESiteName, OverlayPrefix: p})
			}
		}
	}
	if !s.Hub {
		hub := api.Peer{Name: cfg.HubGateway, Site: cfg.HubSite, PublicKey: cfg.PublicKey, Endpoint: cfg.Endpoint,
			AllowedIPs: []netip.Prefix{cfg.OverlayCIDR}, OverlayIP: cfg.HubOverlayIP(), Hub: true}
		if h, ok := ix.gateways[cfg.HubGateway]; ok {
			hub.Site = h.ESiteName
			if h.PublicKey != "" {
				hub.PublicKey = h.PublicKey
			}
			if h.Endpoint != "" {
				hub.Endpoint = h.Endpoint
			}
		}
		s.Peers = append([]api.Peer{hub}, hubPeers(cfg, c.hubs)...)
		// The gateways linked with this one, each on its own end-to-end session. Only the
		// site's serving gateway has any: exposures name sites, and a site's traffic goes
		// through its serving gateway.
		if serves {
			peers := c.peerIPs[name]
			for _, n := range sortedKeys(peers) {
				if p, ok := c.edgePeer(n, peers[n]); ok {
					s.Peers = append(s.Peers, p)
				}
			}
		}
	}
	if serves {
		s.VIPs = c.vips[g.ESiteName]
		s.Hosted = c.hosted[g.ESiteName]
	}
	if s.Hub {
		s.Links = c.links()
	}
	return s
}
