package controlplane

// Key rotation (docs/ARCHITECTURE.md, "Key rotation"): the operator asks for it
// (RequestKeyRotation); the gateway learns it on its sync channel (HeaderRotate on every sync
// answer while the request stands; a waiting poll is answered at once), makes a new key and
// sends the public half on that channel (POST /v1/rotate, authenticated like every sync
// request by WireGuard with the old key). The cloud answers, then — rotateCommitDelay later —
// replaces the key (the hub and the linked gateways swap the peer at their next snapshot)
// and revokes the old one; the gateway switches its device to the new key rotateSwitchDelay
// after the answer, once the hub has the new peer.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/egw-project/egw/api"
)

// Annotations of a rotation on the EGateway.
const (
	AnnotationRotateRequested = "egw.io/rotate-requested" // the request's nonce (its time)
	AnnotationKeyRotated      = "egw.io/key-rotated-at"
)

// HeaderRotate on a sync answer asks the gateway to rotate its key; its value is the nonce
// the gateway sends back with the new key.
const HeaderRotate = "Egw-Rotate-Key"

const (
	rotateCommitDelay = 250 * time.Millisecond
	rotateSwitchDelay = 400 * time.Millisecond
)

// errRotate ends a gateway's waiting sync polls so that it learns of a rotation request.
var errRotate = errors.New("key rotation requested")

// RotateAnswer is the answer to POST /v1/rotate.
type RotateAnswer struct {
	// SwitchAfter is how long after this answer the gateway switches to the new key.
	SwitchAfter string `json:"switchAfter"`
}

// RequestKeyRotation asks an edge gateway to rotate its key and returns the gateway.
func (s *Server) RequestKeyRotation(name string) (api.Object, error) {
	key := keyGateway(name)
	if name == s.cfg.HubGateway {
		return nil, &Error{Code: CodeBadRequest, Object: key, Message: "is the cloud's own gateway; replace its privateKeyFile and restart it instead"}
	}
	o, err := s.store.Get(api.KindEGateway, name)
	if err != nil {
		return nil, err
	}
	g := api.DeepCopy(o).(*api.EGateway)
	if g.PublicKey == "" {
		return nil, &Error{Code: CodeConflict, Object: key, Message: "has no key to rotate (not joined, or revoked)"}
	}
	if g.Metadata.Annotations == nil {
		g.Metadata.Annotations = map[string]string{}
	}
	g.Metadata.Annotations[AnnotationRotateRequested] = strconv.FormatInt(s.opts.Now().UnixNano(), 10)
	out, err := s.Update(g, g.Metadata.ResourceVersion)
	if err != nil {
		return nil, err
	}
	s.endPolls(name, errRotate)
	s.log.Info("key rotation requested", "gateway", name)
	return out, nil
}

// rotationHeader sets HeaderRotate on a sync answer of gw while a rotation is requested.
func (s *Server) rotationHeader(w http.ResponseWriter, gw string) {
	o, err := s.store.Get(api.KindEGateway, gw)
	if err != nil {
		return
	}
	if n := o.GetMeta().Annotations[AnnotationRotateRequested]; n != "" && o.(*api.EGateway).PublicKey != "" {
		w.Header().Set(HeaderRotate, n)
	}
}

// handleRotate takes a gateway's new public key (sync channel; body {"publicKey","nonce"}).
func (s *Server) handleRotate(w http.ResponseWriter, r *http.Request) {
	gw, ok := s.caller(w, r)
	if !ok || s.refuseRevokedSync(w, gw) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1024)
	var req struct {
		PublicKey string `json:"publicKey"`
		Nonce     string `json:"nonce"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Message: "body is not {publicKey, nonce}"})
		return
	}
	o, err := s.store.Get(api.KindEGateway, gw)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	g := api.DeepCopy(o).(*api.EGateway)
	if n := g.Metadata.Annotations[AnnotationRotateRequested]; n == "" || n != req.Nonce {
		writeError(w, s.log, &Error{Code: CodeConflict, Object: keyGateway(gw), Message: "no key rotation with that nonce is requested"})
		return
	}
	if err := api.CheckPublicKey(req.PublicKey); err != nil {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Field: "publicKey", Message: err.Error()})
		return
	}
	next := api.DeepCopy(g).(*api.EGateway)
	next.PublicKey = req.PublicKey
	if err := s.refuseRevokedKeys(next); err != nil {
		writeError(w, s.log, err)
		return
	}
	if used, err := s.keyInUse(req.PublicKey); err != nil || used != "" {
		writeError(w, s.log, &Error{Code: CodeConflict, Field: "publicKey", Message: fmt.Sprintf("is in use by %s", used)})
		return
	}
	writeJSON(w, http.StatusOK, RotateAnswer{SwitchAfter: rotateSwitchDelay.String()})
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	// The answer leaves on the old key's session; then the key changes.
	time.Sleep(rotateCommitDelay)
	old := g.PublicKey
	delete(next.Metadata.Annotations, AnnotationRotateRequested)
	next.Metadata.Annotations[AnnotationKeyRotated] = s.opts.Now().UTC().Format(time.RFC3339Nano)
	if _, err := s.Update(next, g.Metadata.ResourceVersion); err != nil {
		s.log.Error("key rotation failed; the gateway keeps its key until asked again", "gateway", gw, "err", err)
		return
	}
	if err := s.recordRevoked(map[string]string{gw: old}, s.opts.Now().UTC()); err != nil {
		s.log.Error("key rotation: revoking the old key", "gateway", gw, "err", err)
	}
	s.log.Info("key rotated", "gateway", gw, "publicKey", req.PublicKey)
}

// keyInUse returns the gateway that has key, if any.
func (s *Server) keyInUse(key string) (string, error) {
	objs, _, err := s.store.List(api.KindEGateway)
	if err != nil {
		return "", err
	}
	for _, o := range objs {
		if o.(*api.EGateway).PublicKey == key {
			return o.GetMeta().Name, nil
		}
	}
	return "", nil
}
