package controlplane

import (
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/api"
)

// How a refresh finds the snapshots a write affects.
//
// A gateway's snapshot is a function of its site's neighbourhood: the exposures naming
// the site and those of the services at the site, their services, policies and the
// servers those name (at the sites involved), the sites and gateways on either end, the
// managed VirtualPresences of those (exposure, site) pairs, the pins, the allocations and
// the endpoints of linked gateways. closure collects exactly those objects, and a
// compiler over them alone produces the same snapshot as one over the whole store.
//
// affected maps each changed object (in its old and new version) to the sites whose
// neighbourhood holds it: a site and the sites linked with it for an ESite or EGateway,
// the home site and the exposed-to sites for an EService or ServiceExpose, those of the
// exposures naming a policy, the server's own site and the home sites of the exposures
// whose policies name it, and so on. Only the gateways of those sites are recompiled.
//
// The hub's snapshot lists every gateway and every link, so it is assembled from parts
// kept between refreshes: the hub's own site compiled like any other, the gateway list
// (rebuilt when a gateway or prefix changes) and the links of each home site (replaced
// when that site is recompiled). It is assembled and hashed again only when one of its
// parts changed.

// workCounters count what the refreshes did (Server.Work).
type workCounters struct {
	writes, compiled, validated, refreshes atomic.Uint64
	lastCompiled, lastValidated, lastSites atomic.Int64
}

// WorkStats is what the control plane did to keep the snapshots up to date: the
// cumulative counts, and those of the latest refresh (the latest write, unless several
// writes were taken up by one refresh).
type WorkStats struct {
	// Writes is the number of committed writes compiled; Refreshes the number of
	// refreshes that compiled something.
	Writes, Refreshes uint64
	// SnapshotsCompiled counts gateway snapshots compiled (the hub's when reassembled);
	// ObjectsValidated the objects the writes' validation looked at.
	SnapshotsCompiled, ObjectsValidated uint64
	// LastSnapshotsCompiled, LastObjectsValidated and LastSitesAffected are those of the
	// latest refresh.
	LastSnapshotsCompiled, LastObjectsValidated, LastSitesAffected int64
}

// Work returns the work counters.
func (s *Server) Work() WorkStats {
	w := &s.work
	return WorkStats{Writes: w.writes.Load(), Refreshes: w.refreshes.Load(), SnapshotsCompiled: w.compiled.Load(),
		ObjectsValidated: w.validated.Load(), LastSnapshotsCompiled: w.lastCompiled.Load(),
		LastObjectsValidated: w.lastValidated.Load(), LastSitesAffected: w.lastSites.Load()}
}

// hubParts are what the hub's snapshot is assembled from.
type hubParts struct {
	// own is the hub's snapshot as a compile of its site's neighbourhood gives it; its
	// Gateways, Peers and Links are replaced by the parts below.
	own *api.Snapshot
	// gateways and peers list every gateway with a prefix (the hub not among peers).
	gateways []api.GatewayRef
	peers    []api.Peer
	// links holds the links each home site owns, counted in linkCount; linkList is their
	// sorted union, nil when it must be rebuilt.
	links     map[string][]api.Link
	linkCount map[api.Link]int
	linkList  []api.Link
}

func newHubParts() *hubParts {
	return &hubParts{links: map[string][]api.Link{}, linkCount: map[api.Link]int{}}
}

// setLinks replaces the links site owns and reports whether the union changed.
func (h *hubParts) setLinks(site string, links []api.Link) bool {
	old := h.links[site]
	if slices.Equal(old, links) {
		return false
	}
	changed := false
	for _, l := range old {
		if h.linkCount[l]--; h.linkCount[l] == 0 {
			delete(h.linkCount, l)
			changed = true
		}
	}
	for _, l := range links {
		if h.linkCount[l]++; h.linkCount[l] == 1 {
			changed = true
		}
	}
	if len(links) == 0 {
		delete(h.links, site)
	} else {
		h.links[site] = links
	}
	if changed {
		h.linkList = nil
	}
	return changed
}

