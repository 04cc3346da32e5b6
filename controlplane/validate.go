package controlplane

import (
	"encoding/base64"
	"fmt"
	"net/netip"

	"github.com/egw-project/egw/api"
)

// validateState checks the rules that span objects, on the state a write would produce.
// Rules whose objects are not all present are not checked (references may dangle); what
// is missing shows as a condition instead (fillObjectStatus).
func validateState(st *State, cfg Config) error { return validateIndex(indexState(st), cfg) }

// validateIndex is validateState on an index of the state.
func validateIndex(ix *index, cfg Config) error {
	var errs fieldErrors

	for _, n := range ix.gatewayNames {
		g := ix.gateways[n]
		vp := vpCIDR(g)
		if vp.IsValid() {
			if err := api.CheckVPCIDR(vp, cfg.OverlayCIDR); err != nil {
				errs.add(g, "virtualPresenceIPcidr", err.Error())
			}
		}
		if first := ix.gwBySite[g.ESiteName]; first != g {
			errs.add(g, "eSiteName", fmt.Sprintf("site %q already has EGateway %q; a site has one gateway", g.ESiteName, first.Metadata.Name))
		}
	}

	checkKeys(ix, cfg, &errs)

	for _, n := range sortedKeys(ix.services) {
		s := ix.services[n]
		g, ok := ix.gwBySite[s.ESiteName]
		if !ok {
			continue
		}
		ip, err := netip.ParseAddr(s.IP)
		if err == nil && vpCIDR(g).Contains(ip) {
			errs.add(s, "ip", fmt.Sprintf("%s is inside the VP CIDR %s of its own site's gateway EGateway/%s; a service must have an address of the site's own network",
				ip, vpCIDR(g), g.Metadata.Name))
		}
	}

	type pair struct{ service, site string }
	exposedBy := map[pair]string{}
	for _, n := range ix.sortedExposes() {
		e := ix.exposes[n]
		for _, site := range e.ESites {
			p := pair{e.EServiceName, site}
			if other, ok := exposedBy[p]; ok && other != n {
				errs.add(e, "eSites", fmt.Sprintf("EService %q is already exposed to site %q by ServiceExpose %q; one exposure per service and site", e.EServiceName, site, other))
				continue
			}
			exposedBy[p] = n
		}
	}

	pinnedIP := map[string]map[netip.Addr]string{} // gateway -> VIP -> VirtualPresence
	pinnedPair := map[pair]string{}
	for _, p := range ix.pins() {
		if p.site == "" {
			continue
		}
		g := p.gateway
		cidr := vpCIDR(g)
		lo, hi, _ := lowerHalf(cidr)
		where := fmt.Sprintf("the VP CIDR %s of EGateway/%s (site %q)", cidr, g.Metadata.Name, p.site)
		switch {
		case !cidr.Contains(p.ip):
			errs.add(p.vp, "virtualIp", fmt.Sprintf("%s is not inside %s", p.ip, where))
			continue
		case p.ip == cidr.Addr():
			errs.add(p.vp, "virtualIp", fmt.Sprintf("%s is the network address of %s", p.ip, where))
			continue
		case p.ip == firstAddr(cidr):
			errs.add(p.vp, "virtualIp", fmt.Sprintf("%s is the gateway's own address in %s", p.ip, where))
			continue
		case !inLowerHalf(cidr, p.ip):
			errs.add(p.vp, "virtualIp", fmt.Sprintf("%s is in the upper half of %s, where the gateway leases presence IPs; VIPs come from the lower half %s-%s",
				p.ip, where, addrOf(lo), addrOf(hi)))
			continue
		}
		if pinnedIP[g.Metadata.Name] == nil {
			pinnedIP[g.Metadata.Name] = map[netip.Addr]string{}
		}
		if other, ok := pinnedIP[g.Metadata.Name][p.ip]; ok {
			errs.add(p.vp, "virtualIp", fmt.Sprintf("%s is already taken by VirtualPresence %q at site %q", p.ip, other, p.site))
			continue
		}
		pr := pair{p.vp.EServiceName, p.site}
		if other, ok := pinnedPair[pr]; ok {
			errs.add(p.vp, "eServiceName", fmt.Sprintf("the VIP of EService %q at site %q is already pinned by VirtualPresence %q", pr.service, pr.site, other))
			continue
		}
		pinnedIP[g.Metadata.Name][p.ip] = p.vp.Metadata.Name
		pinnedPair[pr] = p.vp.Metadata.Name
	}
	return errs.err()
}

