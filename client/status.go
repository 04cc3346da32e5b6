package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/egw-project/egw/api"
)

// Status is the answer of GET /v1/status: every gateway as last reported.
type Status struct {
	// Revision is the store's latest revision.
	Revision int64           `json:"revision"`
	Gateways []GatewayStatus `json:"gateways"`
	// Raw is the answer exactly as the server sent it (for -o json).
	Raw json.RawMessage `json:"-"`
}

// GatewayStatus is one gateway's state as the control plane knows it.
type GatewayStatus struct {
	Name string `json:"name"`
	Site string `json:"site,omitempty"`
	Hub  bool   `json:"hub,omitempty"`
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

// PoolUse is how full one lease pool is.
type PoolUse struct {
	Pool string `json:"pool"` // e.g. "client", "presence"
	Used int    `json:"used"`
	Size int    `json:"size"`
}

// Status returns every gateway's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	s := &Status{}
	data, _, err := c.do(ctx, http.MethodGet, "/v1/status", nil, s)
	if err != nil {
		return nil, err
	}
	s.Raw = data
	return s, nil
}

// Explanation is the answer of GET /v1/explain: may a client at a site reach a service,
// and what decided it.
type Explanation struct {
	// Allowed is the verdict; Verdict its word ("allowed" or "denied") if the server sends one.
	Allowed bool   `json:"allowed"`
	Verdict string `json:"verdict,omitempty"`
	// Reason says what decided it, e.g. "EPolicy/p1 allows EServer/client1" or "no policy
	// of ServiceExpose/nginx allows 10.0.0.20".
	Reason   string `json:"reason,omitempty"`
	Site     string `json:"site,omitempty"`
	Src      string `json:"src,omitempty"`
	Service  string `json:"service,omitempty"`
	Expose   string `json:"expose,omitempty"`
	VIP      string `json:"vip,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Port     int    `json:"port,omitempty"`
	// Decisions are the entries of the ACL that matched (or, when denied, that exist).
	Decisions []api.Decision `json:"decisions,omitempty"`
	// Raw is the answer exactly as the server sent it.
	Raw json.RawMessage `json:"-"`
}

// Explain asks whether a client with address src at site may reach to (an EService name,
// a ServiceExpose dnsName, or a VIP).
func (c *Client) Explain(ctx context.Context, site, src, to string) (*Explanation, error) {
	if site == "" || src == "" || to == "" {
		return nil, errors.New("explain needs a site, a source address and a target")
	}
	q := url.Values{"site": {site}, "src": {src}, "to": {to}}
	e := &Explanation{}
	data, _, err := c.do(ctx, http.MethodGet, "/v1/explain?"+q.Encode(), nil, e)
	if err != nil {
		return nil, err
	}
	e.Raw = data
	switch strings.ToLower(e.Verdict) {
	case "allow", "allowed", "accept", "permit", "pass":
		e.Allowed = true
	case "":
		e.Verdict = "denied"
		if e.Allowed {
			e.Verdict = "allowed"
		}
	}
	return e, nil
}
