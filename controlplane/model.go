package controlplane

import (
	"encoding/base64"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/egw-project/egw/api"
)

// model is the store's decoded state at one revision, kept in memory by the Store, with
// the indexes that let a write validate, reconcile and recompile only what it touches:
// from every object to the objects that name it (a site to its gateways, services,
// servers and the exposures naming it; a service to its exposures; a policy to the
// exposures naming it; a server to the policies naming it; an (exposure, site) pair to its
// managed VirtualPresence), and the IPAM state with its reverse maps (who holds which
// prefix, ov(S) address and VIP).
//
// The objects in it are never modified: a write replaces them. A write changes the model
// in place while it holds the Store's lock, recording how to undo each step, and undoes
// them all if the transaction fails.
type model struct {
	cfg  Config
	rev  int64
	ipam IPAM
	eps  map[string]GatewayEndpoints
	// hubs are the registered hub replicas (hubs.go).
	hubs map[string]HubInfo
	// legacyIPAM is set when the IPAM state was read from the single blob of older
	// stores: the next write stores it per key and removes the blob.
	legacyIPAM bool

	sites    map[string]*api.ESite
	gateways map[string]*api.EGateway
	services map[string]*api.EService
	servers  map[string]*api.EServer
	policies map[string]*api.EPolicy
	exposes  map[string]*api.ServiceExpose
	vps      map[string]*api.VirtualPresence // all but the compact ones
	// mvps holds the managed VirtualPresences of the managed form (isManagedAs), the
	// vast majority (one per exposure and site), compactly; they are made into objects
	// when asked for (lookup, forEach).
	mvps map[string]*mvp

	gwsBySite        multi // site -> gateways naming it
	servicesBySite   multi
	serversBySite    multi
	exposesByService multi
	exposesBySite    multi // site -> exposures naming it in eSites
	exposesByPolicy  multi
	policiesByServer multi
	// irregular maps an (expose, site) pair to its managed VirtualPresences not named
	// baseName(pair) (a name taken by another object, or several for one pair, which
	// reconcile deletes); the one named baseName(pair), the usual case, needs no entry.
	irregular map[pairKey][]string

	pinVPs    set   // hand-applied VirtualPresences with a virtualIp
	keyOwners multi // decoded WireGuard key -> gateways

	prefixOwner map[netip.Prefix]string
	ovOwner     map[string]map[netip.Addr]string // gateway -> ov(S) -> service
	vipOwner    map[string]map[uint32]string     // site -> VIP -> managed VirtualPresence
	// prefixHint is an index (subPrefix) below which every overlay prefix is taken.
	prefixHint uint64
	// unallocated are the gateways without an overlay prefix (none was left).
	unallocated set
	// needFull is set when stored allocations do not fit the configuration (its address
	// plan changed): the next write validates and reconciles the whole state.
	needFull bool

	// pins are the resolved hand-applied VirtualPresences with a virtualIp, sorted by
	// name (resolvePins after every write).
	pins []*pin
	// pinPair and pinIP index the resolved pins: by (service, site) and by site and VIP.
	pinPair map[[2]string]*pin
	pinIP   map[string]map[netip.Addr]*pin

	// sorted caches the sorted names of each kind; a kind's entry is dropped when an
	// object of it is added or removed (under the Store's write lock). sortMu guards it
	// between readers, which share the Store's lock.
	sortMu sync.Mutex
	sorted map[string][]string

	// undo, while a write runs (logging), holds how to revert each change, in order.
	undo    []func()
	logging bool
}

type set map[string]struct{}

// multi maps a key to a set of names. Most keys have one (a service's exposure, a site's
// gateway), kept without a map of its own: a map per key cost ~200 bytes each.
type multi struct {
	one  map[string]string
	many map[string]set
}

func newMulti() multi { return multi{one: map[string]string{}, many: map[string]set{}} }

