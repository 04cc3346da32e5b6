// Package jointoken is the one-time join token that enrolls an edge gateway with the cloud
// (`egwctl gateway add` without a key prints one; `edgegateway join TOKEN` uses it), and the
// edge's side of enrollment.
//
// A token names the cloud's enrollment listener (HTTPS on the cloud's public address), pins
// its identity — the SHA-256 of the listener certificate's SubjectPublicKeyInfo, as kubeadm's
// discovery-token-ca-cert-hash does — and carries a credential: an ID (shown in lists and
// logs) and a 256-bit secret (only its SHA-256 is stored). The edge refuses a listener
// whose key does not match the pin, so a man in the middle can neither learn the secret nor
// enroll the edge elsewhere.
//
// Text form: "egwjoin1." + base64url (unpadded) of a small JSON object. Parse refuses
// anything else with an error that names the defect and never quotes the token.
package jointoken

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Prefix starts every token.
const Prefix = "egwjoin1."

// MaxLen bounds a token's text (Parse refuses longer ones unread).
const MaxLen = 1024

const (
	idLen     = 16 // hex characters (8 random bytes)
	secretLen = 43 // base64url characters (32 random bytes)
)

// Token is a parsed join token.
type Token struct {
	// Address is host:port of the cloud's enrollment listener.
	Address string
	// ID names the token (not secret).
	ID string
	// Secret is the token's secret (base64url, 32 bytes).
	Secret string
	// CertHash is the SHA-256 of the enrollment listener certificate's
	// SubjectPublicKeyInfo.
	CertHash [sha256.Size]byte
}

type wire struct {
	A string `json:"a"`
	I string `json:"i"`
	S string `json:"s"`
	H string `json:"h"`
}

// String is the token's text form.
func (t Token) String() string {
	b, _ := json.Marshal(wire{A: t.Address, I: t.ID, S: t.Secret, H: hex.EncodeToString(t.CertHash[:])})
	return Prefix + base64.RawURLEncoding.EncodeToString(b)
}

// Credential is what the edge presents to the enrollment listener: "ID.SECRET".
func (t Token) Credential() string { return t.ID + "." + t.Secret }

// ErrMalformed is wrapped by every Parse error.
var ErrMalformed = errors.New("malformed join token")

// Parse reads a token's text form.
func Parse(s string) (Token, error) {
	s = strings.TrimSpace(s)
	bad := func(what string) (Token, error) { return Token{}, fmt.Errorf("%w: %s", ErrMalformed, what) }
	if len(s) > MaxLen {
		return bad(fmt.Sprintf("longer than %d characters", MaxLen))
	}
	if !strings.HasPrefix(s, Prefix) {
		return bad(fmt.Sprintf("does not start with %q", Prefix))
	}
	raw, err := base64.RawURLEncoding.DecodeString(s[len(Prefix):])
	if err != nil {
		return bad("not base64url after the prefix")
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil || dec.More() {
		return bad("its content does not decode")
	}
	t := Token{Address: w.A, ID: w.I, Secret: w.S}
	if err := checkAddress(w.A); err != nil {
		return bad("enrollment address: " + err.Error())
	}
	if err := CheckID(w.I); err != nil {
		return bad(err.Error())
	}
	if err := checkSecret(w.S); err != nil {
		return bad(err.Error())
	}
	h, err := hex.DecodeString(w.H)
	if err != nil || len(h) != sha256.Size {
		return bad("the cloud identity is not a SHA-256 in hex")
	}
	copy(t.CertHash[:], h)
	return t, nil
}

func checkAddress(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return fmt.Errorf("%q is not host:port", a)
	}
	if host == "" || len(host) > 253 {
		return fmt.Errorf("%q has no host", a)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q has no port 1-65535", a)
	}
	return nil
}

// CheckID checks a token ID: 16 lower-case hex characters.
func CheckID(id string) error {
	if len(id) != idLen {
		return errors.New("the token ID is not 16 hex characters")
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return errors.New("the token ID is not 16 hex characters")
		}
	}
	return nil
}

func checkSecret(s string) error {
	if len(s) != secretLen {
		return errors.New("the secret is not 43 base64url characters")
	}
	if b, err := base64.RawURLEncoding.DecodeString(s); err != nil || len(b) != 32 {
		return errors.New("the secret is not 43 base64url characters")
	}
	return nil
}

// SplitCredential splits "ID.SECRET" and checks both parts' form.
func SplitCredential(c string) (id, secret string, err error) {
	id, secret, ok := strings.Cut(c, ".")
	if !ok || CheckID(id) != nil || checkSecret(secret) != nil {
		return "", "", fmt.Errorf("%w: the credential is not ID.SECRET", ErrMalformed)
	}
	return id, secret, nil
}

// New makes a token for the listener at address whose certificate key hashes to certHash.
func New(address string, certHash [sha256.Size]byte) (Token, error) {
	if err := checkAddress(address); err != nil {
		return Token{}, fmt.Errorf("enrollment address: %w", err)
	}
	var id [idLen / 2]byte
	var sec [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return Token{}, err
	}
	if _, err := rand.Read(sec[:]); err != nil {
		return Token{}, err
	}
	return Token{Address: address, ID: hex.EncodeToString(id[:]), Secret: base64.RawURLEncoding.EncodeToString(sec[:]), CertHash: certHash}, nil
}

// HashSecret is what the cloud stores of a secret: its SHA-256, hex. (The secret has 256
// bits of entropy, so a plain hash is as strong as a slow one.)
func HashSecret(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// SecretMatches compares a secret with a stored HashSecret in constant time.
func SecretMatches(secret, hash string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(got), []byte(hash)) == 1
}

// CertHash is the SHA-256 of a certificate's SubjectPublicKeyInfo: the identity a token pins.
func CertHash(c *x509.Certificate) [sha256.Size]byte {
	return sha256.Sum256(c.RawSubjectPublicKeyInfo)
}