// setGateways rebuilds the gateway list and peers of the hub from m.
func (h *hubParts) setGateways(m *model) {
	h.gateways, h.peers = nil, nil
	for _, n := range m.sortedNames(api.KindEGateway) {
		p, ok := m.ipam.Gateways[n]
		if !ok {
			continue
		}
		o := m.gateways[n]
		h.gateways = append(h.gateways, api.GatewayRef{Name: n, Site: o.ESiteName, OverlayPrefix: p})
		if n != m.cfg.HubGateway {
			h.peers = append(h.peers, api.Peer{Name: n, Site: o.ESiteName, PublicKey: o.PublicKey,
				Endpoint: o.Endpoint, AllowedIPs: []netip.Prefix{p}, OverlayIP: firstAddr(p)})
		}
	}
}

// assemble returns the hub's snapshot from the parts.
func (h *hubParts) assemble() *api.Snapshot {
	s := *h.own
	s.Gateways, s.Peers = h.gateways, h.peers
	if h.linkList == nil && len(h.linkCount) > 0 {
		h.linkList = make([]api.Link, 0, len(h.linkCount))
		for l := range h.linkCount {
			h.linkList = append(h.linkList, l)
		}
		slices.SortFunc(h.linkList, compareLink)
	}
	s.Links = h.linkList
	return &s
}

// refresh brings the snapshots up to date with the store's model: a full compile the
// first time or after the store reloaded, else only the gateways the queued changes
// affect. A snapshot whose content changed gets the model's revision and wakes its
// watchers; the others keep theirs.
func (s *Server) refresh() error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	if err := s.store.sync(); err != nil {
		return err
	}
	s.store.mu.RLock()
	defer s.store.mu.RUnlock()
	m := s.store.m
	changes := s.store.takeChanges()
	s.mu.Lock()
	compiledRev := s.compiledRev
	s.mu.Unlock()
	if len(changes) == 0 && m.rev <= compiledRev {
		return nil
	}
	full := compiledRev < 0
	validated := 0
	for _, c := range changes {
		full = full || c.full
		validated += c.validated
	}
	var out map[string]*api.Snapshot
	var nSites int
	t0 := time.Now()
	if !full {
		var sites set
		most := 0 // below 64 sites either way is cheap
		if m.gwsBySite.size() >= 64 {
			most = m.gwsBySite.size() / 2
		}
		out, sites = s.compileChanged(m, changes, most)
		// A change that concerns most sites (a policy every exposure names, the hub's
		// key) is cheaper compiled at once.
		full = out == nil
		nSites = len(sites)
	}
	if full {
		out = s.compileAll(m)
		nSites = len(m.sites)
	}
	observeCompile(time.Since(t0))

	changed := map[string]*api.Snapshot{}
	var removed []string
	var h snapHasher
	for gw, snap := range out {
		if snap == nil {
			if _, ok := s.hashes[gw]; ok {
				delete(s.hashes, gw)
				removed = append(removed, gw)
			}
			continue
		}
		snap.StoreID = s.storeID
		sum := h.sum(snap)
		if prev, ok := s.hashes[gw]; ok && prev == sum {
			continue
		}
		s.hashes[gw] = sum
		snap.Revision = m.rev
		changed[gw] = snap
	}
	if full {
		for gw := range s.hashes {
			if _, ok := out[gw]; !ok {
				delete(s.hashes, gw)
				removed = append(removed, gw)
			}
		}
	}
	if len(changed) > 0 || len(removed) > 0 {
		s.log.Info("snapshots changed", "revision", m.rev, "changed", len(changed), "removed", len(removed), "compiled", len(out))
	}

	// Past Options.KeepDecoded gateways, edges' snapshots are kept gzipped; the ones kept
	// decoded before are converted when the fleet first grows past it.
	gzipped := s.opts.KeepDecoded < 0 || len(s.hashes) > s.opts.KeepDecoded
	entries := make(map[string]*gwSnap, len(changed))
	for gw, snap := range changed {
		g, err := newGwSnap(snap, gw == s.cfg.HubGateway || !gzipped)
		if err != nil {
			return fmt.Errorf("encoding the snapshot of %s: %w", gw, err)
		}
		entries[gw] = g
	}
	if gzipped && !s.gzipped {
		s.mu.Lock()
		var decoded []*gwSnap
		for gw, g := range s.snaps {
			if _, ok := entries[gw]; !ok && g.snap != nil && gw != s.cfg.HubGateway {
				decoded = append(decoded, g)
			}
		}
		s.mu.Unlock()
		for _, g := range decoded {
			c, err := newGwSnap(g.snap, false)
			if err != nil {
				return fmt.Errorf("encoding the snapshot of %s: %w", g.snap.Gateway, err)
			}
			entries[g.snap.Gateway] = c
		}
	}
	s.gzipped = gzipped
	s.mu.Lock()
	for gw, g := range entries {
		s.setSnapLocked(gw, g)
		if _, ok := changed[gw]; ok {
			s.wakeLocked(gw)
		}
	}
	for _, gw := range removed {
		s.setSnapLocked(gw, nil)
		s.wakeLocked(gw)
	}
	s.compiledRev = m.rev
	s.mu.Unlock()
	s.setReady()

	w := &s.work
	w.refreshes.Add(1)
	w.writes.Add(uint64(len(changes)))
	w.compiled.Add(uint64(len(out)))
	w.validated.Add(uint64(validated))
	w.lastCompiled.Store(int64(len(out)))
	w.lastValidated.Store(int64(validated))
	w.lastSites.Store(int64(nSites))
	return nil
}