func (x multi) add(k, v string) {
	if s, ok := x.many[k]; ok {
		s[v] = struct{}{}
		return
	}
	if o, ok := x.one[k]; ok {
		if o == v {
			return
		}
		delete(x.one, k)
		x.many[k] = set{o: {}, v: {}}
		return
	}
	x.one[k] = v
}

func (x multi) del(k, v string) {
	if s, ok := x.many[k]; ok {
		delete(s, v)
		if len(s) == 1 {
			delete(x.many, k)
			for o := range s {
				x.one[k] = o
			}
		}
		return
	}
	if x.one[k] == v {
		delete(x.one, k)
	}
}

func (x multi) count(k string) int {
	if s, ok := x.many[k]; ok {
		return len(s)
	}
	if _, ok := x.one[k]; ok {
		return 1
	}
	return 0
}

// all yields the names of k, in no order.
func (x multi) all(k string) iter.Seq[string] {
	return func(yield func(string) bool) {
		if s, ok := x.many[k]; ok {
			for v := range s {
				if !yield(v) {
					return
				}
			}
			return
		}
		if v, ok := x.one[k]; ok {
			yield(v)
		}
	}
}

func (x multi) sorted(k string) []string {
	if s, ok := x.many[k]; ok {
		return sortedKeys(s)
	}
	if v, ok := x.one[k]; ok {
		return []string{v}
	}
	return nil
}

// keys yields every key that has a name.
func (x multi) keys() iter.Seq[string] { return concat(maps.Keys(x.one), maps.Keys(x.many)) }

// concat yields what a yields, then what b yields.
func concat[V any](a, b iter.Seq[V]) iter.Seq[V] {
	return func(yield func(V) bool) {
		for v := range a {
			if !yield(v) {
				return
			}
		}
		for v := range b {
			if !yield(v) {
				return
			}
		}
	}
}

func (x multi) size() int { return len(x.one) + len(x.many) }

func (s set) sortedKeys() []string { return sortedKeys(s) }

type pairKey struct{ expose, site string }

func newModel(cfg Config) *model {
	return &model{cfg: cfg,
		ipam:  IPAM{Gateways: map[string]netip.Prefix{}, Services: map[string]ServiceAddr{}},
		eps:   map[string]GatewayEndpoints{},
		hubs:  map[string]HubInfo{},
		sites: map[string]*api.ESite{}, gateways: map[string]*api.EGateway{}, services: map[string]*api.EService{},
		servers: map[string]*api.EServer{}, policies: map[string]*api.EPolicy{}, exposes: map[string]*api.ServiceExpose{},
		vps: map[string]*api.VirtualPresence{}, mvps: map[string]*mvp{},
		gwsBySite: newMulti(), servicesBySite: newMulti(), serversBySite: newMulti(),
		exposesByService: newMulti(), exposesBySite: newMulti(), exposesByPolicy: newMulti(),
		policiesByServer: newMulti(), irregular: map[pairKey][]string{}, pinVPs: set{}, keyOwners: newMulti(),
		prefixOwner: map[netip.Prefix]string{}, ovOwner: map[string]map[netip.Addr]string{},
		vipOwner: map[string]map[uint32]string{}, prefixHint: 1, sorted: map[string][]string{},
		unallocated: set{},
	}
}

func addTo[K comparable](m map[K]set, k K, v string) {
	s := m[k]
	if s == nil {
		s = set{}
		m[k] = s
	}
	s[v] = struct{}{}
}

func delFrom[K comparable](m map[K]set, k K, v string) {
	if s := m[k]; s != nil {
		delete(s, v)
		if len(s) == 0 {
			delete(m, k)
		}
	}
}

// begin starts recording undo steps; commit forgets them; rollback reverts them.
func (m *model) begin() { m.undo, m.logging = m.undo[:0], true }

func (m *model) commit() { m.undo, m.logging = nil, false }

func (m *model) rollback() {
	m.logging = false
	for i := len(m.undo) - 1; i >= 0; i-- {
		m.undo[i]()
	}
	m.undo = nil
}

