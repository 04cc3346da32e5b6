package controlplane

import (
	"fmt"
	"hash/fnv"
	"net/netip"

	"github.com/egw-project/egw/api"
)

// reconcile brings the IPAM state and the managed VirtualPresences in st in line with
// the objects in st, keeping every allocation that is still valid (allocations are
// stable across re-applies and restarts) and taking the lowest free address for new ones.
// Exhaustion leaves the allocation out; fillStatus reports it as a condition.
//
//   - every EGateway gets an overlay prefix; the hub (cfg.HubGateway) always the first;
//   - every exposed EService whose site has a gateway gets ov(S) in the lower half of
//     that gateway's prefix (first address excluded);
//   - every ServiceExpose × eSite with a gateway gets a managed VirtualPresence with a VIP
//     from the lower half of that gateway's VP CIDR, unless a hand-applied
//     VirtualPresence pins the VIP of that service at that site. Pins win over managed
//     allocations.
//
// validateState has run before, so pins are consistent.
func reconcile(st *State, cfg Config) { reconcileIndex(st, indexState(st), cfg) }

// reconcileIndex is reconcile with ix, an index of st as it is on entry.
func reconcileIndex(st *State, ix *index, cfg Config) {
	old := st.IPAM
	next := IPAM{Gateways: map[string]netip.Prefix{}, Services: map[string]ServiceAddr{}}

	// Overlay prefixes of gateways.
	hubPrefix := cfg.HubPrefix()
	usedPrefix := map[netip.Prefix]bool{hubPrefix: true}
	if _, ok := ix.gateways[cfg.HubGateway]; ok {
		next.Gateways[cfg.HubGateway] = hubPrefix
	}
	var pending []string
	for _, n := range ix.gatewayNames {
		if n == cfg.HubGateway {
			continue
		}
		p, ok := old.Gateways[n]
		if ok && p.Bits() == cfg.OverlayPrefixLen && p == p.Masked() && cfg.OverlayCIDR.Contains(p.Addr()) && !usedPrefix[p] {
			next.Gateways[n] = p
			usedPrefix[p] = true
			continue
		}
		pending = append(pending, n)
	}
	var i uint64 = 1
	for _, n := range pending {
		for {
			p, ok := subPrefix(cfg.OverlayCIDR, cfg.OverlayPrefixLen, i)
			if !ok {
				break // exhausted: fillStatus reports it
			}
			i++
			if !usedPrefix[p] {
				next.Gateways[n] = p
				usedPrefix[p] = true
				break
			}
		}
	}

	// Overlay addresses of exposed services.
	exposed := map[string]bool{}
	for _, e := range ix.exposes {
		if _, ok := ix.services[e.EServiceName]; ok {
			exposed[e.EServiceName] = true
		}
	}
	usedOv := map[string]map[netip.Addr]bool{}
	used := func(gw string) map[netip.Addr]bool {
		if usedOv[gw] == nil {
			usedOv[gw] = map[netip.Addr]bool{}
		}
		return usedOv[gw]
	}
	var pendingSvc []string
	for _, n := range sortedKeys(exposed) {
		g, ok := ix.siteGateway(ix.services[n].ESiteName)
		if !ok {
			continue
		}
		prefix, ok := next.Gateways[g.Metadata.Name]
		if !ok {
			continue
		}
		a, ok := old.Services[n]
		if ok && a.Gateway == g.Metadata.Name && inLowerHalf(prefix, a.Addr) && !used(a.Gateway)[a.Addr] {
			next.Services[n] = a
			used(a.Gateway)[a.Addr] = true
			continue
		}
		pendingSvc = append(pendingSvc, n)
	}
	for _, n := range pendingSvc {
		g, _ := ix.siteGateway(ix.services[n].ESiteName)
		gn := g.Metadata.Name
		if a, ok := allocLowest(next.Gateways[gn], used(gn)); ok {
			next.Services[n] = ServiceAddr{Gateway: gn, Addr: a}
			used(gn)[a] = true
		}
	}
	st.IPAM = next

	// VIPs: pins first, then kept managed allocations, then new ones.
	type pair struct{ service, site string }
	usedVIP := map[string]map[netip.Addr]bool{}
	usedV := func(gw string) map[netip.Addr]bool {
		if usedVIP[gw] == nil {
			usedVIP[gw] = map[netip.Addr]bool{}
		}
		return usedVIP[gw]
	}
	pinned := map[pair]bool{}
	for _, p := range ix.pins() {
		if p.site == "" {
			continue
		}
		pinned[pair{p.vp.EServiceName, p.site}] = true
		usedV(p.gateway.Metadata.Name)[p.ip] = true
	}
	type exposeSite struct{ expose, site string }
	// The managed VirtualPresence of each (expose, site); of duplicates the first by name.
	existing := make(map[exposeSite]*api.VirtualPresence, len(ix.managed))
	for _, vp := range ix.managed {
		k := exposeSite{vp.Metadata.Labels[LabelExpose], vp.ESiteName}
		if old, dup := existing[k]; !dup || vp.Metadata.Name < old.Metadata.Name {
			existing[k] = vp
		}
	}
	type want struct {
		key     exposeSite
		service string
		gw      *api.EGateway
		cidr    netip.Prefix // the gateway's VP CIDR
		vip     netip.Addr
	}
	cidrs := make(map[*api.EGateway]netip.Prefix, len(ix.gateways))
	cidrOf := func(g *api.EGateway) netip.Prefix {
		p, ok := cidrs[g]
		if !ok {
			p = vpCIDR(g)
			cidrs[g] = p
		}
		return p
	}
	var wants []*want
	for _, en := range ix.sortedExposes() {
		e := ix.exposes[en]
		seen := map[string]bool{}
		for _, s := range e.ESites {
			g, ok := ix.siteGateway(s)
			if !ok || seen[s] || pinned[pair{e.EServiceName, s}] {
				continue
			}
			seen[s] = true
			wants = append(wants, &want{key: exposeSite{en, s}, service: e.EServiceName, gw: g, cidr: cidrOf(g)})
		}
	}
	for _, w := range wants {
		vp, ok := existing[w.key]
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(vp.VirtualIP)
		gn := w.gw.Metadata.Name
		if err == nil && inLowerHalf(w.cidr, ip) && !usedV(gn)[ip] {
			w.vip = ip
			usedV(gn)[ip] = true
		}
	}
	for _, w := range wants {
		if w.vip.IsValid() {
			continue
		}
		gn := w.gw.Metadata.Name
		if ip, ok := allocLowest(w.cidr, usedV(gn)); ok {
			w.vip = ip
			usedV(gn)[ip] = true
		}
	}

	keep := make(map[string]bool, len(wants))
	for _, w := range wants {
		name := ""
		// st.Objects holds the existing one under its name: reconcile writes only new
		// names and those of the existing ones, each for its own (expose, site).
		old, exists := existing[w.key]
		if exists {
			name = old.Metadata.Name
		} else {
			name = managedName(w.key.expose, w.key.site, func(n string) bool {
				_, taken := st.Objects[api.KindVirtualPresence+"/"+n]
				return taken || keep[n]
			})
		}
		keep[name] = true
		vip := ""
		if w.vip.IsValid() {
			vip = w.vip.String()
		}
		if exists && isManagedAs(old, vip, w.service, w.key.site, w.key.expose) {
			continue // the common case: nothing to build
		}
		st.Objects[api.KindVirtualPresence+"/"+name] = &api.VirtualPresence{
			TypeMeta:  api.TypeMeta{Kind: api.KindVirtualPresence, APIVersion: "v1"},
			Metadata:  api.ObjectMeta{Name: name, Labels: map[string]string{LabelManaged: "true", LabelExpose: w.key.expose}},
			VirtualIP: vip, EServiceName: w.service, ESiteName: w.key.site,
		}
	}
	// Managed VirtualPresences no exposure wants any more. Those written above are all
	// kept, so the ones in the index are the only candidates.
	for _, vp := range ix.managed {
		if !keep[vp.Metadata.Name] {
			delete(st.Objects, api.KindVirtualPresence+"/"+vp.Metadata.Name)
		}
	}
}

