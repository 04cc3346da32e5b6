package controlplane

import (
	"fmt"
	"slices"
	"strings"

	"github.com/egw-project/egw/api"
)

// Condition types and reasons the control plane sets.
const (
	CondResolvedRefs = "ResolvedRefs"
	CondAllocated    = "Allocated"
)

// fillStatus sets the status (conditions and allocations) of every object in st. It is
// computed on every read, never stored.
func fillStatus(st *State, cfg Config) {
	ix := indexState(st)
	var missing []string
	miss := func(format string, a ...any) { missing = append(missing, fmt.Sprintf(format, a...)) }
	site := func(s string) {
		if s == "" {
			miss("no eSiteName")
		} else if _, ok := ix.sites[s]; !ok {
			miss("ESite %q not found", s)
		}
	}
	siteWithGateway := func(s string) {
		if _, ok := ix.sites[s]; !ok {
			miss("ESite %q not found", s)
		} else if _, ok := ix.gwBySite[s]; !ok {
			miss("ESite %q has no EGateway", s)
		}
	}
	refs := func(o api.Object) {
		c := api.Condition{Type: CondResolvedRefs, Status: "True"}
		if len(missing) > 0 {
			c = api.Condition{Type: CondResolvedRefs, Status: "False", Reason: "NotFound",
				Message: strings.Join(missing, "; ") + " (grants nothing until it exists)"}
		}
		o.GetStatus().Conditions = append(o.GetStatus().Conditions, c)
		missing = nil
	}
	allocFailed := func(o api.Object, msg string) {
		o.GetStatus().Conditions = append(o.GetStatus().Conditions,
			api.Condition{Type: CondAllocated, Status: "False", Reason: "Exhausted", Message: msg})
	}
	allocated := func(o api.Object) {
		o.GetStatus().Conditions = append(o.GetStatus().Conditions, api.Condition{Type: CondAllocated, Status: "True"})
	}

	for _, s := range ix.sites {
		if g, ok := ix.gwBySite[s.Metadata.Name]; ok {
			s.Status.EGateway = g.Metadata.Name
		}
	}
	for _, n := range sortedKeys(ix.gateways) {
		g := ix.gateways[n]
		site(g.ESiteName)
		refs(g)
		g.Status.ESiteName = g.ESiteName
		if p, ok := st.IPAM.Gateways[n]; ok {
			g.Status.OverlayPrefix = p.String()
			g.Status.OverlayIP = firstAddr(p).String()
			allocated(g)
		} else {
			allocFailed(g, fmt.Sprintf("no free /%d left in the overlay CIDR %s", cfg.OverlayPrefixLen, cfg.OverlayCIDR))
		}
	}
	exposed := map[string]bool{}
	for _, e := range ix.exposes {
		exposed[e.EServiceName] = true
	}
	for _, n := range sortedKeys(ix.services) {
		s := ix.services[n]
		siteWithGateway(s.ESiteName)
		refs(s)
		if g, ok := ix.gwBySite[s.ESiteName]; ok {
			s.Status.EGateway = g.Metadata.Name
		}
		if a, ok := st.IPAM.Services[n]; ok {
			s.Status.OverlayIP = a.Addr.String()
			allocated(s)
		} else if g, ok := ix.siteGateway(s.ESiteName); ok && exposed[n] {
			if p, ok := st.IPAM.Gateways[g.Metadata.Name]; ok {
				lo, hi, _ := lowerHalf(p)
				allocFailed(s, fmt.Sprintf("no free overlay address left in %s-%s of EGateway %q", addrOf(lo), addrOf(hi), g.Metadata.Name))
			}
		}
	}
	for _, n := range sortedKeys(ix.servers) {
		s := ix.servers[n]
		site(s.ESiteName)
		refs(s)
	}
	for _, n := range sortedKeys(ix.policies) {
		p := ix.policies[n]
		for _, sv := range p.AllowedServers {
			if _, ok := ix.servers[sv]; !ok {
				miss("EServer %q not found", sv)
			}
		}
		for _, s := range p.AllowedSites {
			if _, ok := ix.sites[s]; !ok {
				miss("ESite %q not found", s)
			}
		}
		refs(p)
	}
	for _, n := range ix.sortedExposes() {
		e := ix.exposes[n]
		if _, ok := ix.services[e.EServiceName]; !ok {
			miss("EService %q not found", e.EServiceName)
		} else {
			e.Status.OverlayIP = ovString(st, e.EServiceName)
		}
		for _, s := range e.ESites {
			siteWithGateway(s)
		}
		for _, p := range e.EPolicys {
			if _, ok := ix.policies[p]; !ok {
				miss("EPolicy %q not found", p)
			}
		}
		refs(e)
	}
	pins := map[string]*pin{}
	for _, p := range ix.pins() {
		pins[p.vp.Metadata.Name] = p
	}
	for _, vp := range ix.vpsByName() {
		n := vp.Metadata.Name
		if _, ok := ix.services[vp.EServiceName]; !ok {
			miss("EService %q not found", vp.EServiceName)
		}
		switch p, isPin := pins[n]; {
		case isManaged(vp):
			vp.Status.ESiteName = vp.ESiteName
			if g, ok := ix.siteGateway(vp.ESiteName); ok {
				vp.Status.EGateway = g.Metadata.Name
				if vp.VirtualIP == "" {
					lo, hi, _ := lowerHalf(vpCIDR(g))
					allocFailed(vp, fmt.Sprintf("no free VIP left in %s-%s, the lower half of the VP CIDR %s of EGateway %q",
						addrOf(lo), addrOf(hi), vpCIDR(g), g.Metadata.Name))
				} else {
					allocated(vp)
				}
			}
		case isPin && p.site == "":
			miss("%s", p.problem)
		case isPin:
			vp.Status.ESiteName = p.site
			vp.Status.EGateway = p.gateway.Metadata.Name
			if !exposedTo(ix, vp.EServiceName, p.site) {
				miss("no ServiceExpose exposes EService %q to site %q", vp.EServiceName, p.site)
			}
		default:
			miss("no virtualIp: a VirtualPresence applied by hand pins a VIP; the control plane allocates the others")
		}
		refs(vp)
	}
}

