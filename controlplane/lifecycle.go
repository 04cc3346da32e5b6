package controlplane

// Gateway lifecycle: one-time join tokens and the enrollment listener, revocation of a
// gateway's key (docs/ARCHITECTURE.md, "Gateway lifecycle").
//
// Tokens and revoked keys live in buckets of their own through the Backend (so they work
// on every backend), outside the object model: they change no snapshot.
//
//	tokens       token ID -> storedToken (JSON; the secret's SHA-256, never the secret)
//	revokedKeys  WireGuard public key -> RevokedKey (JSON)

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/jointoken"
)

const (
	bucketTokens      = "tokens"
	bucketRevokedKeys = "revokedKeys"
)

// AnnotationRevoked on an EGateway holds when its key was revoked (RFC 3339). A join
// clears it.
const AnnotationRevoked = "egw.io/revoked-at"

// DefaultTokenTTL is how long a join token is valid unless asked otherwise.
const DefaultTokenTTL = 24 * time.Hour

// MaxTokenTTL bounds a join token's validity.
const MaxTokenTTL = 30 * 24 * time.Hour

// Enrollment limits: joins per second (burst), concurrent joins.
const (
	enrollRate       = 5
	enrollBurst      = 10
	enrollConcurrent = 4
)

// Token states (JoinToken.State).
const (
	TokenPending = "pending"
	TokenUsed    = "used"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// JoinToken describes a join token (never its secret).
type JoinToken struct {
	ID      string    `json:"id"`
	Gateway string    `json:"gateway"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Used    time.Time `json:"used,omitzero"`
	Revoked time.Time `json:"revoked,omitzero"`
	State   string    `json:"state"`
}

type storedToken struct {
	JoinToken
	Hash string `json:"hash"`
}

func (t *JoinToken) setState(now time.Time) {
	switch {
	case !t.Revoked.IsZero():
		t.State = TokenRevoked
	case !t.Used.IsZero():
		t.State = TokenUsed
	case !now.Before(t.Expires):
		t.State = TokenExpired
	default:
		t.State = TokenPending
	}
}

// RevokedKey is a WireGuard key that may not be registered again.
type RevokedKey struct {
	Key     string    `json:"key"`
	Gateway string    `json:"gateway"`
	Revoked time.Time `json:"revoked"`
}

// Enrollment is where edges enroll: the address join tokens carry (the cloud's public
// address and the enrollment listener's port) and the SHA-256 of the listener
// certificate's SubjectPublicKeyInfo (jointoken.CertHash).
type Enrollment struct {
	Address  string
	CertHash [sha256.Size]byte
}

// lifecycle is the Server's state for joins. The zero value is ready.
type lifecycle struct {
	mu     sync.Mutex
	enroll *Enrollment
	tat    time.Time // rate limiter: theoretical arrival time
	sem    chan struct{}
	once   sync.Once
	// revoking holds the gateways being revoked (name -> time): their sync requests are
	// answered 403 before their key leaves the snapshots (RevokeGateway).
	revoking map[string]string
}

// SetEnrollment says where edges enroll; without it, join tokens cannot be made.
func (s *Server) SetEnrollment(e Enrollment) {
	s.lc.mu.Lock()
	s.lc.enroll = &e
	s.lc.mu.Unlock()
}

func (s *Server) enrollment() *Enrollment {
	s.lc.mu.Lock()
	defer s.lc.mu.Unlock()
	return s.lc.enroll
}

func readToken(tx Tx, id string) (*storedToken, error) {
	v := tx.Get(bucketTokens, id)
	if v == nil {
		return nil, nil
	}
	var t storedToken
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("store: join token %s: %w", id, err)
	}
	return &t, nil
}

func writeToken(tx Tx, t *storedToken) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return tx.Put(bucketTokens, t.ID, b)
}

// CreateJoinToken makes a one-time join token for the edge gateway name (which must exist
// and have no key). ttl 0 means DefaultTokenTTL. It returns the token's text — shown once,
// stored only hashed.
func (s *Server) CreateJoinToken(name string, ttl time.Duration) (string, JoinToken, error) {
	e := s.enrollment()
	if e == nil {
		return "", JoinToken{}, &Error{Code: CodeConflict, Message: "this cloud gateway has no enrollment listener (enroll.listen): register the edge with --public-key instead"}
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if ttl < time.Second || ttl > MaxTokenTTL {
		return "", JoinToken{}, &Error{Code: CodeBadRequest, Field: "ttl", Message: fmt.Sprintf("%s is not between 1s and %s", ttl, MaxTokenTTL)}
	}
	key := keyGateway(name)
	if name == s.cfg.HubGateway {
		return "", JoinToken{}, &Error{Code: CodeBadRequest, Object: key, Message: "is the cloud's own gateway; it does not join"}
	}
	o, err := s.store.Get(api.KindEGateway, name)
	if err != nil {
		return "", JoinToken{}, err
	}
	if o.(*api.EGateway).PublicKey != "" {
		return "", JoinToken{}, &Error{Code: CodeConflict, Object: key, Message: "already has a key: revoke it first (egwctl gateway revoke) to admit a new one"}
	}
	tok, err := jointoken.New(e.Address, e.CertHash)
	if err != nil {
		return "", JoinToken{}, err
	}
	now := s.opts.Now()
	st := &storedToken{JoinToken: JoinToken{ID: tok.ID, Gateway: name, Created: now, Expires: now.Add(ttl)}, Hash: jointoken.HashSecret(tok.Secret)}
	if err := s.store.b.Update(func(tx Tx) error { return writeToken(tx, st) }); err != nil {
		return "", JoinToken{}, err
	}
	st.setState(now)
	s.log.Info("join token created", "id", st.ID, "gateway", name, "expires", st.Expires.Format(time.RFC3339))
	return tok.String(), st.JoinToken, nil
}

// JoinTokens lists every join token, oldest first.
func (s *Server) JoinTokens() ([]JoinToken, error) {
	var out []JoinToken
	now := s.opts.Now()
	err := s.store.b.View(func(tx Tx) error {
		err := tx.ForEach(bucketTokens, func(_ string, v []byte) error {
			var t storedToken
			if err := json.Unmarshal(v, &t); err != nil {
				return err
			}
			t.setState(now)
			out = append(out, t.JoinToken)
			return nil
		})
		if err == errNoBucket {
			err = nil
		}
		return err
	})
	slices.SortFunc(out, func(a, b JoinToken) int { return a.Created.Compare(b.Created) })
	return out, err
}

// RevokeJoinToken revokes a token that was not used yet.
func (s *Server) RevokeJoinToken(id string) (JoinToken, error) {
	var out JoinToken
	now := s.opts.Now()
	err := s.store.b.Update(func(tx Tx) error {
		t, err := readToken(tx, id)
		if err != nil {
			return err
		}
		if t == nil {
			return &Error{Code: CodeNotFound, Object: "JoinToken/" + id, Message: "not found"}
		}
		if !t.Used.IsZero() {
			return &Error{Code: CodeConflict, Object: "JoinToken/" + id, Message: fmt.Sprintf("was used at %s: revoke the gateway instead (egwctl gateway revoke %s)", t.Used.Format(time.RFC3339), t.Gateway)}
		}
		if t.Revoked.IsZero() {
			t.Revoked = now
			if err := writeToken(tx, t); err != nil {
				return err
			}
		}
		t.setState(now)
		out = t.JoinToken
		return nil
	})
	if err == nil {
		s.log.Info("join token revoked", "id", id, "gateway", out.Gateway)
	}
	return out, err
}

// errJoinInvalid is the answer to a credential that matches no token: it says nothing about
// which part was wrong.
var errJoinInvalid = &Error{Code: CodeForbidden, Message: "invalid join token"}

// Join enrolls the edge that presents a join token's credential with its new public key:
// it consumes the token, registers the key and returns the edge's config. A token that is
// unknown, tampered, used, expired or revoked registers nothing.
func (s *Server) Join(req jointoken.Request, remote string) ([]byte, error) {
	id, secret, err := jointoken.SplitCredential(req.Credential)
	if err != nil {
		s.log.Warn("join refused: malformed credential", "remote", remote)
		return nil, errJoinInvalid
	}
	if err := api.CheckPublicKey(req.PublicKey); err != nil {
		return nil, &Error{Code: CodeBadRequest, Field: "publicKey", Message: err.Error()}
	}
	for f, p := range map[string]string{"stateDir": req.StateDir, "privateKeyFile": req.PrivateKeyFile} {
		if p != "" && (!filepath.IsAbs(p) || len(p) > 256 || strings.ContainsAny(p, "\n\r\x00")) {
			return nil, &Error{Code: CodeBadRequest, Field: f, Message: "must be an absolute path of at most 256 characters"}
		}
	}
	now := s.opts.Now()
	// Consume the token (check-and-set in one transaction: a second use fails).
	var tok storedToken
	err = s.store.b.Update(func(tx Tx) error {
		t, err := readToken(tx, id)
		if err != nil {
			return err
		}
		if t == nil || !jointoken.SecretMatches(secret, t.Hash) {
			return errJoinInvalid
		}
		tok = *t
		switch t.setState(now); t.State {
		case TokenUsed:
			return &Error{Code: CodeForbidden, Message: fmt.Sprintf("join token %s was already used at %s", id, t.Used.UTC().Format(time.RFC3339))}
		case TokenRevoked:
			return &Error{Code: CodeForbidden, Message: fmt.Sprintf("join token %s was revoked at %s", id, t.Revoked.UTC().Format(time.RFC3339))}
		case TokenExpired:
			return &Error{Code: CodeForbidden, Message: fmt.Sprintf("join token %s expired at %s", id, t.Expires.UTC().Format(time.RFC3339))}
		}
		if rk, ok := revokedKey(tx, req.PublicKey); ok {
			return &Error{Code: CodeForbidden, Field: "publicKey", Message: fmt.Sprintf("was revoked at %s (gateway %s)", rk.Revoked.UTC().Format(time.RFC3339), rk.Gateway)}
		}
		t.Used = now
		return writeToken(tx, t)
	})
	if err != nil {
		s.log.Warn("join refused", "id", id, "gateway", tok.Gateway, "remote", remote, "reason", err)
		return nil, err
	}
	cfg, err := s.admit(tok.Gateway, req)
	if err != nil {
		// Give the token back: nothing was registered.
		s.store.b.Update(func(tx Tx) error {
			t, rerr := readToken(tx, id)
			if rerr != nil || t == nil {
				return rerr
			}
			t.Used = time.Time{}
			return writeToken(tx, t)
		})
		s.log.Warn("join refused", "id", id, "gateway", tok.Gateway, "remote", remote, "reason", err)
		return nil, err
	}
	s.log.Info("gateway joined", "gateway", tok.Gateway, "token", id, "remote", remote, "publicKey", req.PublicKey)
	return cfg, nil
}

// admit registers key for the gateway (which must have none) and returns its config.
func (s *Server) admit(name string, req jointoken.Request) ([]byte, error) {
	o, err := s.store.Get(api.KindEGateway, name)
	if err != nil {
		return nil, err
	}
	g := api.DeepCopy(o).(*api.EGateway)
	if g.PublicKey != "" {
		return nil, &Error{Code: CodeConflict, Object: keyGateway(name), Message: "already has a key"}
	}
	g.PublicKey = req.PublicKey
	delete(g.Metadata.Annotations, AnnotationRevoked)
	if _, err := s.Update(g, g.Metadata.ResourceVersion); err != nil {
		return nil, err
	}
	c, err := s.EdgeConfig(name)
	if err != nil {
		return nil, err
	}
	if req.StateDir != "" {
		c.StateDir = req.StateDir
	}
	if req.PrivateKeyFile != "" {
		c.PrivateKeyFile = req.PrivateKeyFile
	}
	return c.YAML()
}

// allowJoin takes one token of the enrollment rate limiter.
func (s *Server) allowJoin() bool {
	s.lc.mu.Lock()
	defer s.lc.mu.Unlock()
	now := s.opts.Now()
	interval := time.Second / enrollRate
	tat := s.lc.tat
	if tat.Before(now) {
		tat = now
	}
	if tat.Sub(now) > enrollBurst*interval {
		return false
	}
	s.lc.tat = tat.Add(interval)
	return true
}

// EnrollHandler serves the enrollment listener (HTTPS on the cloud's public address):
// POST /v1/join only. It is rate-limited (enrollRate/s, burst enrollBurst), runs at most
// enrollConcurrent joins at once, reads at most jointoken.MaxRequest bytes, and answers
// nothing but a config to a valid token.
func (s *Server) EnrollHandler() http.Handler {
	s.lc.once.Do(func() { s.lc.sem = make(chan struct{}, enrollConcurrent) })
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/join", func(w http.ResponseWriter, r *http.Request) {
		if !s.allowJoin() {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, errorBody{Error: "too many join requests; retry in a second"})
			return
		}
		select {
		case s.lc.sem <- struct{}{}:
			defer func() { <-s.lc.sem }()
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "too many joins at once; retry in a second"})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, jointoken.MaxRequest)
		var req jointoken.Request
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: "the join request is not a JSON object of at most 4096 bytes"})
			return
		}
		cfg, err := s.Join(req, r.RemoteAddr)
		if err != nil {
			e := toError(err)
			if codeOf(err) == 0 {
				e = &Error{Code: CodeInternal, Message: "the join failed on the cloud; see its log"}
				s.log.Error("join failed", "err", err)
			}
			writeJSON(w, e.HTTPStatus(), errorBody{Error: e.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.WriteHeader(http.StatusOK)
		w.Write(cfg)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "not found"})
	})
	return mux
}

// revokedKey looks key up in the revoked keys.
func revokedKey(tx Tx, key string) (RevokedKey, bool) {
	v := tx.Get(bucketRevokedKeys, key)
	if v == nil {
		return RevokedKey{}, false
	}
	var rk RevokedKey
	if json.Unmarshal(v, &rk) != nil {
		return RevokedKey{Key: key}, true
	}
	return rk, true
}

// RevokedKeys lists the revoked keys.
func (s *Server) RevokedKeys() ([]RevokedKey, error) {
	var out []RevokedKey
	err := s.store.b.View(func(tx Tx) error {
		err := tx.ForEach(bucketRevokedKeys, func(k string, v []byte) error {
			rk, _ := revokedKey(tx, k)
			out = append(out, rk)
			return nil
		})
		if err == errNoBucket {
			err = nil
		}
		return err
	})
	return out, err
}

// refuseRevokedKeys refuses objects that would register a revoked key.
func (s *Server) refuseRevokedKeys(objs ...api.Object) error {
	var keys []*api.EGateway
	for _, o := range objs {
		if g, ok := o.(*api.EGateway); ok && g.PublicKey != "" {
			keys = append(keys, g)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	return s.store.b.View(func(tx Tx) error {
		for _, g := range keys {
			if rk, ok := revokedKey(tx, g.PublicKey); ok {
				return &Error{Code: CodeInvalid, Object: keyGateway(g.Metadata.Name), Field: "publicKey",
					Message: fmt.Sprintf("was revoked at %s (gateway %s); a revoked key is never admitted again: join with a new token", rk.Revoked.UTC().Format(time.RFC3339), rk.Gateway)}
			}
		}
		return nil
	})
}

// recordRevoked adds keys (gateway name -> key) to the revoked keys.
func (s *Server) recordRevoked(keys map[string]string, at time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	return s.store.b.Update(func(tx Tx) error {
		for gw, k := range keys {
			b, err := json.Marshal(RevokedKey{Key: k, Gateway: gw, Revoked: at})
			if err != nil {
				return err
			}
			if err := tx.Put(bucketRevokedKeys, k, b); err != nil {
				return err
			}
		}
		return nil
	})
}

// gatewayKeys returns the public keys of the EGateways among refs.
func (s *Server) gatewayKeys(refs []Ref) map[string]string {
	out := map[string]string{}
	for _, r := range refs {
		if r.Kind != api.KindEGateway {
			continue
		}
		if o, err := s.store.Get(api.KindEGateway, r.Name); err == nil {
			if k := o.(*api.EGateway).PublicKey; k != "" {
				out[r.Name] = k
			}
		}
	}
	return out
}

// errGatewayRevoked ends the sync polls of a revoked gateway.
var errGatewayRevoked = errors.New("the gateway was revoked")

// RevokeGateway revokes an edge gateway's key: the key is added to the revoked keys (never
// admitted again), removed from the EGateway (so the hub and every peer drop it at their
// next snapshot, which the write wakes) and the time is recorded (AnnotationRevoked). The
// gateway's waiting sync polls are answered 403 at once. It returns the gateway.
func (s *Server) RevokeGateway(name string) (api.Object, error) {
	key := keyGateway(name)
	if name == s.cfg.HubGateway {
		return nil, &Error{Code: CodeBadRequest, Object: key, Message: "is the cloud's own gateway; it cannot be revoked"}
	}
	o, err := s.store.Get(api.KindEGateway, name)
	if err != nil {
		return nil, err
	}
	g := api.DeepCopy(o).(*api.EGateway)
	now := s.opts.Now().UTC()
	if g.PublicKey == "" {
		if _, ok := g.Metadata.Annotations[AnnotationRevoked]; ok {
			return o, nil
		}
		return nil, &Error{Code: CodeConflict, Object: key, Message: "has no key to revoke"}
	}
	if err := s.recordRevoked(map[string]string{name: g.PublicKey}, now); err != nil {
		return nil, err
	}
	at := now.Format(time.RFC3339Nano)
	// Tell the gateway first, while its tunnel still carries the answer: its waiting polls
	// (and any new request) get 403 now; then its key leaves the snapshots.
	s.lc.mu.Lock()
	if s.lc.revoking == nil {
		s.lc.revoking = map[string]string{}
	}
	s.lc.revoking[name] = at
	s.lc.mu.Unlock()
	defer func() {
		s.lc.mu.Lock()
		delete(s.lc.revoking, name)
		s.lc.mu.Unlock()
	}()
	if s.endPolls(name, errGatewayRevoked) > 0 {
		deadline := time.Now().Add(300 * time.Millisecond)
		for s.waitingPolls(name) > 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // the answer leaves through the tunnel
	}
	g.PublicKey = ""
	if g.Metadata.Annotations == nil {
		g.Metadata.Annotations = map[string]string{}
	}
	g.Metadata.Annotations[AnnotationRevoked] = at
	out, err := s.Update(g, g.Metadata.ResourceVersion)
	if err != nil {
		return nil, err
	}
	s.log.Info("gateway revoked", "gateway", name, "at", now.Format(time.RFC3339Nano))
	return out, nil
}

// endPolls ends the waiting sync polls of gw with cause and returns how many it ended.
func (s *Server) endPolls(gw string, cause error) int {
	s.mu.Lock()
	list := slices.Clone(s.polls[gw])
	s.mu.Unlock()
	for _, p := range list {
		p.cancel(cause)
	}
	return len(list)
}

// revokedAt returns when gw was revoked, if it is revoked now (no key, the annotation set).
func (s *Server) revokedAt(gw string) (string, bool) {
	s.lc.mu.Lock()
	at, ok := s.lc.revoking[gw]
	s.lc.mu.Unlock()
	if ok {
		return at, true
	}
	o, err := s.store.Get(api.KindEGateway, gw)
	if err != nil {
		return "", false
	}
	g := o.(*api.EGateway)
	at, ok = g.Metadata.Annotations[AnnotationRevoked]
	return at, ok && g.PublicKey == ""
}

// HeaderRevoked, on a 403 sync answer, says the gateway was revoked (its value: when).
const HeaderRevoked = "Egw-Revoked"

// refuseRevokedSync answers a revoked gateway's sync request with 403 and true.
func (s *Server) refuseRevokedSync(w http.ResponseWriter, gw string) bool {
	at, ok := s.revokedAt(gw)
	if !ok {
		return false
	}
	w.Header().Set(HeaderRevoked, at)
	writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf("gateway %s was revoked at %s; it needs a new join token", gw, at)})
	return true
}

// waitRevoked reports whether ctx ended because the gateway was revoked.
func waitRevoked(ctx context.Context) bool { return errors.Is(context.Cause(ctx), errGatewayRevoked) }