// isManagedAs reports whether a stored VirtualPresence already is the managed one
// reconcile would write with these fields (a fast api.Equal for the fields it sets).
func isManagedAs(old *api.VirtualPresence, vip, service, site, expose string) bool {
	return old.VirtualIP == vip && old.EServiceName == service && old.ESiteName == site &&
		old.Kind == api.KindVirtualPresence && old.APIVersion == "v1" &&
		len(old.Metadata.Labels) == 2 && old.Metadata.Labels[LabelManaged] == "true" &&
		old.Metadata.Labels[LabelExpose] == expose && len(old.Metadata.Annotations) == 0
}

// managedName names the managed VirtualPresence of an exposure at a site:
// "<expose>-<site>", shortened with a hash to stay a valid name (≤ 63 characters), and
// suffixed if taken by an object of someone else.
func managedName(expose, site string, taken func(string) bool) string {
	base := expose + "-" + site
	if len(base) > 63 {
		base = base[:54] + "-" + hash8(base)
	}
	name := base
	for i := 2; taken(name); i++ {
		suffix := fmt.Sprintf("-%d", i)
		if len(base)+len(suffix) > 63 {
			name = base[:63-len(suffix)] + suffix
		} else {
			name = base + suffix
		}
	}
	return name
}

func hash8(s string) string {
	h := fnv.New32a()
	h.Write([]byte(s))
	return fmt.Sprintf("%08x", h.Sum32())
}