func (m *model) record(f func()) {
	if m.logging {
		m.undo = append(m.undo, f)
	}
}

// get returns the object stored under key ("Kind/name").
func (m *model) get(key string) (api.Object, bool) {
	kind, name, _ := strings.Cut(key, "/")
	return m.lookup(kind, name)
}

// lookup returns the object of kind and name.
func (m *model) lookup(kind, name string) (api.Object, bool) {
	switch kind {
	case api.KindESite:
		return found(m.sites, name)
	case api.KindEGateway:
		return found(m.gateways, name)
	case api.KindEService:
		return found(m.services, name)
	case api.KindEServer:
		return found(m.servers, name)
	case api.KindEPolicy:
		return found(m.policies, name)
	case api.KindServiceExpose:
		return found(m.exposes, name)
	case api.KindVirtualPresence:
		if o, ok := found(m.vps, name); ok {
			return o, true
		}
		if c, ok := m.mvps[name]; ok {
			return c.object(name), true
		}
	}
	return nil, false
}

// found returns objs[name] as an api.Object (nil, false when absent, never a typed nil).
func found[T api.Object](objs map[string]T, name string) (api.Object, bool) {
	v, ok := objs[name]
	if !ok {
		return nil, false
	}
	return v, true
}

// hasVP reports whether a VirtualPresence of that name exists.
func (m *model) hasVP(name string) bool {
	if _, ok := m.vps[name]; ok {
		return true
	}
	_, ok := m.mvps[name]
	return ok
}

// mvp is a managed VirtualPresence of the managed form: labels egw.io/managed and
// egw.io/expose only, no annotations, kind and apiVersion set. Its strings are shared with
// the objects they name.
type mvp struct {
	expose, service, site string
	vip                   uint32 // 0: none (exhausted)
	rv, crev              int64
}

func (c *mvp) vipAddr() (netip.Addr, bool) {
	if c.vip == 0 {
		return netip.Addr{}, false
	}
	return addrOf(c.vip), true
}

// object makes the VirtualPresence c stands for.
func (c *mvp) object(name string) *api.VirtualPresence {
	vip := ""
	if a, ok := c.vipAddr(); ok {
		vip = a.String()
	}
	vp := managedVP(labelsOf(c.expose), name, c.service, c.site, vip)
	vp.Metadata.ResourceVersion, vp.Metadata.CreationRevision = c.rv, c.crev
	return vp
}

// compactOf returns the compact form of vp, if it has the managed form.
func (m *model) compactOf(vp *api.VirtualPresence) (*mvp, bool) {
	expose := vp.Metadata.Labels[LabelExpose]
	if !isManagedAs(vp, vp.VirtualIP, vp.EServiceName, vp.ESiteName, expose) {
		return nil, false
	}
	c := &mvp{expose: expose, service: vp.EServiceName, site: vp.ESiteName,
		rv: vp.Metadata.ResourceVersion, crev: vp.Metadata.CreationRevision}
	if vp.VirtualIP != "" {
		ip, err := netip.ParseAddr(vp.VirtualIP)
		if err != nil || !ip.Is4() || ip == netip.IPv4Unspecified() {
			return nil, false
		}
		c.vip = u32(ip)
	}
	m.share(c)
	return c, true
}

// share makes c's strings those of the objects they name, so they take no memory of
// their own.
func (m *model) share(c *mvp) {
	if e, ok := m.exposes[c.expose]; ok {
		c.expose = e.Metadata.Name
	}
	if v, ok := m.services[c.service]; ok {
		c.service = v.Metadata.Name
	}
	if st, ok := m.sites[c.site]; ok {
		c.site = st.Metadata.Name
	}
}

// vipHolder returns the managed VirtualPresence holding ip at site.
func (m *model) vipHolder(site string, ip netip.Addr) (string, bool) {
	if !ip.Is4() {
		return "", false
	}
	n, ok := m.vipOwner[site][u32(ip)]
	return n, ok
}

