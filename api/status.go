package api

import (
	"net/netip"
	"time"
)

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
	// Paths is the gateway's path to each peer gateway it exchanges traffic with.
	Paths []PathStatus `json:"paths,omitempty"`
}

// PathStatus is how a gateway currently reaches one peer gateway.
type PathStatus struct {
	Peer string `json:"peer"` // EGateway name
	// Mode is "direct" (the peer's own UDP endpoint, proven both ways) or "relayed"
	// (ciphertext through a hub).
	Mode string `json:"mode"`
	// Since is when the path took this mode.
	Since time.Time `json:"since,omitzero"`
	// Endpoint is the UDP endpoint in use: the peer's when direct, the hub's when relayed.
	Endpoint string `json:"endpoint,omitempty"`
	// RTTMS is the latest probe round trip on the direct path, in milliseconds (0: none).
	RTTMS float64 `json:"rttMs,omitempty"`
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
	// Candidates are the gateway's own LAN UDP endpoints (its WireGuard listen port on
	// each local unicast address), so linked gateways can try a direct path to it.
	Candidates []netip.AddrPort `json:"candidates,omitempty"`
	// Paths is the gateway's current path to each peer gateway.
	Paths []PathStatus `json:"paths,omitempty"`
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