func ovString(st *State, service string) string {
	if a, ok := st.IPAM.Services[service]; ok {
		return a.Addr.String()
	}
	return ""
}

// exposedTo reports whether some ServiceExpose exposes service to site.
func exposedTo(ix *index, service, site string) bool {
	for _, e := range ix.exposes {
		if e.EServiceName != service {
			continue
		}
		for _, s := range e.ESites {
			if s == site {
				return true
			}
		}
	}
	return false
}

// fillObjectStatus sets the status of o (a copy of an object of m) as fillStatus would,
// looking up only what o names (and, for a site, its gateway).
func fillObjectStatus(m *model, o api.Object) {
	var missing []string
	miss := func(format string, a ...any) { missing = append(missing, fmt.Sprintf(format, a...)) }
	site := func(s string) {
		if s == "" {
			miss("no eSiteName")
		} else if _, ok := m.sites[s]; !ok {
			miss("ESite %q not found", s)
		}
	}
	siteWithGateway := func(s string) {
		if _, ok := m.sites[s]; !ok {
			miss("ESite %q not found", s)
		} else if m.gwsBySite.count(s) == 0 {
			miss("ESite %q has no EGateway", s)
		}
	}
	// firstGateway is the gateway of a site whether or not the site exists (fillStatus's
	// gwBySite).
	firstGateway := func(s string) (*api.EGateway, bool) {
		first := ""
		for n := range m.gwsBySite.all(s) {
			if first == "" || n < first {
				first = n
			}
		}
		g, ok := m.gateways[first]
		return g, ok
	}
	st := o.GetStatus()
	refs := func() {
		c := api.Condition{Type: CondResolvedRefs, Status: "True"}
		if len(missing) > 0 {
			c = api.Condition{Type: CondResolvedRefs, Status: "False", Reason: "NotFound",
				Message: strings.Join(missing, "; ") + " (grants nothing until it exists)"}
		}
		st.Conditions = append(st.Conditions, c)
	}
	allocFailed := func(msg string) {
		st.Conditions = append(st.Conditions, api.Condition{Type: CondAllocated, Status: "False", Reason: "Exhausted", Message: msg})
	}
	allocated := func() { st.Conditions = append(st.Conditions, api.Condition{Type: CondAllocated, Status: "True"}) }

	switch v := o.(type) {
	case *api.ESite:
		if g, ok := firstGateway(v.Metadata.Name); ok {
			st.EGateway = g.Metadata.Name
		}
	case *api.EGateway:
		site(v.ESiteName)
		refs()
		st.ESiteName = v.ESiteName
		if p, ok := m.ipam.Gateways[v.Metadata.Name]; ok {
			st.OverlayPrefix = p.String()
			st.OverlayIP = firstAddr(p).String()
			allocated()
		} else {
			allocFailed(fmt.Sprintf("no free /%d left in the overlay CIDR %s", m.cfg.OverlayPrefixLen, m.cfg.OverlayCIDR))
		}
	case *api.EService:
		n := v.Metadata.Name
		siteWithGateway(v.ESiteName)
		refs()
		if g, ok := firstGateway(v.ESiteName); ok {
			st.EGateway = g.Metadata.Name
		}
		if a, ok := m.ipam.Services[n]; ok {
			st.OverlayIP = a.Addr.String()
			allocated()
		} else if g, ok := m.siteGateway(v.ESiteName); ok && m.exposesByService.count(n) > 0 {
			if p, ok := m.ipam.Gateways[g.Metadata.Name]; ok {
				lo, hi, _ := lowerHalf(p)
				allocFailed(fmt.Sprintf("no free overlay address left in %s-%s of EGateway %q", addrOf(lo), addrOf(hi), g.Metadata.Name))
			}
		}
	case *api.EServer:
		site(v.ESiteName)
		refs()
	case *api.EPolicy:
		for _, sv := range v.AllowedServers {
			if _, ok := m.servers[sv]; !ok {
				miss("EServer %q not found", sv)
			}
		}
		for _, s := range v.AllowedSites {
			if _, ok := m.sites[s]; !ok {
				miss("ESite %q not found", s)
			}
		}
		refs()
	case *api.ServiceExpose:
		if _, ok := m.services[v.EServiceName]; !ok {
			miss("EService %q not found", v.EServiceName)
		} else if a, ok := m.ipam.Services[v.EServiceName]; ok {
			st.OverlayIP = a.Addr.String()
		}
		for _, s := range v.ESites {
			siteWithGateway(s)
		}
		for _, p := range v.EPolicys {
			if _, ok := m.policies[p]; !ok {
				miss("EPolicy %q not found", p)
			}
		}
		refs()
	case *api.VirtualPresence:
		n := v.Metadata.Name
		if _, ok := m.services[v.EServiceName]; !ok {
			miss("EService %q not found", v.EServiceName)
		}
		var p *pin
		if _, isPin := m.pinVPs[n]; isPin {
			i, found := slices.BinarySearchFunc(m.pins, n, func(p *pin, n string) int { return strings.Compare(p.vp.Metadata.Name, n) })
			if found {
				p = m.pins[i]
			}
		}
		switch {
		case isManaged(v):
			st.ESiteName = v.ESiteName
			if g, ok := m.siteGateway(v.ESiteName); ok {
				st.EGateway = g.Metadata.Name
				if v.VirtualIP == "" {
					lo, hi, _ := lowerHalf(vpCIDR(g))
					allocFailed(fmt.Sprintf("no free VIP left in %s-%s, the lower half of the VP CIDR %s of EGateway %q",
						addrOf(lo), addrOf(hi), vpCIDR(g), g.Metadata.Name))
				} else {
					allocated()
				}
			}
		case p != nil && p.site == "":
			miss("%s", p.problem)
		case p != nil:
			st.ESiteName = p.site
			st.EGateway = p.gateway.Metadata.Name
			if !m.exposedTo(v.EServiceName, p.site) {
				miss("no ServiceExpose exposes EService %q to site %q", v.EServiceName, p.site)
			}
		default:
			miss("no virtualIp: a VirtualPresence applied by hand pins a VIP; the control plane allocates the others")
		}
		refs()
	}
}

// exposedTo reports whether some ServiceExpose exposes service to site.
func (m *model) exposedTo(service, site string) bool {
	for en := range m.exposesByService.all(service) {
		if slices.Contains(m.exposes[en].ESites, site) {
			return true
		}
	}
	return false
}
