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
func reconcile(st *State, cfg Config) {
	ix := indexState(st)
	old := st.IPAM
	next := IPAM{Gateways: map[string]netip.Prefix{}, Services: map[string]ServiceAddr{}}

	// Overlay prefixes of gateways.
	hubPrefix := cfg.HubPrefix()
	usedPrefix := map[netip.Prefix]bool{hubPrefix: true}
	if _, ok := ix.gateways[cfg.HubGateway]; ok {
		next.Gateways[cfg.HubGateway] = hubPrefix
	}
	var pending []string
	for _, n := range sortedKeys(ix.gateways) {
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
	existing := map[exposeSite]*api.VirtualPresence{}
	for _, n := range sortedKeys(ix.vps) {
		vp := ix.vps[n]
		if isManaged(vp) {
			k := exposeSite{vp.Metadata.Labels[LabelExpose], vp.ESiteName}
			if _, dup := existing[k]; !dup {
				existing[k] = vp
			}
		}
	}
	type want struct {
		key     exposeSite
		service string
		gw      *api.EGateway
		vip     netip.Addr
	}
	var wants []*want
	for _, en := range sortedKeys(ix.exposes) {
		e := ix.exposes[en]
		seen := map[string]bool{}
		for _, s := range e.ESites {
			g, ok := ix.siteGateway(s)
			if !ok || seen[s] || pinned[pair{e.EServiceName, s}] {
				continue
			}
			seen[s] = true
			wants = append(wants, &want{key: exposeSite{en, s}, service: e.EServiceName, gw: g})
		}
	}
	for _, w := range wants {
		vp, ok := existing[w.key]
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(vp.VirtualIP)
		gn := w.gw.Metadata.Name
		if err == nil && inLowerHalf(vpCIDR(w.gw), ip) && !usedV(gn)[ip] {
			w.vip = ip
			usedV(gn)[ip] = true
		}
	}
	for _, w := range wants {
		if w.vip.IsValid() {
			continue
		}
		gn := w.gw.Metadata.Name
		if ip, ok := allocLowest(vpCIDR(w.gw), usedV(gn)); ok {
			w.vip = ip
			usedV(gn)[ip] = true
		}
	}

	keep := map[string]bool{}
	for _, w := range wants {
		name := ""
		if vp, ok := existing[w.key]; ok {
			name = vp.Metadata.Name
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
		vp := &api.VirtualPresence{
			TypeMeta:  api.TypeMeta{Kind: api.KindVirtualPresence, APIVersion: "v1"},
			Metadata:  api.ObjectMeta{Name: name, Labels: map[string]string{LabelManaged: "true", LabelExpose: w.key.expose}},
			VirtualIP: vip, EServiceName: w.service, ESiteName: w.key.site,
		}
		k := api.Key(vp)
		if old, ok := st.Objects[k].(*api.VirtualPresence); ok && sameManaged(old, vp) {
			continue
		}
		st.Objects[k] = vp
	}
	for k, o := range st.Objects {
		if vp, ok := o.(*api.VirtualPresence); ok && isManaged(vp) && !keep[vp.Metadata.Name] {
			delete(st.Objects, k)
		}
	}
}

// sameManaged reports whether a stored managed VirtualPresence already is want (a fast
// api.Equal for the fields reconcile sets).
func sameManaged(old, want *api.VirtualPresence) bool {
	return old.VirtualIP == want.VirtualIP && old.EServiceName == want.EServiceName && old.ESiteName == want.ESiteName &&
		old.Kind == want.Kind && old.APIVersion == want.APIVersion &&
		len(old.Metadata.Labels) == len(want.Metadata.Labels) && old.Metadata.Labels[LabelManaged] == "true" &&
		old.Metadata.Labels[LabelExpose] == want.Metadata.Labels[LabelExpose] && len(old.Metadata.Annotations) == 0
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
