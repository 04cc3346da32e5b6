package gateway

import (
	"maps"
	"time"
)

// PoolUse is how full one lease pool is (JSON as the control plane's /v1/report expects).
type PoolUse struct {
	Pool string `json:"pool"` // "client" (ov(c)) or "presence"
	Used int    `json:"used"`
	Size int    `json:"size"`
}

// Report is what a gateway tells the cloud after applying a snapshot and periodically.
type Report struct {
	AppliedRevision int64             `json:"appliedRevision"`
	Leases          []PoolUse         `json:"leases,omitempty"`
	Drops           map[string]uint64 `json:"drops,omitempty"`
	SyncLatencyMS   float64           `json:"syncLatencyMs,omitempty"`
}

// Report returns the node's current status: the applied revision, lease pool use and
// drops by reason (the TUN wrapper counts the engine's drops and its own).
func (n *Node) Report() Report {
	st := n.engine.Stats()
	r := Report{
		Leases: []PoolUse{
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
