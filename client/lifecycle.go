package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/egw-project/egw/api"
)

// CreateJoinToken makes a one-time join token for an edge gateway registered without a key
// (POST /v1/tokens). ttl 0: the cloud's default (24 h). The text is shown once.
func (c *Client) CreateJoinToken(ctx context.Context, gateway string, ttl time.Duration) (string, api.JoinToken, error) {
	if gateway == "" {
		return "", api.JoinToken{}, errors.New("join token: empty gateway name")
	}
	body := map[string]string{"gateway": gateway}
	if ttl != 0 {
		body["ttl"] = ttl.String()
	}
	var out api.TokenAnswer
	if _, _, err := c.do(ctx, http.MethodPost, "/v1/tokens", body, &out); err != nil {
		return "", api.JoinToken{}, err
	}
	return out.Token, out.Info, nil
}

// JoinTokens lists the join tokens (GET /v1/tokens).
func (c *Client) JoinTokens(ctx context.Context) ([]api.JoinToken, error) {
	var out struct {
		Items []api.JoinToken `json:"items"`
	}
	_, _, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return out.Items, err
}

// RevokeJoinToken revokes an unused join token (DELETE /v1/tokens/{id}).
func (c *Client) RevokeJoinToken(ctx context.Context, id string) (api.JoinToken, error) {
	var out api.JoinToken
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
func (c *Client) RevokedKeys(ctx context.Context) ([]api.RevokedKey, error) {
	var out struct {
		Items []api.RevokedKey `json:"items"`
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
