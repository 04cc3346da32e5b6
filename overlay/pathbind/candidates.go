package pathbind

import (
	"net"
	"net/netip"
	"slices"
)

// maxLocalCandidates bounds what a gateway reports about itself.
const maxLocalCandidates = 8

// LocalCandidates returns this host's UDP endpoints a peer on a shared network could
// reach directly: port on every up, non-loopback interface's global unicast IPv4
// address, outside the exclude prefixes (the overlay and the VP CIDR, which vp0 carries).
// Sorted, at most 8.
func LocalCandidates(port uint16, exclude ...netip.Prefix) ([]netip.AddrPort, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.AddrPort
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			if c, ok := candidate(ip.Unmap(), port, exclude); ok && !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	if len(out) > maxLocalCandidates {
		out = out[:maxLocalCandidates]
	}
	return out, nil
}

// candidate reports whether ip:port is worth offering as a direct endpoint.
func candidate(ip netip.Addr, port uint16, exclude []netip.Prefix) (netip.AddrPort, bool) {
	if port == 0 || !ip.Is4() || !ip.IsGlobalUnicast() {
		return netip.AddrPort{}, false
	}
	for _, p := range exclude {
		if p.IsValid() && p.Contains(ip) {
			return netip.AddrPort{}, false
		}
	}
	return netip.AddrPortFrom(ip, port), true
}
