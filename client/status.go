package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/egw-project/egw/api"
)

// Status is the answer of GET /v1/status: every gateway as last reported.
type Status struct {
	api.StatusReport
	// Raw is the answer exactly as the server sent it (for -o json).
	Raw json.RawMessage `json:"-"`
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
	api.Explanation
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
