package api

import "time"

// The wire of the gateway lifecycle (docs/ARCHITECTURE.md, "Gateway lifecycle"): join
// tokens and revoked keys as the admin API shows them, the annotations the control plane
// puts on an EGateway, the headers of a sync answer that revoke a gateway or ask it to
// rotate its key, and the gateway's rotation request. Shared by the server (controlplane),
// the gateways (gateway) and egwctl (client).

// Annotations of the gateway lifecycle on an EGateway.
const (
	// AnnotationRevoked holds when the gateway's key was revoked (RFC 3339); a join
	// clears it.
	AnnotationRevoked = "egw.io/revoked-at"
	// AnnotationRotateRequested holds a pending key rotation's nonce (its time).
	AnnotationRotateRequested = "egw.io/rotate-requested"
	// AnnotationKeyRotated holds when the gateway's key was last rotated.
	AnnotationKeyRotated = "egw.io/key-rotated-at"
)

// Headers of a sync answer.
const (
	// HeaderRevoked, on a 403 sync answer, says the gateway was revoked; its value is
	// when.
	HeaderRevoked = "Egw-Revoked"
	// HeaderRotate asks the gateway to rotate its key; its value is the nonce the gateway
	// sends back with the new key.
	HeaderRotate = "Egw-Rotate-Key"
)

// Join token states (JoinToken.State).
const (
	TokenPending = "pending"
	TokenUsed    = "used"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// JoinToken describes a join token, never its secret: an item of GET /v1/tokens, the
// answer of DELETE /v1/tokens/{id}.
type JoinToken struct {
	ID      string    `json:"id"`
	Gateway string    `json:"gateway"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Used    time.Time `json:"used,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	State   string    `json:"state"` // TokenPending, TokenUsed, TokenExpired, TokenRevoked
}

// TokenAnswer is the answer of POST /v1/tokens: the token's text (shown once) and its
// description.
type TokenAnswer struct {
	Token string    `json:"token"`
	Info  JoinToken `json:"info"`
}

// RevokedKey is a WireGuard key that is never admitted again: an item of
// GET /v1/revokedkeys.
type RevokedKey struct {
	Key     string    `json:"key"`
	Gateway string    `json:"gateway"`
	Revoked time.Time `json:"revoked"`
}

// RotateRequest is the body of POST /v1/rotate on the sync channel: the gateway's new
// public key, for the rotation the nonce (the HeaderRotate value) names.
type RotateRequest struct {
	PublicKey string `json:"publicKey"`
	Nonce     string `json:"nonce"`
}

// RotateAnswer is the answer to POST /v1/rotate.
type RotateAnswer struct {
	// SwitchAfter is how long after this answer the gateway switches to the new key (a Go
	// duration).
	SwitchAfter string `json:"switchAfter"`
}