// setSnapLocked replaces (nil: removes) the snapshot of gw and keeps the prefix index.
// s.mu is held.
func (s *Server) setSnapLocked(gw string, g *gwSnap) {
	if old, ok := s.snaps[gw]; ok {
		if p := old.prefix.Masked(); p.IsValid() {
			if s.byPrefix[p] == gw {
				delete(s.byPrefix, p)
			}
			s.countLenLocked(p.Bits(), -1)
		}
		delete(s.snaps, gw)
	}
	if g == nil {
		return
	}
	s.snaps[gw] = g
	if p := g.prefix.Masked(); p.IsValid() {
		if other, taken := s.byPrefix[p]; !taken || gw < other {
			s.byPrefix[p] = gw
		}
		s.countLenLocked(p.Bits(), 1)
	}
}

// countLenLocked keeps prefixLens: the prefix lengths in use, longest first.
func (s *Server) countLenLocked(bits, d int) {
	before := s.lenCount[bits]
	s.lenCount[bits] += d
	if s.lenCount[bits] <= 0 {
		delete(s.lenCount, bits)
	}
	if (before == 0) != (s.lenCount[bits] == 0) {
		lens := make([]int, 0, len(s.lenCount))
		for b := range s.lenCount {
			lens = append(lens, b)
		}
		slices.SortFunc(lens, func(a, b int) int { return b - a })
		s.prefixLens = lens
	}
}

// compileAll compiles every gateway's snapshot from the whole model and rebuilds the
// hub's parts.
func (s *Server) compileAll(m *model) map[string]*api.Snapshot {
	objs := make([]api.Object, 0, m.count()-len(m.mvps))
	m.forEachButCompact(func(o api.Object) { objs = append(objs, o) })
	ix := m.subIndex(objs)
	c := &compiler{ix: ix, ipam: m.ipam, cfg: s.cfg, names: ix.gatewayNames, eps: m.eps, managedVIP: m.managedVIP, hubs: m.hubList()}
	c.exposures()
	out := make(map[string]*api.Snapshot, len(c.names))
	hub := newHubParts()
	for _, n := range c.names {
		snap := c.gateway(ix.gateways[n])
		out[n] = snap
		if n == s.cfg.HubGateway {
			hub.own = snap
		}
	}
	for home := range c.homeLinks {
		if g, ok := m.gateways[home]; ok {
			hub.setLinks(g.ESiteName, c.linksOf(home))
		}
	}
	hub.setGateways(m)
	s.hub = hub
	if hub.own != nil {
		out[s.cfg.HubGateway] = hub.assemble()
	}
	return out
}

