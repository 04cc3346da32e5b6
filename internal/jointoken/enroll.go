package jointoken

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Request is the body of POST /v1/join on the enrollment listener.
type Request struct {
	// Credential is Token.Credential().
	Credential string `json:"credential"`
	// PublicKey is the edge's new WireGuard public key (base64).
	PublicKey string `json:"publicKey"`
	// StateDir and PrivateKeyFile are written into the returned config (where the edge
	// keeps its state and its key); empty: the cloud's defaults.
	StateDir       string `json:"stateDir,omitempty"`
	PrivateKeyFile string `json:"privateKeyFile,omitempty"`
}

// MaxRequest bounds a join request's body.
const MaxRequest = 4096

// MaxConfig bounds the edge config a join answer may carry.
const MaxConfig = 64 << 10

// Refused is a join the cloud refused, with its reason.
type Refused struct {
	Status int
	Reason string
}

func (e *Refused) Error() string { return "the cloud refused the join: " + e.Reason }

// ErrIdentity is wrapped when the listener's certificate does not match the token's pin.
var ErrIdentity = errors.New("the enrollment listener's identity does not match the token (wrong cloud, or a man in the middle)")

// PinnedTLS is a client TLS configuration that accepts exactly a certificate whose key
// hashes to certHash (CertHash), whatever its name or issuer.
func PinnedTLS(certHash [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the pin below replaces chain and name checks
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return ErrIdentity
			}
			c, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return ErrIdentity
			}
			h := CertHash(c)
			if subtle.ConstantTimeCompare(h[:], certHash[:]) != 1 {
				return ErrIdentity
			}
			return nil
		},
	}
}

// Enroll presents req to the enrollment listener of t (pinned to t.CertHash) and returns
// the edge config the cloud answered with (YAML). A refusal is a *Refused; a listener
// that does not match the pin gives an error wrapping ErrIdentity, before anything of the
// token was sent.
func Enroll(ctx context.Context, t Token, req Request) ([]byte, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{
		TLSClientConfig:     PinnedTLS(t.CertHash),
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableKeepAlives:   true,
	}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+t.Address+"/v1/join", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(hr)
	if err != nil {
		if errors.Is(err, ErrIdentity) {
			return nil, fmt.Errorf("enrolling at %s: %w", t.Address, ErrIdentity)
		}
		return nil, fmt.Errorf("enrolling at %s: %w", t.Address, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("enrolling at %s: reading the answer: %w", t.Address, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		reason := resp.Status
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			reason = e.Error
		}
		return nil, &Refused{Status: resp.StatusCode, Reason: reason}
	}
	if len(data) > MaxConfig {
		return nil, fmt.Errorf("enrolling at %s: the config is over %d bytes", t.Address, MaxConfig)
	}
	return data, nil
}
