package controlplane

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/egw-project/egw/api"
)

// index is a typed view of a set of objects, with the lookups validation, IPAM, status
// and the compiler share.
type index struct {
	sites    map[string]*api.ESite
	gateways map[string]*api.EGateway
	services map[string]*api.EService
	servers  map[string]*api.EServer
	policies map[string]*api.EPolicy
	exposes  map[string]*api.ServiceExpose

	// gwBySite maps a site to its gateway (the first by name if, in an unvalidated set,
	// there are several).
	gwBySite map[string]*api.EGateway
	// gatewayNames are the keys of gateways, sorted.
	gatewayNames []string
	// The VirtualPresences, in three lists (there are many, and only the status needs
	// them by name): managed ones in no order, hand-applied ones with a virtualIp (pins)
	// sorted by name, and the other hand-applied ones in no order.
	managed  []*api.VirtualPresence
	pinVPs   []*api.VirtualPresence
	otherVPs []*api.VirtualPresence
	// pinList memoizes pins and exposeNames the sorted keys of exposes (the index is
	// never modified after newIndex, but it is not safe for concurrent use).
	pinList     []*pin
	pinDone     bool
	exposeNames []string
}

func newIndex(objs []api.Object) *index {
	ix := &index{
		sites: map[string]*api.ESite{}, gateways: map[string]*api.EGateway{},
		services: map[string]*api.EService{}, servers: map[string]*api.EServer{},
		policies: map[string]*api.EPolicy{}, exposes: map[string]*api.ServiceExpose{},
		gwBySite: map[string]*api.EGateway{},
	}
	for _, o := range objs {
		if v, ok := o.(*api.VirtualPresence); ok {
			switch {
			case isManaged(v):
				ix.managed = append(ix.managed, v)
			case v.VirtualIP != "":
				ix.pinVPs = append(ix.pinVPs, v)
			default:
				ix.otherVPs = append(ix.otherVPs, v)
			}
			continue
		}
		n := o.GetMeta().Name
		switch v := o.(type) {
		case *api.ESite:
			ix.sites[n] = v
		case *api.EGateway:
			ix.gateways[n] = v
		case *api.EService:
			ix.services[n] = v
		case *api.EServer:
			ix.servers[n] = v
		case *api.EPolicy:
			ix.policies[n] = v
		case *api.ServiceExpose:
			ix.exposes[n] = v
		}
	}
	slices.SortFunc(ix.pinVPs, byVPName)
	ix.gatewayNames = sortedKeys(ix.gateways)
	for _, n := range ix.gatewayNames {
		g := ix.gateways[n]
		if _, ok := ix.gwBySite[g.ESiteName]; !ok {
			ix.gwBySite[g.ESiteName] = g
		}
	}
	return ix
}

// sortedExposes returns the names of the ServiceExposes, sorted (shared: do not modify).
func (ix *index) sortedExposes() []string {
	if ix.exposeNames == nil {
		ix.exposeNames = sortedKeys(ix.exposes)
	}
	return ix.exposeNames
}

func byVPName(a, b *api.VirtualPresence) int {
	return strings.Compare(a.Metadata.Name, b.Metadata.Name)
}

// vpsByName returns every VirtualPresence, sorted by name.
func (ix *index) vpsByName() []*api.VirtualPresence {
	all := make([]*api.VirtualPresence, 0, len(ix.managed)+len(ix.pinVPs)+len(ix.otherVPs))
	all = append(append(append(all, ix.managed...), ix.pinVPs...), ix.otherVPs...)
	slices.SortFunc(all, byVPName)
	return all
}

func indexState(st *State) *index {
	objs := make([]api.Object, 0, len(st.Objects))
	for _, o := range st.Objects {
		objs = append(objs, o)
	}
	return newIndex(objs)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// vpCIDR is a gateway's VP CIDR (invalid if it does not parse; Validate refuses that).
func vpCIDR(g *api.EGateway) netip.Prefix {
	p, err := netip.ParsePrefix(g.VirtualPresenceIPcidr)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}
	}
	return p.Masked()
}

// siteGateway is the gateway serving site, if the site exists and has one. A gateway of
// a site that does not exist serves nothing (a dangling reference grants nothing).
func (ix *index) siteGateway(site string) (*api.EGateway, bool) {
	if _, ok := ix.sites[site]; !ok {
		return nil, false
	}
	g, ok := ix.gwBySite[site]
	return g, ok
}

// isManaged reports whether vp is one the control plane manages.
func isManaged(vp *api.VirtualPresence) bool { return vp.Metadata.Labels[LabelManaged] == "true" }

// pin is a hand-applied VirtualPresence with a virtualIp, resolved to its consuming site.
type pin struct {
	vp      *api.VirtualPresence
	ip      netip.Addr
	site    string // "" if not resolved
	gateway *api.EGateway
	// problem says why the pin is not resolved (a condition on the object).
	problem string
}

// pins resolves every hand-applied VirtualPresence with a virtualIp: its site is its
// eSiteName, else the one exposed site of its service whose gateway's VP CIDR holds the IP.
// The answer, sorted by name, is shared: do not modify.
func (ix *index) pins() []*pin {
	if !ix.pinDone {
		ix.pinList, ix.pinDone = ix.resolvePins(), true
	}
	return ix.pinList
}

func (ix *index) resolvePins() []*pin {
	var out []*pin
	for _, vp := range ix.pinVPs {
		ip, err := netip.ParseAddr(vp.VirtualIP)
		if err != nil {
			continue // api.Validate refuses it
		}
		p := &pin{vp: vp, ip: ip}
		out = append(out, p)
		if vp.ESiteName != "" {
			if _, ok := ix.sites[vp.ESiteName]; !ok {
				p.problem = "ESite " + quote(vp.ESiteName) + " not found"
				continue
			}
			g, ok := ix.siteGateway(vp.ESiteName)
			if !ok {
				p.problem = "ESite " + quote(vp.ESiteName) + " has no EGateway"
				continue
			}
			p.site, p.gateway = vp.ESiteName, g
			continue
		}
		var cands []string
		seen := map[string]bool{}
		for _, en := range ix.sortedExposes() {
			e := ix.exposes[en]
			if e.EServiceName != vp.EServiceName {
				continue
			}
			for _, s := range e.ESites {
				g, ok := ix.siteGateway(s)
				if ok && !seen[s] && vpCIDR(g).Contains(ip) {
					seen[s] = true
					cands = append(cands, s)
				}
			}
		}
		switch len(cands) {
		case 0:
			p.problem = "no site the EService " + quote(vp.EServiceName) + " is exposed to has a gateway whose VP CIDR holds " + ip.String() + "; set eSiteName"
		case 1:
			p.site = cands[0]
			p.gateway, _ = ix.siteGateway(cands[0])
		default:
			p.problem = ip.String() + " lies in the VP CIDRs of several exposed sites (" + joinQuoted(cands) + "); set eSiteName"
		}
	}
	return out
}
