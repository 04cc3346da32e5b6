package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	"github.com/egw-project/egw/api"
)

// reconcile brings the IPAM state and the managed VirtualPresences in st in line with
// the objects in st, keeping every allocation that is still valid (allocations are
// stable across re-applies and restarts) and taking the lowest free address for new ones.
// Exhaustion leaves the allocation out; the status reports it as a condition.
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
				break // exhausted: the status reports it
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
			if gw == cfg.HubGateway {
				for i := range MaxHubs - 1 {
					if a, ok := hubSlot(cfg, i); ok {
						usedOv[gw][a] = true // kept for hub replicas (hubs.go)
					}
				}
			}
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

// bucketIPAM holds the allocations, one key each: "g/<EGateway>" -> its overlay prefix,
// "s/<EService>" -> its ServiceAddr (JSON). Stores made before it kept them all in one
// blob (meta/ipam), which is read and, on the next write, moved here.
const bucketIPAM = "ipam"

func putGatewayPrefix(tx Tx, gw string, p netip.Prefix, ok bool) error {
	if !ok {
		return tx.Delete(bucketIPAM, "g/"+gw)
	}
	return tx.Put(bucketIPAM, "g/"+gw, []byte(p.String()))
}

func putServiceAddr(tx Tx, svc string, a ServiceAddr, ok bool) error {
	if !ok {
		return tx.Delete(bucketIPAM, "s/"+svc)
	}
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return tx.Put(bucketIPAM, "s/"+svc, data)
}

// storeIPAMPerKey writes every allocation per key and removes the blob of older stores.
func storeIPAMPerKey(tx Tx, ipam IPAM) error {
	for gw, p := range ipam.Gateways {
		if err := putGatewayPrefix(tx, gw, p, true); err != nil {
			return err
		}
	}
	for svc, a := range ipam.Services {
		if err := putServiceAddr(tx, svc, a, true); err != nil {
			return err
		}
	}
	if tx.Get(bucketMeta, keyIPAM) != nil {
		return tx.Delete(bucketMeta, keyIPAM)
	}
	return nil
}

// loadIPAM reads the allocations: per key, or from the blob of an older store (legacy).
func loadIPAM(tx Tx) (IPAM, bool, error) {
	ipam := IPAM{Gateways: map[string]netip.Prefix{}, Services: map[string]ServiceAddr{}}
	if v := tx.Get(bucketMeta, keyIPAM); v != nil {
		var old IPAM
		if err := json.Unmarshal(v, &old); err != nil {
			return ipam, false, fmt.Errorf("store: IPAM state: %w", err)
		}
		return old.clone(), true, nil
	}
	err := tx.ForEach(bucketIPAM, func(key string, val []byte) error {
		switch {
		case strings.HasPrefix(key, "g/"):
			p, err := netip.ParsePrefix(string(val))
			if err != nil {
				return fmt.Errorf("store: overlay prefix of %s: %w", key[2:], err)
			}
			ipam.Gateways[key[2:]] = p
		case strings.HasPrefix(key, "s/"):
			var a ServiceAddr
			if err := json.Unmarshal(val, &a); err != nil {
				return fmt.Errorf("store: overlay address of %s: %w", key[2:], err)
			}
			ipam.Services[key[2:]] = a
		default:
			return fmt.Errorf("store: bad IPAM key %q", key)
		}
		return nil
	})
	if errors.Is(err, errNoBucket) {
		err = nil
	}
	return ipam, false, err
}

// prefixCount is how many overlay prefixes the configuration's address plan holds (the
// hub's included).
func prefixCount(cfg Config) uint64 {
	return uint64(1) << (cfg.OverlayPrefixLen - cfg.OverlayCIDR.Bits())
}

