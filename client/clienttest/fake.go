// Package clienttest serves EGW's admin REST API (docs/ARCHITECTURE.md, "REST API") for
// tests of package client and of egwctl, in the way wireguard-go keeps tun/tuntest beside
// tun. It is the real API — controlplane's handler over a store in a temporary directory —
// so what the tests exercise is what the cloud gateway serves, plus what a test needs
// around it: a bearer token, a log of requests, answers for status and explain set by the
// test (they depend on running gateways), and direct access to the store.
package clienttest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
)

// Server is the API served for a test. Its exported fields may be set before requests
// are made.
type Server struct {
	// Token, if not empty, must be sent as "Authorization: Bearer <Token>" (else 401, as
	// controlplane.BearerAuth answers).
	Token string

	cp      *controlplane.Server
	handler http.Handler

	mu       sync.Mutex
	status   []byte
	explain  func(site, src, to string) (int, any)
	requests []string
}

// Config is the control plane's configuration in the served API: hub "cloud-gw" at site
// "cloud", with an endpoint and key so that edge configurations are complete.
func Config() controlplane.Config {
	return controlplane.Config{HubGateway: "cloud-gw", HubSite: "cloud", Endpoint: "203.0.113.1:51820",
		PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}.WithDefaults()
}

// New returns the API over an empty store in a temporary directory, closed and removed
// when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	store, err := controlplane.Open(t.TempDir(), Config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cp, err := controlplane.NewServer(store, controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &Server{cp: cp, handler: cp.Handler()}
}

// ControlPlane is the control plane behind the API.
func (s *Server) ControlPlane() *controlplane.Server { return s.cp }

// ServeUnix serves the API on a unix socket in a new temporary directory and returns the
// socket path. Everything is removed when the test ends.
func (s *Server) ServeUnix(t testing.TB) string {
	t.Helper()
	// t.TempDir paths can exceed the 108-byte limit of a socket path; keep it short.
	dir, err := os.MkdirTemp("", "egwapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "api.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return path
}

// ServeTCP serves the API on a loopback TCP port and returns its http:// URL.
func (s *Server) ServeTCP(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

// SetStatus sets the answer of GET /v1/status (marshalled to JSON) in place of the
// control plane's, which reports on running gateways.
func (s *Server) SetStatus(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.status = b
	s.mu.Unlock()
}

// SetExplain sets the function answering GET /v1/explain with a status code and a body
// (a string for an error) in place of the control plane's.
func (s *Server) SetExplain(f func(site, src, to string) (int, any)) {
	s.mu.Lock()
	s.explain = f
	s.mu.Unlock()
}

// Revision returns the store's revision.
func (s *Server) Revision() int64 {
	rev, err := s.cp.Store().Revision()
	if err != nil {
		return -1
	}
	return rev
}

// Requests returns "METHOD /path?query" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Object returns a stored object, or nil.
func (s *Server) Object(kind, name string) api.Object {
	o, err := s.cp.Store().Get(kind, name)
	if err != nil {
		return nil
	}
	return o
}

// Seed stores objects (one all-or-nothing apply), failing the test on error.
func (s *Server) Seed(t testing.TB, objs ...api.Object) {
	t.Helper()
	if _, _, err := s.cp.Apply(objs); err != nil {
		t.Fatalf("seeding the API: %v", err)
	}
}

// ServeHTTP logs the request, checks the token, answers status and explain when the test
// set them, and hands everything else to the control plane's handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	token, status, explain := s.Token, s.status, s.explain
	s.mu.Unlock()
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/v1/status" && status != nil:
			w.Header().Set("Content-Type", "application/json")
			w.Write(status)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/explain" && explain != nil:
			q := r.URL.Query()
			code, v := explain(q.Get("site"), q.Get("src"), q.Get("to"))
			if msg, ok := v.(string); ok && code >= 400 {
				v = map[string]string{"error": msg, "object": "", "field": ""}
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(v)
		default:
			s.handler.ServeHTTP(w, r)
		}
	})
	if token != "" {
		h = controlplane.BearerAuth(h, func() string { return token })
	}
	h.ServeHTTP(w, r)
}