// managedPair returns the (expose, site) pair and VIP of a managed VirtualPresence.
func (m *model) managedPair(name string) (pairKey, netip.Addr, bool) {
	if c, ok := m.mvps[name]; ok {
		ip, _ := c.vipAddr()
		return pairKey{c.expose, c.site}, ip, true
	}
	if v, ok := m.vps[name]; ok && isManaged(v) {
		ip, _ := netip.ParseAddr(v.VirtualIP)
		return pairKey{v.Metadata.Labels[LabelExpose], v.ESiteName}, ip, true
	}
	return pairKey{}, netip.Addr{}, false
}

// managedVIP returns the VIP of the managed VirtualPresence of a pair (the compiler's
// view of them).
func (m *model) managedVIP(expose, site string) (netip.Addr, bool) {
	n, ok := m.firstManaged(pairKey{expose, site})
	if !ok {
		return netip.Addr{}, false
	}
	_, ip, _ := m.managedPair(n)
	return ip, ip.IsValid()
}

// forEach calls fn for every object.
func (m *model) forEach(fn func(api.Object)) {
	m.forEachButCompact(fn)
	for n, c := range m.mvps {
		fn(c.object(n))
	}
}

// forEachButCompact calls fn for every object but the compact managed VirtualPresences
// (what the compiler needs of those is managedVIP).
func (m *model) forEachButCompact(fn func(api.Object)) {
	for _, v := range m.sites {
		fn(v)
	}
	for _, v := range m.gateways {
		fn(v)
	}
	for _, v := range m.services {
		fn(v)
	}
	for _, v := range m.servers {
		fn(v)
	}
	for _, v := range m.policies {
		fn(v)
	}
	for _, v := range m.exposes {
		fn(v)
	}
	for _, v := range m.vps {
		fn(v)
	}
}

// count is the number of objects.
func (m *model) count() int {
	return len(m.sites) + len(m.gateways) + len(m.services) + len(m.servers) + len(m.policies) + len(m.exposes) + len(m.vps) + len(m.mvps)
}

// set puts o under key (nil removes it), keeping the indexes.
func (m *model) set(key string, o api.Object) {
	old, had := m.get(key)
	if had && old == o {
		return
	}
	m.record(func() { m.setRaw(key, old) })
	m.setRaw(key, o)
}

func (m *model) setRaw(key string, o api.Object) {
	if name, ok := strings.CutPrefix(key, api.KindVirtualPresence+"/"); ok {
		m.setVP(name, o)
		return
	}
	if old, ok := m.get(key); ok {
		m.unindex(old)
		if o == nil {
			delete(m.sorted, old.GetKind())
		}
	} else if o != nil {
		delete(m.sorted, o.GetKind())
	}
	if o != nil {
		m.index(o)
	}
}

// baseName is the name reconcile gives the managed VirtualPresence of a pair when it is
// free (managedName).
func baseName(k pairKey) string {
	return managedName(k.expose, k.site, func(string) bool { return false })
}

func (m *model) addManaged(k pairKey, name string) {
	if name != baseName(k) {
		m.irregular[k] = append(m.irregular[k], name)
	}
}

func (m *model) delManaged(k pairKey, name string) {
	extra := m.irregular[k]
	if len(extra) == 0 {
		return
	}
	extra = slices.DeleteFunc(extra, func(n string) bool { return n == name })
	if len(extra) == 0 {
		delete(m.irregular, k)
	} else {
		m.irregular[k] = extra
	}
}

// managedNames returns the managed VirtualPresences of a pair, sorted by name.
func (m *model) managedNames(k pairKey) []string {
	var out []string
	if base := baseName(k); m.isManagedFor(base, k) {
		out = append(out, base)
	}
	if extra := m.irregular[k]; len(extra) > 0 {
		out = append(out, extra...)
		slices.Sort(out)
	}
	return out
}

// firstManaged returns the managed VirtualPresence of a pair (the first by name).
func (m *model) firstManaged(k pairKey) (string, bool) {
	if len(m.irregular[k]) == 0 {
		base := baseName(k)
		return base, m.isManagedFor(base, k)
	}
	names := m.managedNames(k)
	return names[0], true
}

