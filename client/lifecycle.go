package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/egw-project/egw/api"
)

// JoinToken describes a join token (never its secret); the control plane's
// controlplane.JoinToken on the wire.
type JoinToken struct {
	ID      string    `json:"id"`
	Gateway string    `json:"gateway"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Used    time.Time `json:"used,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	State   string    `json:"state"` // pending, used, expired, revoked
}

// RevokedKey is a WireGuard key that is never admitted again.
type RevokedKey struct {
	Key     string    `json:"key"`
	Gateway string    `json:"gateway"`
	Revoked time.Time `json:"revoked"`
}

// CreateJoinToken makes a one-time join token for an edge gateway registered without a key
// (POST /v1/tokens). ttl 0: the cloud's default (24 h). The text is shown once.
func (c *Client) CreateJoinToken(ctx context.Context, gateway string, ttl time.Duration) (string, JoinToken, error) {
	if gateway == "" {
		return "", JoinToken{}, errors.New("join token: empty gateway name")
	}
	body := map[string]string{"gateway": gateway}
	if ttl != 0 {
		body["ttl"] = ttl.String()
	}
	var out struct {
		Token string    `json:"token"`
		Info  JoinToken `json:"info"`
	}
	if _, _, err := c.do(ctx, http.MethodPost, "/v1/tokens", body, &out); err != nil {
		return "", JoinToken{}, err
	}
	return out.Token, out.Info, nil
}

// JoinTokens lists the join tokens (GET /v1/tokens).
func (c *Client) JoinTokens(ctx context.Context) ([]JoinToken, error) {
	var out struct {
		Items []JoinToken `json:"items"`
	}
	_, _, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out.Items, err
}

// RevokeJoinToken revokes an unused join token (DELETE /v1/tokens/{id}).
func (c *Client) RevokeJoinToken(ctx context.Context, id string) (JoinToken, error) {
	var out JoinToken
	_, _, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, &out)
	return out, err
}

// RevokeGateway revokes a gateway's key (POST /v1/egateways/{name}/revoke) and returns the
// gateway.
func (c *Client) RevokeGateway(ctx context.Context, name string) (*api.EGateway, error) {
	var out api.EGateway
	_, _, err := c.do(ctx, http.MethodPost, "/v1/egateways/"+url.PathEscape(name)+"/revoke", nil, &out)
	return &out, err
}

// RevokedKeys lists the revoked keys (GET /v1/revokedkeys).
func (c *Client) RevokedKeys(ctx context.Context) ([]RevokedKey, error) {
	var out struct {
		Items []RevokedKey `json:"items"`
	}
	_, _, err := c.do(ctx, http.MethodGet, "/v1/revokedkeys", nil, &out)
	return out.Items, err
}

// RotateKey asks a gateway to rotate its key (POST /v1/egateways/{name}/rotate-key); the
// gateway does it at its next sync answer. It returns the gateway.
func (c *Client) RotateKey(ctx context.Context, name string) (*api.EGateway, error) {
	var out api.EGateway
	_, _, err := c.do(ctx, http.MethodPost, "/v1/egateways/"+url.PathEscape(name)+"/rotate-key", nil, &out)
	return &out, err
}