// compileChanged compiles the snapshots the changes affect (nil for a gateway that has
// none any more) and returns them with the sites recompiled; or, if more than most sites
// are affected, compiles nothing and returns a nil map.
func (s *Server) compileChanged(m *model, changes []*change, most int) (map[string]*api.Snapshot, set) {
	sites, gws, hubGlobal := s.affected(m, changes)
	if len(sites) > most && most > 0 {
		return nil, sites
	}
	out := map[string]*api.Snapshot{}
	hub := s.cfg.HubGateway
	hubDirty := hubGlobal
	hubs := m.hubList()
	for _, site := range sites.sortedKeys() {
		ix := m.subIndex(m.closure(site))
		c := &compiler{ix: ix, ipam: m.ipam, cfg: s.cfg, names: ix.gatewayNames, eps: m.eps, managedVIP: m.managedVIP, focus: site, hubs: hubs}
		c.exposures()
		for gw := range m.gwsBySite.all(site) {
			snap := c.gateway(ix.gateways[gw])
			if gw == hub {
				s.hub.own = snap
				hubDirty = true
				continue
			}
			out[gw] = snap
		}
		var links []api.Link
		if g, ok := m.siteGateway(site); ok {
			links = c.linksOf(g.Metadata.Name)
		}
		if s.hub.setLinks(site, links) {
			hubDirty = true
		}
	}
	for gw := range gws {
		if _, ok := m.gateways[gw]; !ok {
			out[gw] = nil
			if gw == hub {
				s.hub.own = nil
			}
		}
	}
	if hubGlobal {
		s.hub.setGateways(m)
	}
	if _, ok := m.gateways[hub]; ok && hubDirty {
		if s.hub.own == nil {
			out[hub] = nil // no prefix
		} else {
			out[hub] = s.hub.assemble()
		}
	}
	return out, sites
}

// affected returns the sites whose gateways' snapshots (and hub parts) the changes may
// move, the gateways the changes name, and whether the hub's gateway list may move.
func (s *Server) affected(m *model, changes []*change) (sites, gws set, hubGlobal bool) {
	sites, gws = set{}, set{}
	add := func(site string) { sites[site] = struct{}{} }
	withLinked := func(site string) {
		add(site)
		m.linkedSites(site, sites)
	}
	home := func(svc string) {
		if v, ok := m.services[svc]; ok {
			add(v.ESiteName)
		}
	}
	exposure := func(en string) {
		if e, ok := m.exposes[en]; ok {
			home(e.EServiceName)
			for _, t := range e.ESites {
				add(t)
			}
		}
	}
	service := func(svc string) {
		home(svc)
		for en := range m.exposesByService.all(svc) {
			for _, t := range m.exposes[en].ESites {
				add(t)
			}
		}
	}
	allEdges := false
	for _, c := range changes {
		for _, oc := range c.objs {
			for _, o := range [2]api.Object{oc.old, oc.new} {
				switch v := o.(type) {
				case *api.ESite:
					withLinked(v.Metadata.Name)
				case *api.EGateway:
					gws[v.Metadata.Name] = struct{}{}
					withLinked(v.ESiteName)
					hubGlobal = true
					if v.Metadata.Name == s.cfg.HubGateway {
						allEdges = true // every edge's hub peer
					}
				case *api.EService:
					add(v.ESiteName)
					service(v.Metadata.Name)
				case *api.EServer:
					add(v.ESiteName)
					for p := range m.policiesByServer.all(v.Metadata.Name) {
						for en := range m.exposesByPolicy.all(p) {
							if e := m.exposes[en]; e != nil {
								home(e.EServiceName)
							}
						}
					}
				case *api.EPolicy:
					for en := range m.exposesByPolicy.all(v.Metadata.Name) {
						exposure(en)
					}
				case *api.ServiceExpose:
					home(v.EServiceName)
					for _, t := range v.ESites {
						add(t)
					}
				case *api.VirtualPresence:
					add(v.ESiteName)
					home(v.EServiceName)
				}
			}
		}
		for _, gw := range c.prefixes {
			gws[gw] = struct{}{}
			hubGlobal = true
			if g, ok := m.gateways[gw]; ok {
				withLinked(g.ESiteName)
			}
		}
		for _, svc := range c.services {
			service(svc)
		}
		for _, gw := range c.endpoints {
			if g, ok := m.gateways[gw]; ok {
				m.linkedSites(g.ESiteName, sites)
			}
		}
		for _, pp := range c.pinPairs {
			add(pp[1])
			home(pp[0])
		}
		if len(c.hubs) > 0 {
			allEdges = true // every edge's hub peers
		}
	}
	if allEdges {
		for site := range m.gwsBySite.keys() {
			add(site)
		}
	}
	return sites, gws, hubGlobal
}