// isManagedFor reports whether name is a managed VirtualPresence of pair k.
func (m *model) isManagedFor(name string, k pairKey) bool {
	pk, _, ok := m.managedPair(name)
	return ok && pk == k
}

// labelsOf returns the Labels of the managed VirtualPresences of expose.
func labelsOf(expose string) map[string]string {
	return map[string]string{LabelManaged: "true", LabelExpose: expose}
}

// keyID is the identity of a WireGuard key: its 32 bytes (two base64 spellings of one key
// are one key), or the string if it does not decode.
func keyID(key string) string {
	if b, err := base64.StdEncoding.DecodeString(key); err == nil {
		return string(b)
	}
	return key
}

// gatewayKey is the WireGuard key a gateway is known by ("" if none): the hub's is its
// EGateway's publicKey, or Config.PublicKey when that is empty.
func (m *model) gatewayKey(g *api.EGateway) string {
	k := g.PublicKey
	if k == "" && g.Metadata.Name == m.cfg.HubGateway {
		k = m.cfg.PublicKey
	}
	if k == "" {
		return ""
	}
	return keyID(k)
}

func (m *model) index(o api.Object) {
	n := o.GetMeta().Name
	switch v := o.(type) {
	case *api.ESite:
		m.sites[n] = v
	case *api.EGateway:
		m.gateways[n] = v
		m.gwsBySite.add(v.ESiteName, n)
		if _, ok := m.ipam.Gateways[n]; !ok {
			m.unallocated[n] = struct{}{}
		}
		if k := m.gatewayKey(v); k != "" {
			m.keyOwners.add(k, n)
		}
	case *api.EService:
		m.services[n] = v
		m.servicesBySite.add(v.ESiteName, n)
	case *api.EServer:
		m.servers[n] = v
		m.serversBySite.add(v.ESiteName, n)
	case *api.EPolicy:
		m.policies[n] = v
		for _, s := range v.AllowedServers {
			m.policiesByServer.add(s, n)
		}
	case *api.ServiceExpose:
		m.exposes[n] = v
		m.exposesByService.add(v.EServiceName, n)
		for _, s := range v.ESites {
			m.exposesBySite.add(s, n)
		}
		for _, p := range v.EPolicys {
			m.exposesByPolicy.add(p, n)
		}
	case *api.VirtualPresence:
		m.vps[n] = v
		switch {
		case isManaged(v):
			ip, _ := netip.ParseAddr(v.VirtualIP)
			m.indexManaged(n, pairKey{v.Metadata.Labels[LabelExpose], v.ESiteName}, ip)
		case v.VirtualIP != "":
			m.pinVPs[n] = struct{}{}
		}
	}
}

func (m *model) unindex(o api.Object) {
	n := o.GetMeta().Name
	switch v := o.(type) {
	case *api.ESite:
		delete(m.sites, n)
	case *api.EGateway:
		delete(m.gateways, n)
		m.gwsBySite.del(v.ESiteName, n)
		delete(m.unallocated, n)
		if k := m.gatewayKey(v); k != "" {
			m.keyOwners.del(k, n)
		}
	case *api.EService:
		delete(m.services, n)
		m.servicesBySite.del(v.ESiteName, n)
	case *api.EServer:
		delete(m.servers, n)
		m.serversBySite.del(v.ESiteName, n)
	case *api.EPolicy:
		delete(m.policies, n)
		for _, s := range v.AllowedServers {
			m.policiesByServer.del(s, n)
		}
	case *api.ServiceExpose:
		delete(m.exposes, n)
		m.exposesByService.del(v.EServiceName, n)
		for _, s := range v.ESites {
			m.exposesBySite.del(s, n)
		}
		for _, p := range v.EPolicys {
			m.exposesByPolicy.del(p, n)
		}
	case *api.VirtualPresence:
		delete(m.vps, n)
		switch {
		case isManaged(v):
			ip, _ := netip.ParseAddr(v.VirtualIP)
			m.unindexManaged(n, pairKey{v.Metadata.Labels[LabelExpose], v.ESiteName}, ip)
		case v.VirtualIP != "":
			delete(m.pinVPs, n)
		}
	}
}

