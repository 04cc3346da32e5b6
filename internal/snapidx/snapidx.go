// Package snapidx provides the indexes of one api.Snapshot that both the translation table
// (vpresence) and the ACL (policy) look up on the packet path, built once per snapshot:
// VIP → its position in Snapshot.VIPs (an array indexed by address when the VP CIDR is
// small enough, else a map), and every gateway's overlay prefix → its site. It imports only
// api and ip4, so vpresence and policy share it without depending on each other.
package snapidx

import (
	"fmt"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
)

// Index is immutable once Build returns; lookups are safe for concurrent use.
type Index struct {
	vips map[uint32]int32 // VIP -> index in Snapshot.VIPs
	// arr indexes Snapshot.VIPs directly by VIP - base (-1: none) when the VP CIDR is
	// ≤ /14 and holds every VIP: one array load instead of a map probe.
	base uint32
	arr  []int32

	gateways ip4.PrefixSet // overlay prefix -> site index
	sites    []string      // site index -> name
	siteIdx  map[string]int32
}

// Build indexes s. It fails, naming the entry, on a VIP that is not IPv4 or is given
// twice, and on a gateway whose overlay prefix is not an IPv4 prefix.
func Build(s *api.Snapshot) (*Index, error) {
	if s == nil {
		return nil, fmt.Errorf("snapshot index: nil snapshot")
	}
	x := &Index{vips: make(map[uint32]int32, len(s.VIPs)), siteIdx: map[string]int32{}}
	for i := range s.VIPs {
		v := &s.VIPs[i]
		if !v.VIP.Is4() {
			return nil, fmt.Errorf("VIP %q of service %q: not an IPv4 address", v.VIP, v.Service)
		}
		k := ip4.U32(v.VIP)
		if _, dup := x.vips[k]; dup {
			return nil, fmt.Errorf("VIP %s given to two services (second: %q)", v.VIP, v.Service)
		}
		x.vips[k] = int32(i)
	}
	if p := s.VPCIDR; p.IsValid() && p.Addr().Is4() && p.Bits() >= 14 && len(x.vips) > 0 {
		base := ip4.U32(p.Masked().Addr())
		arr := make([]int32, 1<<(32-p.Bits()))
		for i := range arr {
			arr[i] = -1
		}
		for k, i := range x.vips {
			if k-base >= uint32(len(arr)) {
				arr = nil // a VIP outside the VP CIDR: keep to the map
				break
			}
			arr[k-base] = i
		}
		x.base, x.arr = base, arr
	}
	for _, g := range s.Gateways {
		if !g.OverlayPrefix.IsValid() || !g.OverlayPrefix.Addr().Is4() {
			return nil, fmt.Errorf("gateway %q: overlay prefix %s is not IPv4", g.Name, g.OverlayPrefix)
		}
		x.gateways.Add(g.OverlayPrefix, x.site(g.Site))
	}
	return x, nil
}

func (x *Index) site(name string) int32 {
	if i, ok := x.siteIdx[name]; ok {
		return i
	}
	i := int32(len(x.sites))
	x.sites = append(x.sites, name)
	x.siteIdx[name] = i
	return i
}

// VIP returns the position in Snapshot.VIPs of the VIP a (big-endian, see ip4.U32).
func (x *Index) VIP(a uint32) (int, bool) {
	if x.arr != nil {
		if o := a - x.base; o < uint32(len(x.arr)) {
			if i := x.arr[o]; i >= 0 {
				return int(i), true
			}
		}
		return 0, false
	}
	i, ok := x.vips[a]
	return int(i), ok
}

// SiteOf returns the index of the site whose gateway's overlay prefix holds a.
func (x *Index) SiteOf(a uint32) (int32, bool) { return x.gateways.Lookup(a) }

// SiteIndex returns the index of the site named name, if a gateway of the snapshot is at it.
func (x *Index) SiteIndex(name string) (int32, bool) {
	i, ok := x.siteIdx[name]
	return i, ok
}

// SiteName returns the name of site index i (from SiteOf or SiteIndex).
func (x *Index) SiteName(i int32) string { return x.sites[i] }
