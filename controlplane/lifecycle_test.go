package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/jointoken"
)

const (
	keyC  = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCA="
	keyC2 = "DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDA="
	keyA  = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
)

// syncLog is a log sink safe for concurrent writes.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type joinWorld struct {
	srv   *Server
	clk   *fakeNow
	log   *syncLog
	ts    *httptest.Server
	dir   string
	addr  string
	token jointoken.Token
}

type fakeNow struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeNow) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeNow) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newJoinWorld runs a server with the two-site fixture plus gw-c (no key) and its
// enrollment listener on loopback TLS.
func newJoinWorld(t *testing.T) *joinWorld {
	t.Helper()
	w := &joinWorld{clk: &fakeNow{t: time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)}, log: &syncLog{}, dir: t.TempDir()}
	logger := slog.New(slog.NewTextHandler(w.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w.srv = newServer(t, w.dir, testConfig(), Options{Logger: logger, Now: w.clk.Now, SyncTimeout: 10 * time.Second})
	if err := w.srv.EnsureHub("192.168.9.0/24", "", ""); err != nil {
		t.Fatal(err)
	}
	mustApply(t, w.srv, twoSites+`{"kind":"ESite","metadata":{"name":"site-c"}}
{"kind":"EGateway","metadata":{"name":"gw-c"},"virtualPresenceIPcidr":"192.168.5.0/24","eSiteName":"site-c"}`)
	cert, hash, err := EnrollIdentity(w.dir)
	if err != nil {
		t.Fatal(err)
	}
	w.ts = httptest.NewUnstartedServer(w.srv.EnrollHandler())
	w.ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	w.ts.StartTLS()
	t.Cleanup(w.ts.Close)
	w.addr = w.ts.Listener.Addr().String()
	w.srv.SetEnrollment(Enrollment{Address: w.addr, CertHash: hash})
	return w
}

func (w *joinWorld) newToken(t *testing.T, gw string, ttl time.Duration) jointoken.Token {
	t.Helper()
	text, info, err := w.srv.CreateJoinToken(gw, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != api.TokenPending || info.Gateway != gw {
		t.Fatalf("new token: %+v", info)
	}
	tok, err := jointoken.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (w *joinWorld) key(t *testing.T, gw string) string {
	t.Helper()
	o, err := w.srv.Store().Get(api.KindEGateway, gw)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*api.EGateway).PublicKey
}

func enroll(tok jointoken.Token, key string) ([]byte, error) {
	return jointoken.Enroll(context.Background(), tok, jointoken.Request{Credential: tok.Credential(), PublicKey: key,
		StateDir: "/var/lib/egw-c", PrivateKeyFile: "/var/lib/egw-c/private.key"})
}

// enroll is enroll after one interval of the enrollment rate limiter on the world's
// clock: a test's own requests, however many, each find a token.
func (w *joinWorld) enroll(tok jointoken.Token, key string) ([]byte, error) {
	w.clk.Advance(time.Second / enrollRate)
	return enroll(tok, key)
}

func refusedWith(t *testing.T, err error, msg string) {
	t.Helper()
	var r *jointoken.Refused
	if !errors.As(err, &r) || r.Status != http.StatusForbidden || !strings.Contains(r.Reason, msg) {
		t.Fatalf("got %v, want a 403 refusal with %q", err, msg)
	}
}

func TestJoinTokenEnrollsOnce(t *testing.T) {
	w := newJoinWorld(t)
	tok := w.newToken(t, "gw-c", 0)
	cfg, err := enroll(tok, keyC)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: gw-c", "stateDir: /var/lib/egw-c", "privateKeyFile: /var/lib/egw-c/private.key", "overlayIP: 100.64.12.1"} {
		if !bytes.Contains(cfg, []byte(want)) {
			t.Fatalf("config lacks %q:\n%s", want, cfg)
		}
	}
	if w.key(t, "gw-c") != keyC {
		t.Fatal("the key was not registered")
	}
	if snap, _ := w.srv.Snapshot("cloud-gw"); !hasPeerKey(snap, keyC) {
		t.Fatal("the hub's snapshot lacks the joined gateway's key")
	}
	// Second use: refused, nothing changes.
	_, err = enroll(tok, keyC2)
	refusedWith(t, err, "already used")
	if w.key(t, "gw-c") != keyC {
		t.Fatal("a replayed token changed the key")
	}
	toks, _ := w.srv.JoinTokens()
	if len(toks) != 1 || toks[0].State != api.TokenUsed {
		t.Fatalf("tokens: %+v", toks)
	}
	// A gateway that has a key gets no token.
	if _, _, err := w.srv.CreateJoinToken("gw-c", 0); !IsConflict(err) {
		t.Fatalf("token for a gateway with a key: %v", err)
	}
	if strings.Contains(w.log.String(), tok.Secret) || strings.Contains(w.log.String(), tok.String()) {
		t.Fatalf("the log holds the token:\n%s", w.log)
	}
}

func hasPeerKey(s *api.Snapshot, key string) bool {
	for _, g := range s.Peers {
		if g.PublicKey == key {
			return true
		}
	}
	return false
}

func TestJoinTokenMisuse(t *testing.T) {
	w := newJoinWorld(t)
	// How many of the altered tokens below still parse, and so reach the listener,
	// depends on the random ID and secret (7 to 13 requests in all); w.enroll moves the
	// clock one limiter interval per request so the count never meets the rate limit
	// (TestEnrollHandlerBounded tests the limit).
	// Expired.
	tok := w.newToken(t, "gw-c", time.Hour)
	w.clk.Advance(61 * time.Minute)
	_, err := w.enroll(tok, keyC)
	refusedWith(t, err, "expired")
	// Revoked.
	tok = w.newToken(t, "gw-c", 0)
	if _, err := w.srv.RevokeJoinToken(tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = w.enroll(tok, keyC)
	refusedWith(t, err, "revoked")
	// One byte of the secret changed, an unknown ID: the same answer, naming nothing.
	tok = w.newToken(t, "gw-c", 0)
	bad := tok
	bad.Secret = flip(bad.Secret)
	_, err = w.enroll(bad, keyC)
	refusedWith(t, err, "invalid join token")
	bad = tok
	bad.ID = "0123456789abcdef"
	_, err = w.enroll(bad, keyC)
	refusedWith(t, err, "invalid join token")
	// One byte of the text changed: it does not parse, or it names another token/cloud.
	text := []byte(tok.String())
	for i := len(jointoken.Prefix); i < len(text); i += 7 {
		b := append([]byte(nil), text...)
		b[i] ^= 0x01
		bt, err := jointoken.Parse(string(b))
		if err != nil {
			continue
		}
		if _, err := w.enroll(bt, keyC); err == nil {
			t.Fatalf("a token with byte %d changed enrolled", i)
		}
	}
	// Wrong cloud identity: refused before anything of the token is sent.
	bad = tok
	bad.CertHash[0] ^= 1
	if _, err := w.enroll(bad, keyC); !errors.Is(err, jointoken.ErrIdentity) {
		t.Fatalf("wrong identity: %v", err)
	}
	if w.key(t, "gw-c") != "" {
		t.Fatal("a refused join registered a key")
	}
	// The good token still works after all that.
	if _, err := w.enroll(tok, keyC); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{tok.Secret, tok.String(), bad.Secret} {
		if strings.Contains(w.log.String(), s) {
			t.Fatalf("the log holds a token:\n%s", w.log)
		}
	}
	if !strings.Contains(w.log.String(), "join refused") {
		t.Fatal("refusals were not logged")
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[5] == 'A' {
		b[5] = 'B'
	} else {
		b[5] = 'A'
	}
	return string(b)
}

func TestEnrollHandlerBounded(t *testing.T) {
	w := newJoinWorld(t)
	h := w.srv.EnrollHandler()
	post := func(body string) int {
		req := httptest.NewRequest("POST", "/v1/join", strings.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if c := post(`{"credential":"x","publicKey":"` + strings.Repeat("A", 5000) + `"}`); c != 400 {
		t.Fatalf("oversized request: %d", c)
	}
	// The limiter: a burst, then 429 until the clock moves.
	codes := map[int]int{}
	for range 30 {
		codes[post(`{"credential":"0123456789abcdef.x","publicKey":"`+keyC+`"}`)]++
	}
	if codes[429] == 0 || codes[403] > enrollBurst+1 {
		t.Fatalf("no rate limit: %v", codes)
	}
	w.clk.Advance(2 * time.Second)
	if c := post(`{"credential":"junk","publicKey":"` + keyC + `"}`); c != 403 {
		t.Fatalf("after the limiter refilled: %d", c)
	}
	if c := post(`GET`); c != 400 {
		t.Fatalf("garbage: %d", c)
	}
}

func TestRevokeGateway(t *testing.T) {
	w := newJoinWorld(t)
	mustApply(t, w.srv, `{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"`+keyA+`"}`)
	h := w.srv.SyncHandler()
	const edgeA = "100.64.4.1:40000"
	snap := decodeJSON[api.Snapshot](t, syncRequest(h, "GET", "/v1/sync?since=0", edgeA, ""))
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		done <- syncRequest(h, "GET", "/v1/sync?since="+itoa(snap.Revision), edgeA, "")
	}()
	for w.srv.waitingPolls("gw-a") == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	if _, err := w.srv.RevokeGateway("gw-a"); err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-done:
		if rec.Code != 403 || rec.Header().Get(api.HeaderRevoked) == "" || !strings.Contains(rec.Body.String(), "revoked") {
			t.Fatalf("waiting poll: %d %s", rec.Code, rec.Body)
		}
	case <-time.After(time.Second):
		t.Fatal("the revoked gateway's poll was not answered within 1 s")
	}
	t.Logf("poll answered %v after the revocation", time.Since(start))
	if hub, _ := w.srv.Snapshot("cloud-gw"); hasPeerKey(hub, keyA) {
		t.Fatal("the hub's snapshot still has the revoked key")
	}
	if rec := syncRequest(h, "GET", "/v1/sync?since=0", edgeA, ""); rec.Code != 403 {
		t.Fatalf("sync after revocation: %d", rec.Code)
	}
	o, _ := w.srv.Store().Get(api.KindEGateway, "gw-a")
	if o.GetMeta().Annotations[api.AnnotationRevoked] == "" {
		t.Fatal("no revocation time on the gateway")
	}
	// The key is refused if it comes back, by any write.
	_, _, err := w.srv.Apply(decode(t, `{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"`+keyA+`"}`))
	wantErr(t, err, CodeInvalid, "EGateway/gw-a", "publicKey", "revoked")
	// Nor through a join; a new key through a new token is admitted.
	tok := w.newToken(t, "gw-a", 0)
	_, err = enroll(tok, keyA)
	refusedWith(t, err, "revoked")
	if _, err := enroll(tok, keyC2); err != nil {
		t.Fatal(err)
	}
	if rec := syncRequest(h, "GET", "/v1/sync?since=0", edgeA, ""); rec.Code != 200 {
		t.Fatalf("sync after re-admission: %d", rec.Code)
	}
	// Deleting a gateway revokes its key too.
	if _, err := w.srv.Delete(api.KindEGateway, "gw-a"); err != nil {
		t.Fatal(err)
	}
	keys, _ := w.srv.RevokedKeys()
	if len(keys) != 2 {
		t.Fatalf("revoked keys: %+v", keys)
	}
	_, _, err = w.srv.Apply(decode(t, `{"kind":"EGateway","metadata":{"name":"gw-x"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"`+keyC2+`"}`))
	wantErr(t, err, CodeInvalid, "EGateway/gw-x", "publicKey", "revoked")
	if _, err := w.srv.RevokeGateway("cloud-gw"); err == nil {
		t.Fatal("the hub was revoked")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