// setGatewayPrefix sets (ok) or removes the overlay prefix of a gateway.
func (m *model) setGatewayPrefix(gw string, p netip.Prefix, ok bool) {
	old, had := m.ipam.Gateways[gw]
	if had == ok && old == p {
		return
	}
	m.record(func() { m.setGatewayPrefixRaw(gw, old, had) })
	m.setGatewayPrefixRaw(gw, p, ok)
}

func (m *model) setGatewayPrefixRaw(gw string, p netip.Prefix, ok bool) {
	if old, had := m.ipam.Gateways[gw]; had {
		delete(m.ipam.Gateways, gw)
		if m.prefixOwner[old] == gw {
			delete(m.prefixOwner, old)
			if i, ok := m.prefixIndex(old); ok && i < m.prefixHint {
				m.prefixHint = max(i, 1)
			}
		}
		if _, exists := m.gateways[gw]; exists {
			m.unallocated[gw] = struct{}{}
		}
	}
	if ok {
		delete(m.unallocated, gw)
		m.ipam.Gateways[gw] = p
		if _, taken := m.prefixOwner[p]; !taken {
			m.prefixOwner[p] = gw
		}
	}
}

// prefixIndex is i such that subPrefix(OverlayCIDR, OverlayPrefixLen, i) is p.
func (m *model) prefixIndex(p netip.Prefix) (uint64, bool) {
	c := m.cfg.OverlayCIDR
	if p.Bits() != m.cfg.OverlayPrefixLen || !c.Contains(p.Addr()) || p != p.Masked() {
		return 0, false
	}
	return uint64(u32(p.Addr())-u32(c.Addr())) >> (32 - p.Bits()), true
}

// nextFreePrefix returns the lowest overlay prefix no gateway holds (the hub's, index 0,
// is never handed out), or false when none is left.
func (m *model) nextFreePrefix() (netip.Prefix, bool) {
	for i := max(m.prefixHint, 1); ; i++ {
		p, ok := subPrefix(m.cfg.OverlayCIDR, m.cfg.OverlayPrefixLen, i)
		if !ok {
			m.prefixHint = i
			return netip.Prefix{}, false
		}
		if _, used := m.prefixOwner[p]; !used {
			m.prefixHint = i
			return p, true
		}
	}
}

// checkFit sets needFull if a stored overlay prefix does not fit the configuration (a
// changed overlay CIDR or prefix length), two gateways share one, or the hub does not
// hold the first.
func (m *model) checkFit() {
	hub := m.cfg.HubPrefix()
	for gw, p := range m.ipam.Gateways {
		_, ok := m.prefixIndex(p)
		if !ok || m.prefixOwner[p] != gw || (gw == m.cfg.HubGateway) != (p == hub) {
			m.needFull = true
			return
		}
	}
	if _, ok := m.gateways[m.cfg.HubGateway]; ok {
		if _, ok := m.ipam.Gateways[m.cfg.HubGateway]; !ok {
			m.needFull = true
		}
	}
}

// setServiceAddr sets (ok) or removes the overlay address of a service.
func (m *model) setServiceAddr(svc string, a ServiceAddr, ok bool) {
	old, had := m.ipam.Services[svc]
	if had == ok && old == a {
		return
	}
	m.record(func() { m.setServiceAddrRaw(svc, old, had) })
	m.setServiceAddrRaw(svc, a, ok)
}

