package dnsd

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/egw-project/egw/api"
	"github.com/miekg/dns"
)

// zone is the immutable answer table built from one api.Snapshot. The server holds it
// behind an atomic.Pointer; Update builds a new one off the query path and swaps it in,
// so a query sees either the old zone or the new one, never a mix.
type zone struct {
	revision int64
	origin   string // lower-case FQDN of the zone we own, e.g. "egw.local."
	soa      *dns.SOA

	// names maps a lower-case FQDN we answer (a dnsName or a domainName under origin)
	// to the VIPs behind it.
	names map[string]*entry
	// ents maps an empty non-terminal under origin (a proper ancestor of a name in
	// names, below origin) to the entries beneath it.
	ents map[string][]*entry
	// ptrs maps a VIP to its PTR target.
	ptrs map[netip.Addr]ptrEntry
	// reverse is the VP CIDR: PTR queries for its addresses are ours (NXDOMAIN if
	// not a VIP), never forwarded.
	reverse netip.Prefix
}

// entry is one owned name: the VIPs it resolves to, each with its own ACL.
type entry struct {
	records []vipRecord
}

// vipRecord is one VIP with the clients allowed to use it.
type vipRecord struct {
	vip       netip.Addr
	allowSite bool
	clients   []netip.Addr // sorted, deduplicated
}

type ptrEntry struct {
	target string // FQDN as configured (lower-case)
	rec    *vipRecord
}

// allows reports whether client may use the VIP. inSite says whether the client is
// inside the site networks (or none are configured).
func (v *vipRecord) allows(client netip.Addr, inSite bool) bool {
	if v.allowSite && inSite {
		return true
	}
	_, found := slices.BinarySearchFunc(v.clients, client, netip.Addr.Compare)
	return found
}

// anyAllowed reports whether any record of any entry allows client.
func anyAllowed(es []*entry, client netip.Addr, inSite bool) bool {
	for _, e := range es {
		for i := range e.records {
			if e.records[i].allows(client, inSite) {
				return true
			}
		}
	}
	return false
}

// buildZone compiles snap into a zone. Entries that cannot be served (bad names, non-IPv4
// VIPs) are skipped and reported in the returned problems, one line each naming the VIP.
// A nil snap gives an empty zone under defZone.
func buildZone(snap *api.Snapshot, defZone string, ttl uint32) (*zone, []string) {
	z := &zone{
		origin: defZone,
		names:  map[string]*entry{},
		ents:   map[string][]*entry{},
		ptrs:   map[netip.Addr]ptrEntry{},
	}
	var problems []string
	if snap != nil {
		z.revision = snap.Revision
		z.reverse = snap.VPCIDR
		if snap.DNSZone != "" {
			if o, err := canonicalName(snap.DNSZone); err == nil {
				z.origin = o
			} else {
				problems = append(problems, fmt.Sprintf("snapshot dnsZone %q: %v; using %q", snap.DNSZone, err, defZone))
			}
		}
	}
	z.soa = &dns.SOA{
		Hdr:     dns.RR_Header{Name: z.origin, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns." + z.origin,
		Mbox:    "hostmaster." + z.origin,
		Serial:  uint32(z.revision),
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: ttl,
	}
	if snap == nil {
		return z, nil
	}

	add := func(name string, v api.VIP) {
		e := z.names[name]
		if e == nil {
			e = &entry{}
			z.names[name] = e
		}
		for i := range e.records {
			if e.records[i].vip == v.VIP { // same VIP named twice: union of the ACLs
				r := &e.records[i]
				r.allowSite = r.allowSite || v.AllowSite
				r.clients = sortedClients(append(slices.Clone(r.clients), v.AllowedClients...))
				return
			}
		}
		e.records = append(e.records, vipRecord{vip: v.VIP, allowSite: v.AllowSite, clients: sortedClients(v.AllowedClients)})
	}

	type ptrSrc struct {
		target string
		name   string
	}
	var ptrOrder []netip.Addr
	ptrNames := map[netip.Addr]ptrSrc{}
	for i, v := range snap.VIPs {
		what := fmt.Sprintf("vips[%d] (service %q, expose %q, vip %v)", i, v.Service, v.Expose, v.VIP)
		if !v.VIP.Is4() {
			problems = append(problems, what+": VIP is not an IPv4 address; skipped")
			continue
		}
		var names []string
		if v.DNSName != "" {
			if n, err := canonicalName(v.DNSName); err != nil {
				problems = append(problems, fmt.Sprintf("%s: dnsName %q: %v; skipped", what, v.DNSName, err))
			} else {
				names = append(names, n)
			}
		}
		if v.DomainName != "" {
			if n, err := domainFQDN(v.DomainName, z.origin); err != nil {
				problems = append(problems, fmt.Sprintf("%s: domainName %q: %v; skipped", what, v.DomainName, err))
			} else if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		for _, n := range names {
			add(n, v)
		}
		if len(names) > 0 {
			if _, dup := ptrNames[v.VIP]; !dup {
				ptrNames[v.VIP] = ptrSrc{target: names[0]}
				ptrOrder = append(ptrOrder, v.VIP)
			}
		}
	}
	// PTR records point at the record of the name they resolve to, so a PTR answer obeys
	// the same ACL as the A answer. Built after all adds: the records slices are final.
	for _, vip := range ptrOrder {
		t := ptrNames[vip].target
		e := z.names[t]
		for i := range e.records {
			if e.records[i].vip == vip {
				z.ptrs[vip] = ptrEntry{target: t, rec: &e.records[i]}
			}
		}
	}
	// Empty non-terminals under the origin.
	for n, e := range z.names {
		if !dns.IsSubDomain(z.origin, n) {
			continue
		}
		for p := parent(n); p != "" && p != z.origin && dns.IsSubDomain(z.origin, p); p = parent(p) {
			if _, isName := z.names[p]; isName {
				continue
			}
			z.ents[p] = append(z.ents[p], e)
		}
	}
	return z, problems
}

// domainFQDN turns an EService domainName into the FQDN we answer: a relative name is put
// under origin; a fully qualified one (trailing dot) is taken as is.
func domainFQDN(d, origin string) (string, error) {
	if strings.HasSuffix(d, ".") {
		return canonicalName(d)
	}
	return canonicalName(d + "." + origin)
}

func sortedClients(in []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		if a.IsValid() {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// parent returns the name with its first label removed ("" for the root).
func parent(name string) string {
	if name == "." || name == "" {
		return ""
	}
	off, end := dns.NextLabel(name, 0)
	if end {
		return "."
	}
	return name[off:]
}

// reverseAddr parses an IPv4 reverse name ("4.3.2.1.in-addr.arpa.", lower-case) into its
// address.
func reverseAddr(name string) (netip.Addr, bool) {
	const suffix = ".in-addr.arpa."
	if !strings.HasSuffix(name, suffix) {
		return netip.Addr{}, false
	}
	labels := strings.Split(strings.TrimSuffix(name, suffix), ".")
	if len(labels) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, l := range labels {
		if l == "" || len(l) > 3 || (len(l) > 1 && l[0] == '0') {
			return netip.Addr{}, false
		}
		n := 0
		for _, c := range l {
			if c < '0' || c > '9' {
				return netip.Addr{}, false
			}
			n = n*10 + int(c-'0')
		}
		if n > 255 {
			return netip.Addr{}, false
		}
		b[3-i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}