// fullValidateReconcile validates and reconciles the whole state of the write (the
// reference path, used when the stored allocations do not fit the configuration) and
// brings the model in line with the result.
func fullValidateReconcile(w *writeTx) error {
	m := w.m
	st := m.state()
	ix := indexState(st)
	w.validated += len(st.Objects)
	if err := validateIndex(ix, m.cfg); err != nil {
		return err
	}
	reconcileIndex(st, ix, m.cfg)
	for k, o := range st.Objects {
		if cur, _ := m.get(k); cur != o {
			w.put(o)
		}
	}
	var gone []string
	m.forEach(func(o api.Object) {
		if _, ok := st.Objects[api.Key(o)]; !ok {
			gone = append(gone, api.Key(o))
		}
	})
	for _, k := range gone {
		w.del(k)
	}
	for gw := range m.ipam.Gateways {
		if _, ok := st.IPAM.Gateways[gw]; !ok {
			w.setPrefix(gw, netip.Prefix{}, false)
		}
	}
	for svc := range m.ipam.Services {
		if _, ok := st.IPAM.Services[svc]; !ok {
			w.setServiceAddr(svc, ServiceAddr{}, false)
		}
	}
	// Free before taking: a prefix may move from one gateway to another.
	for _, gw := range sortedKeys(st.IPAM.Gateways) {
		if p, ok := m.ipam.Gateways[gw]; ok && p != st.IPAM.Gateways[gw] {
			w.setPrefix(gw, netip.Prefix{}, false)
		}
	}
	for _, gw := range sortedKeys(st.IPAM.Gateways) {
		w.setPrefix(gw, st.IPAM.Gateways[gw], true)
	}
	for _, svc := range sortedKeys(st.IPAM.Services) {
		if a, ok := m.ipam.Services[svc]; ok && a != st.IPAM.Services[svc] {
			w.setServiceAddr(svc, ServiceAddr{}, false)
		}
	}
	for _, svc := range sortedKeys(st.IPAM.Services) {
		w.setServiceAddr(svc, st.IPAM.Services[svc], true)
	}
	return nil
}