func (m *model) setServiceAddrRaw(svc string, a ServiceAddr, ok bool) {
	if old, had := m.ipam.Services[svc]; had {
		delete(m.ipam.Services, svc)
		if owners := m.ovOwner[old.Gateway]; owners[old.Addr] == svc {
			delete(owners, old.Addr)
			if len(owners) == 0 {
				delete(m.ovOwner, old.Gateway)
			}
		}
	}
	if ok {
		m.ipam.Services[svc] = a
		owners := m.ovOwner[a.Gateway]
		if owners == nil {
			owners = map[netip.Addr]string{}
			m.ovOwner[a.Gateway] = owners
		}
		if _, taken := owners[a.Addr]; !taken {
			owners[a.Addr] = svc
		}
	}
}

// setEndpoints sets (or, if e is empty, removes) the endpoints of a gateway.
func (m *model) setEndpoints(gw string, e GatewayEndpoints) {
	old, had := m.eps[gw]
	m.record(func() {
		if had {
			m.eps[gw] = old
		} else {
			delete(m.eps, gw)
		}
	})
	if e.empty() {
		delete(m.eps, gw)
	} else {
		m.eps[gw] = e
	}
}

// siteGateway is the gateway serving site, if the site exists and has one (the first by
// name should, in a state not yet validated, there be several).
func (m *model) siteGateway(site string) (*api.EGateway, bool) {
	if _, ok := m.sites[site]; !ok {
		return nil, false
	}
	first := ""
	for n := range m.gwsBySite.all(site) {
		if first == "" || n < first {
			first = n
		}
	}
	if first == "" {
		return nil, false
	}
	return m.gateways[first], true
}

// linkedSites adds to out the sites linked with site by an exposure: those its services
// are exposed to and those whose services are exposed to it.
func (m *model) linkedSites(site string, out set) {
	for svc := range m.servicesBySite.all(site) {
		for en := range m.exposesByService.all(svc) {
			for _, s := range m.exposes[en].ESites {
				out[s] = struct{}{}
			}
		}
	}
	for en := range m.exposesBySite.all(site) {
		if svc, ok := m.services[m.exposes[en].EServiceName]; ok {
			out[svc.ESiteName] = struct{}{}
		}
	}
}

// sortedNames returns the names of kind, sorted (shared: do not modify).
func (m *model) sortedNames(kind string) []string {
	m.sortMu.Lock()
	defer m.sortMu.Unlock()
	if names, ok := m.sorted[kind]; ok {
		return names
	}
	var names []string
	if n, all := m.kindNames(kind); all != nil {
		names = slices.AppendSeq(make([]string, 0, n), all)
		slices.Sort(names)
	}
	if m.sorted == nil {
		m.sorted = map[string][]string{}
	}
	m.sorted[kind] = names
	return names
}

// kindNames returns how many objects of kind there are and their names (in no order); the
// names are nil for a kind the model does not hold. It is the one place that maps a kind
// to its map.
func (m *model) kindNames(kind string) (int, iter.Seq[string]) {
	switch kind {
	case api.KindESite:
		return len(m.sites), maps.Keys(m.sites)
	case api.KindEGateway:
		return len(m.gateways), maps.Keys(m.gateways)
	case api.KindEService:
		return len(m.services), maps.Keys(m.services)
	case api.KindEServer:
		return len(m.servers), maps.Keys(m.servers)
	case api.KindEPolicy:
		return len(m.policies), maps.Keys(m.policies)
	case api.KindServiceExpose:
		return len(m.exposes), maps.Keys(m.exposes)
	case api.KindVirtualPresence:
		return len(m.vps) + len(m.mvps), concat(maps.Keys(m.vps), maps.Keys(m.mvps))
	}
	return 0, nil
}

func (m *model) hasSite(name string) bool { _, ok := m.sites[name]; return ok }

func (m *model) exposesOf(service string) iter.Seq[*api.ServiceExpose] {
	return func(yield func(*api.ServiceExpose) bool) {
		for _, en := range m.exposesByService.sorted(service) {
			if !yield(m.exposes[en]) {
				return
			}
		}
	}
}

