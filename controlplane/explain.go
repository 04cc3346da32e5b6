package controlplane

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/policy"
)

// Explain decides, from the compiled snapshot of site's gateway, whether a client with
// address src at site may reach to: a VIP, a dnsName, an EService domainName, a
// ServiceExpose name or an EService name.
func (s *Server) Explain(site, src, to string) (*api.Explanation, error) {
	ip, err := netip.ParseAddr(src)
	if err != nil || !ip.Is4() {
		return nil, &Error{Code: CodeBadRequest, Field: "src", Message: fmt.Sprintf("%q is not an IPv4 address", src)}
	}
	if site == "" || to == "" {
		return nil, &Error{Code: CodeBadRequest, Message: "explain needs site, src and to"}
	}
	ex := &api.Explanation{Site: site, Src: ip.String(), Verdict: "denied"}
	st, err := s.store.loadShared()
	if err != nil {
		return nil, err
	}
	if _, ok := st.Objects[api.KindESite+"/"+site]; !ok {
		return nil, &Error{Code: CodeNotFound, Object: api.KindESite + "/" + site, Message: "not found"}
	}
	var snap *api.Snapshot
	if g, ok := indexState(st).siteGateway(site); ok {
		snap, _ = s.Snapshot(g.Metadata.Name)
	}
	if snap == nil {
		ex.Reason = fmt.Sprintf("site %q has no EGateway with an overlay prefix: nothing is reachable from it", site)
		return ex, nil
	}
	var v *api.VIP
	for i := range snap.VIPs {
		if matchVIP(&snap.VIPs[i], to) {
			v = &snap.VIPs[i]
			break
		}
	}
	if v == nil {
		ex.Reason = fmt.Sprintf("%q names no service exposed to site %q (by VIP, dnsName, domainName, ServiceExpose or EService name)", to, site)
		return ex, nil
	}
	ex.Service, ex.Expose, ex.VIP, ex.Protocol, ex.Port = v.Service, v.Expose, v.VIP.String(), v.Protocol, int(v.Port)
	// The verdict is the packet path's: the gateway's compiled ACL asked whether a packet
	// from ip to the VIP, on the service's protocol and port, passes.
	pol, err := policy.Compile(snap)
	if err != nil {
		ex.Reason = fmt.Sprintf("the snapshot of site %q does not compile (%v): its gateway keeps its previous one", site, err)
		return ex, nil
	}
	proto, _ := ip4.ParseProto(v.Protocol)
	verdict := pol.CheckVIP(ip4.U32(v.VIP), ip4.U32(ip), proto, v.Port, false)
	if verdict != policy.Allow {
		ex.Decisions = v.Decisions
		ex.Reason = fmt.Sprintf("no policy of ServiceExpose %q allows %s at site %q (default deny)", v.Expose, ip, site)
		if verdict != policy.DenyClient {
			ex.Reason = fmt.Sprintf("ServiceExpose %q: %s", v.Expose, verdict)
		}
		return ex, nil
	}
	ex.Allowed, ex.Verdict = true, "allowed"
	// What allowed it, in the ACL's own terms: the client's address, else its whole site.
	if pol.Explain(ip, v.VIP).DecidedBy == policy.ByServer {
		for _, d := range v.Decisions {
			if d.Server != "" && d.IP == ip {
				ex.Decisions = append(ex.Decisions, d)
			}
		}
		if len(ex.Decisions) > 0 {
			d := ex.Decisions[0]
			ex.Reason = fmt.Sprintf("EPolicy %q allows EServer %q (%s)", d.Policy, d.Server, ip)
		}
	} else {
		for _, d := range v.Decisions {
			if d.Server == "" && d.Site == site {
				ex.Decisions = append(ex.Decisions, d)
			}
		}
		if len(ex.Decisions) > 0 {
			ex.Reason = fmt.Sprintf("EPolicy %q allows site %q", ex.Decisions[0].Policy, site)
		}
	}
	if ex.Reason == "" {
		ex.Reason = fmt.Sprintf("the ACL of site %q allows %s", site, ip)
	}
	return ex, nil
}

func matchVIP(v *api.VIP, to string) bool {
	if a, err := netip.ParseAddr(to); err == nil {
		return v.VIP == a
	}
	t := strings.TrimSuffix(to, ".")
	return strings.EqualFold(strings.TrimSuffix(v.DNSName, "."), t) && v.DNSName != "" ||
		strings.EqualFold(v.DomainName, t) && v.DomainName != "" ||
		v.Expose == to || v.Service == to
}
