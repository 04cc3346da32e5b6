package gateway

import (
	"maps"
	"time"

	"github.com/egw-project/egw/api"
)

// Report returns the node's current status, the body of POST /v1/report: the applied
// revision, lease pool use and drops by reason (the TUN wrapper counts the engine's drops
// and its own).
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
	return r
}