// resolvePins resolves every hand-applied VirtualPresence with a virtualIp (resolvePins
// over the model's indexes) and indexes the resolved ones by (service, site) and by IP.
func (m *model) resolvePins() {
	names := m.pinVPs.sortedKeys()
	vps := make([]*api.VirtualPresence, len(names))
	for i, n := range names {
		vps[i] = m.vps[n]
	}
	out := resolvePins(m, vps)
	pair := map[[2]string]*pin{}
	byIP := map[string]map[netip.Addr]*pin{}
	for _, p := range out {
		if p.site == "" {
			continue
		}
		k := [2]string{p.vp.EServiceName, p.site}
		if _, dup := pair[k]; !dup {
			pair[k] = p
		}
		if byIP[p.site] == nil {
			byIP[p.site] = map[netip.Addr]*pin{}
		}
		if _, dup := byIP[p.site][p.ip]; !dup {
			byIP[p.site][p.ip] = p
		}
	}
	oldPins, oldPair, oldIP := m.pins, m.pinPair, m.pinIP
	m.record(func() { m.pins, m.pinPair, m.pinIP = oldPins, oldPair, oldIP })
	m.pins, m.pinPair, m.pinIP = out, pair, byIP
}

// pinnedPair reports whether a pin holds the VIP of service at site.
func (m *model) pinnedPair(service, site string) bool {
	_, ok := m.pinPair[[2]string{service, site}]
	return ok
}

// pinAt returns the pin holding ip at site, if any.
func (m *model) pinAt(site string, ip netip.Addr) (*pin, bool) {
	p, ok := m.pinIP[site][ip]
	return p, ok
}

// subIndex builds an index of the given objects for the compiler and the validator,
// with the model's resolved pins.
func (m *model) subIndex(objs []api.Object) *index {
	ix := newIndex(objs)
	ix.pinList, ix.pinDone = m.pins, true
	return ix
}

// state returns the whole state as a State (objects shared: do not modify them).
func (m *model) state() *State {
	st := &State{Revision: m.rev, Objects: make(map[string]api.Object, m.count()), IPAM: m.ipam.clone(),
		Endpoints: make(map[string]GatewayEndpoints, len(m.eps))}
	m.forEach(func(o api.Object) { st.Objects[api.Key(o)] = o })
	for k, e := range m.eps {
		st.Endpoints[k] = e
	}
	return st
}

// setVP puts (nil: removes) the VirtualPresence name, compact if it has the managed form.
func (m *model) setVP(name string, o api.Object) {
	existed := true
	if c, ok := m.mvps[name]; ok {
		ip, _ := c.vipAddr()
		m.unindexManaged(name, pairKey{c.expose, c.site}, ip)
		delete(m.mvps, name)
	} else if v, ok := m.vps[name]; ok {
		m.unindex(v)
	} else {
		existed = false
	}
	if existed != (o != nil) {
		delete(m.sorted, api.KindVirtualPresence)
	}
	if o == nil {
		return
	}
	vp := o.(*api.VirtualPresence)
	name = vp.Metadata.Name // not a slice of a longer key
	if c, ok := m.compactOf(vp); ok {
		m.mvps[name] = c
		ip, _ := c.vipAddr()
		m.indexManaged(name, pairKey{c.expose, c.site}, ip)
		return
	}
	m.index(vp)
}

func (m *model) indexManaged(name string, k pairKey, ip netip.Addr) {
	m.addManaged(k, name)
	if ip.Is4() {
		owners := m.vipOwner[k.site]
		if owners == nil {
			owners = map[uint32]string{}
			m.vipOwner[k.site] = owners
		}
		if _, taken := owners[u32(ip)]; !taken {
			owners[u32(ip)] = name
		}
	}
}

func (m *model) unindexManaged(name string, k pairKey, ip netip.Addr) {
	m.delManaged(k, name)
	if ip.Is4() {
		if owners := m.vipOwner[k.site]; owners[u32(ip)] == name {
			delete(owners, u32(ip))
			if len(owners) == 0 {
				delete(m.vipOwner, k.site)
			}
		}
	}
}
