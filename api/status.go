package api

import "time"

// The JSON bodies of the control plane's status endpoints, shared by the server
// (controlplane), the gateways that report to it (gateway) and egwctl (client).

// StatusReport is the answer of GET /v1/status: every gateway as last reported.
type StatusReport struct {
	// Revision is the store's latest revision.
	Revision int64           `json:"revision"`
	Gateways []GatewayStatus `json:"gateways"`
}

// GatewayStatus is one gateway in the answer of GET /v1/status, as the control plane
// knows it.
type GatewayStatus struct {
	Name          string `json:"name"`
	Site          string `json:"site,omitempty"`
	Hub           bool   `json:"hub,omitempty"`
	OverlayPrefix string `json:"overlayPrefix,omitempty"`
	// Connected is true while the gateway reports and its WireGuard handshake is fresh.
	Connected bool `json:"connected"`
	// LastHandshake is the time of the latest WireGuard handshake with the gateway (zero:
	// never).
	LastHandshake time.Time `json:"lastHandshake,omitzero"`
	// LastReport is when the gateway last reported its status (zero: never).
	LastReport time.Time `json:"lastReport,omitzero"`
	RxBytes    uint64    `json:"rxBytes"`
	TxBytes    uint64    `json:"txBytes"`
	// AppliedRevision is the snapshot revision the gateway reports as applied;
	// LatestRevision the revision of its latest compiled snapshot.
	AppliedRevision int64 `json:"appliedRevision"`
	LatestRevision  int64 `json:"latestRevision"`
	// Leases is the use of each lease pool (ov(c) clients, presence IPs).
	Leases []PoolUse `json:"leases,omitempty"`
	// Drops counts dropped packets by reason.
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// PoolUse is how full one lease pool of a gateway is.
type PoolUse struct {
	Pool string `json:"pool"` // "client" (ov(c)) or "presence"
	Used int    `json:"used"`
	Size int    `json:"size"`
}

// Report is what a gateway posts to POST /v1/report after applying a snapshot and
// periodically (the hub's own node hands it to the control plane in-process): the snapshot
// revision it applied, how full its lease pools are and its drops by reason.
type Report struct {
	// Gateway is set by the server from the caller's identity; a value sent is ignored.
	Gateway         string            `json:"gateway,omitempty"`
	AppliedRevision int64             `json:"appliedRevision"`
	Leases          []PoolUse         `json:"leases,omitempty"`
	Drops           map[string]uint64 `json:"drops,omitempty"`
	// SyncLatencyMS is the duration of the gateway's last sync poll that delivered a
	// snapshot, in milliseconds (zero for the hub, which follows its snapshot in-process).
	SyncLatencyMS float64 `json:"syncLatencyMs,omitempty"`
	// Received is set by the server.
	Received time.Time `json:"received,omitzero"`
}

// Explanation is the answer of GET /v1/explain: may a client with address Src at Site
// reach a service, and what decided it.
type Explanation struct {
	// Allowed is the verdict; Verdict its word ("allowed" or "denied").
	Allowed bool   `json:"allowed"`
	Verdict string `json:"verdict"`
	// Reason says what decided it, e.g. "EPolicy/p1 allows EServer/client1" or "no policy
	// of ServiceExpose/nginx allows 10.0.0.20".
	Reason   string `json:"reason"`
	Site     string `json:"site"`
	Src      string `json:"src"`
	Service  string `json:"service,omitempty"`
	Expose   string `json:"expose,omitempty"`
	VIP      string `json:"vip,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Port     int    `json:"port,omitempty"`
	// Decisions are the entries of the ACL that matched (or, when denied, that exist).
	Decisions []Decision `json:"decisions,omitempty"`
}
