package gateway

import (
	"maps"
	"net/netip"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/overlay/pathbind"
)

// Report returns the node's current status, the body of POST /v1/report: the applied
// revision, lease pool use and drops by reason (the TUN wrapper counts the engine's drops
// and its own); an edge adds its path to each linked gateway and its LAN candidates.
func (n *Node) Report() api.Report {
	st := n.engine.Stats()
	r := api.Report{
		Leases: []api.PoolUse{
			{Pool: "client", Used: st.ClientPool.InUse, Size: st.ClientPool.Size},
			{Pool: "presence", Used: st.PresencePool.InUse, Size: st.PresencePool.Size},
		},
		Drops:         maps.Clone(n.ov.Wrapper().Stats().Drops),
		SyncLatencyMS: float64(n.syncLatency.Load()) / float64(time.Millisecond),
	}
	if s := n.applied.Load(); s != nil {
		r.AppliedRevision = s.Revision
	}
	if !n.opts.Hub {
		r.Paths = n.ov.Paths()
		r.Candidates = n.localCandidates()
	}
	return r
}

// localCandidates are the edge's LAN endpoints for direct paths: its WireGuard port on
// each of its unicast IPv4 addresses outside the overlay, its VP CIDR and its site
// networks (dns.siteNetworks: site LANs may overlap between sites, so an address there
// names nothing another site could reach).
func (n *Node) localCandidates() []netip.AddrPort {
	port, err := n.ov.ListenPort()
	if err != nil || port <= 0 || port > 65535 {
		return nil
	}
	exclude := append([]netip.Prefix{n.cfg.OverlayCIDRP, n.cfg.VPCIDRP}, n.cfg.SiteNetworks...)
	c, err := pathbind.LocalCandidates(uint16(port), exclude...)
	if err != nil {
		n.log.Debug("local candidates not listed", "err", err)
		return nil
	}
	return c
}
