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

// fillObjectStatus sets the status (conditions and allocations) of o, a copy of an object
// of m. It is computed on every read, never stored, looking up only what o names (and,
// for a site, its gateway).
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
	// firstGateway is the gateway of a site whether or not the site exists.
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