// closure returns the objects the snapshots of site's gateways, its hosted services' relay
// rules and the links it owns depend on (see the comment at the top of this file).
func (m *model) closure(site string) []api.Object {
	var out []api.Object
	seen := map[api.Object]bool{}
	add := func(o api.Object) {
		if o != nil && !seen[o] {
			seen[o] = true
			out = append(out, o)
		}
	}
	sites := set{}
	addSite := func(s string) {
		if _, done := sites[s]; done {
			return
		}
		sites[s] = struct{}{}
		if o, ok := m.sites[s]; ok {
			add(o)
		}
		for gw := range m.gwsBySite.all(s) {
			add(m.gateways[gw])
		}
	}
	addSite(site)
	if g, ok := m.gateways[m.cfg.HubGateway]; ok {
		add(g)
	}
	// Exposures of services elsewhere consumed here: their service and its site; the
	// VIP at this site only.
	var servers []string
	policies := func(e *api.ServiceExpose) {
		for _, pn := range e.EPolicys {
			if p, ok := m.policies[pn]; ok && !seen[p] {
				add(p)
				servers = append(servers, p.AllowedServers...)
			}
		}
	}
	for en := range m.exposesBySite.all(site) {
		e := m.exposes[en]
		v, ok := m.services[e.EServiceName]
		if ok && v.ESiteName == site {
			continue // below
		}
		add(e)
		if ok {
			add(v)
			addSite(v.ESiteName)
		}
		for _, vp := range m.managedNames(pairKey{en, site}) {
			if v, ok := m.vps[vp]; ok {
				add(v) // kept as an object; the others' VIPs come from model.managedVIP
			}
		}
		policies(e)
	}
	// Exposures of the services here: every site they are exposed to.
	for svc := range m.servicesBySite.all(site) {
		v := m.services[svc]
		for en := range m.exposesByService.all(svc) {
			e := m.exposes[en]
			add(e)
			add(v)
			for _, t := range e.ESites {
				addSite(t)
				for _, vp := range m.managedNames(pairKey{en, t}) {
					if v, ok := m.vps[vp]; ok {
						add(v)
					}
				}
			}
			policies(e)
		}
	}
	// Servers count only at the sites involved (a client of a site consuming a service).
	for _, sn := range servers {
		if v, ok := m.servers[sn]; ok {
			if _, in := sites[v.ESiteName]; in {
				add(v)
			}
		}
	}
	return out
}