// checkKeys refuses two EGateways with one WireGuard public key: WireGuard routes by key,
// so the second would take the first one's tunnel (and overlay prefix) over. The hub is
// checked first, so it keeps its key and the edge is the one named; among edges the
// first by name keeps it. The hub's key is its EGateway's publicKey, or Config.PublicKey
// when that is empty.
func checkKeys(ix *index, cfg Config, errs *fieldErrors) {
	names := make([]string, 0, len(ix.gatewayNames))
	if _, ok := ix.gateways[cfg.HubGateway]; ok {
		names = append(names, cfg.HubGateway)
	}
	for _, n := range ix.gatewayNames {
		if n != cfg.HubGateway {
			names = append(names, n)
		}
	}
	owner := map[string]string{} // decoded key -> EGateway name
	for _, n := range names {
		g := ix.gateways[n]
		key := g.PublicKey
		if key == "" && n == cfg.HubGateway {
			key = cfg.PublicKey
		}
		if key == "" {
			continue
		}
		// Compare the 32 key bytes: two base64 spellings of one key are one key.
		id := key
		if b, err := base64.StdEncoding.DecodeString(key); err == nil {
			id = string(b)
		}
		if other, ok := owner[id]; ok {
			what := fmt.Sprintf("EGateway %q", other)
			if other == cfg.HubGateway {
				what += " (the cloud hub)"
			}
			errs.add(g, "publicKey", fmt.Sprintf("is already the WireGuard key of %s; every gateway needs its own key (generate one on the edge, or leave publicKey empty until it registers)", what))
			continue
		}
		owner[id] = n
	}
}

// validateDelta is validateState for one write: it checks the rules that span objects on
// the objects the write touched and on those a rule compares them with — the gateways of
// their sites, the gateways sharing their WireGuard key, the services at their sites, the
// other exposures of their services, and every pin (hand-applied VirtualPresences with a
// virtualIp, which are few) — never the whole store. The state before the write was
// valid, so an error can only involve a touched object.
func validateDelta(w *writeTx) error {
	m := w.m
	keys := set{}
	add := func(kind, name string) { keys[kind+"/"+name] = struct{}{} }
	gatewaysAt := func(site string) {
		for gw := range m.gwsBySite.all(site) {
			add(api.KindEGateway, gw)
		}
	}
	for k, old := range w.before {
		keys[k] = struct{}{}
		cur, _ := m.get(k)
		for _, o := range [2]api.Object{old, cur} {
			switch v := o.(type) {
			case *api.EGateway:
				gatewaysAt(v.ESiteName)
				for svc := range m.servicesBySite.all(v.ESiteName) {
					add(api.KindEService, svc)
				}
				if g, ok := m.gateways[v.Metadata.Name]; ok {
					if id := m.gatewayKey(g); id != "" {
						for other := range m.keyOwners.all(id) {
							add(api.KindEGateway, other)
						}
					}
				}
			case *api.EService:
				add(api.KindEService, v.Metadata.Name)
				gatewaysAt(v.ESiteName)
			case *api.ServiceExpose:
				for en := range m.exposesByService.all(v.EServiceName) {
					add(api.KindServiceExpose, en)
				}
			}
		}
	}
	objs := make([]api.Object, 0, len(keys))
	for k := range keys {
		if o, ok := m.get(k); ok {
			objs = append(objs, o)
		}
	}
	w.validated += len(objs) + len(m.pins)
	return validateIndex(m.subIndex(objs), m.cfg)
}