// reconcileDelta is reconcile for one write: it brings the allocations the write touched
// in line with the objects, as reconcile does for the whole state, looking only at the
// gateways, services and (exposure, site) pairs the changed objects concern (and, where
// the write freed an address, at what waited for one there).
func reconcileDelta(w *writeTx, oldPins []*pin) {
	m, cfg := w.m, w.m.cfg
	gws, sites, svcs := set{}, set{}, set{}
	pairs := map[pairKey]bool{}
	for k, old := range w.before {
		cur, _ := m.get(k)
		for _, o := range [2]api.Object{old, cur} {
			switch v := o.(type) {
			case *api.ESite:
				sites[v.Metadata.Name] = struct{}{}
			case *api.EGateway:
				gws[v.Metadata.Name] = struct{}{}
				sites[v.ESiteName] = struct{}{}
			case *api.EService:
				svcs[v.Metadata.Name] = struct{}{}
			case *api.ServiceExpose:
				svcs[v.EServiceName] = struct{}{}
				for _, s := range v.ESites {
					pairs[pairKey{v.Metadata.Name, s}] = true
				}
			case *api.VirtualPresence:
				if isManaged(v) {
					pairs[pairKey{v.Metadata.Labels[LabelExpose], v.ESiteName}] = true
				}
			}
		}
	}

	// Overlay prefixes: the hub holds the first; a new gateway takes the lowest free one,
	// and a freed prefix goes to a gateway that waited for one.
	hub := cfg.HubPrefix()
	freed := false
	var pending []string
	for _, gw := range gws.sortedKeys() {
		_, exists := m.gateways[gw]
		p, has := m.ipam.Gateways[gw]
		switch {
		case !exists:
			if has {
				w.setPrefix(gw, netip.Prefix{}, false)
				freed = true
			}
		case gw == cfg.HubGateway:
			if !has || p != hub {
				w.setPrefix(gw, hub, true)
			}
		case !has:
			pending = append(pending, gw)
		}
	}
	if freed {
		for gw := range m.unallocated {
			if _, ok := gws[gw]; !ok && gw != cfg.HubGateway {
				pending = append(pending, gw)
				sites[m.gateways[gw].ESiteName] = struct{}{}
			}
		}
		slices.Sort(pending)
	}
	for _, gw := range pending {
		p, ok := m.nextFreePrefix()
		if !ok {
			break // exhausted: the status says so
		}
		w.setPrefix(gw, p, true)
	}

	// ov(S): every exposed service whose site has a gateway with a prefix, in the lower
	// half of that prefix.
	for s := range sites {
		for svc := range m.servicesBySite.all(s) {
			svcs[svc] = struct{}{}
		}
	}
	freedAt := set{} // gateways where an ov(S) was freed
	var pendingSvc []string
	for _, svc := range svcs.sortedKeys() {
		cur, has := m.ipam.Services[svc]
		gw, prefix, want := m.serviceHome(svc)
		if want && has && cur.Gateway == gw && inLowerHalf(prefix, cur.Addr) && m.ovOwner[gw][cur.Addr] == svc {
			continue
		}
		if has {
			w.setServiceAddr(svc, ServiceAddr{}, false)
			freedAt[cur.Gateway] = struct{}{}
		}
		if want {
			pendingSvc = append(pendingSvc, svc)
		}
	}
	for gw := range freedAt {
		g, ok := m.gateways[gw]
		if !ok {
			continue
		}
		for svc := range m.servicesBySite.all(g.ESiteName) {
			if _, done := svcs[svc]; done {
				continue
			}
			if _, has := m.ipam.Services[svc]; !has {
				if _, _, want := m.serviceHome(svc); want {
					pendingSvc = append(pendingSvc, svc)
				}
			}
		}
	}
	slices.Sort(pendingSvc)
	for _, svc := range pendingSvc {
		gw, prefix, _ := m.serviceHome(svc)
		owners := m.ovOwner[gw]
		if a, ok := allocLowestFunc(prefix, func(a netip.Addr) bool {
			_, used := owners[a]
			return used || hubReserved(m.cfg, prefix, a)
		}); ok {
			w.setServiceAddr(svc, ServiceAddr{Gateway: gw, Addr: a}, true)
		}
	}

	// Managed VirtualPresences: one per (exposure, site with a gateway) that no pin
	// covers, each with a VIP of the lower half of that gateway's VP CIDR.
	for s := range sites {
		for en := range m.exposesBySite.all(s) {
			pairs[pairKey{en, s}] = true
		}
	}
	for _, pp := range pinChanges(oldPins, m.pins) {
		for en := range m.exposesByService.all(pp[0]) {
			pairs[pairKey{en, pp[1]}] = true
		}
	}
	for _, p := range m.pins {
		// A managed VIP a pin took must move.
		if p.site != "" {
			if vpn, ok := m.vipHolder(p.site, p.ip); ok {
				if k, _, ok := m.managedPair(vpn); ok {
					pairs[k] = true
				}
			}
		}
	}
	keys := make([]pairKey, 0, len(pairs))
	for k := range pairs {
		keys = append(keys, k)
	}
	sortPairs(keys)
	type job struct {
		key     pairKey
		name    string // the managed VirtualPresence kept, "" for a new one
		service string
		cidr    netip.Prefix
	}
	var jobs []job
	vipFreed := set{}
	drop := func(name string) {
		if k, ip, ok := m.managedPair(name); ok && ip.IsValid() {
			vipFreed[k.site] = struct{}{}
		}
		w.del(api.KindVirtualPresence + "/" + name)
	}
	done := map[pairKey]bool{}
	for _, k := range keys {
		done[k] = true
		names := m.managedNames(k)
		e, ok := m.exposes[k.expose]
		var g *api.EGateway
		if ok {
			g, ok = m.siteGateway(k.site)
		}
		if !ok || !slices.Contains(e.ESites, k.site) || m.pinnedPair(e.EServiceName, k.site) {
			for _, n := range names {
				drop(n)
			}
			continue
		}
		keep := ""
		if len(names) > 0 {
			keep = names[0]
			for _, n := range names[1:] {
				drop(n)
			}
		}
		cidr := vpCIDR(g)
		if keep != "" {
			o, _ := m.lookup(api.KindVirtualPresence, keep)
			vp := o.(*api.VirtualPresence)
			ip, err := netip.ParseAddr(vp.VirtualIP)
			if holder, _ := m.vipHolder(k.site, ip); err == nil && inLowerHalf(cidr, ip) && holder == keep {
				if _, pinned := m.pinAt(k.site, ip); !pinned {
					if !isManagedAs(vp, vp.VirtualIP, e.EServiceName, k.site, k.expose) {
						w.put(managedVP(labelsOf(k.expose), keep, e.EServiceName, k.site, vp.VirtualIP))
					}
					continue
				}
			}
		}
		jobs = append(jobs, job{key: k, name: keep, service: e.EServiceName, cidr: cidr})
	}
	// Managed VirtualPresences that waited for a VIP where one was freed.
	for s := range vipFreed {
		g, ok := m.siteGateway(s)
		if !ok {
			continue
		}
		for _, en := range m.exposesBySite.sorted(s) {
			k := pairKey{en, s}
			if done[k] {
				continue
			}
			if n, ok := m.firstManaged(k); ok {
				if _, ip, _ := m.managedPair(n); ip.IsValid() {
					continue
				}
				jobs = append(jobs, job{key: k, name: n, service: m.exposes[en].EServiceName, cidr: vpCIDR(g)})
			}
		}
	}
	reserved := set{}
	for _, j := range jobs {
		owners := m.vipOwner[j.key.site]
		vip := ""
		if ip, ok := allocLowestFunc(j.cidr, func(a netip.Addr) bool {
			if _, used := owners[u32(a)]; used {
				return true
			}
			_, pinned := m.pinAt(j.key.site, a)
			return pinned
		}); ok {
			vip = ip.String()
		}
		name := j.name
		if name == "" {
			name = managedName(j.key.expose, j.key.site, func(n string) bool {
				taken := m.hasVP(n)
				_, res := reserved[n]
				return taken || res
			})
			reserved[name] = struct{}{}
		}
		w.put(managedVP(labelsOf(j.key.expose), name, j.service, j.key.site, vip))
	}
}

// serviceHome returns the gateway (and its prefix) that gives svc its ov(S), and whether
// svc should have one: it exists, is exposed, and its site has a gateway with a prefix.
func (m *model) serviceHome(svc string) (string, netip.Prefix, bool) {
	v, ok := m.services[svc]
	if !ok || m.exposesByService.count(svc) == 0 {
		return "", netip.Prefix{}, false
	}
	g, ok := m.siteGateway(v.ESiteName)
	if !ok {
		return "", netip.Prefix{}, false
	}
	p, ok := m.ipam.Gateways[g.Metadata.Name]
	return g.Metadata.Name, p, ok
}

func sortPairs(keys []pairKey) {
	slices.SortFunc(keys, func(a, b pairKey) int {
		if c := strings.Compare(a.expose, b.expose); c != 0 {
			return c
		}
		return strings.Compare(a.site, b.site)
	})
}

// managedVP is a managed VirtualPresence with labels (labelsOf its exposure).
func managedVP(labels map[string]string, name, service, site, vip string) *api.VirtualPresence {
	return &api.VirtualPresence{
		TypeMeta:  api.TypeMeta{Kind: api.KindVirtualPresence, APIVersion: "v1"},
		Metadata:  api.ObjectMeta{Name: name, Labels: labels},
		VirtualIP: vip, EServiceName: service, ESiteName: site,
	}
}
