// Package clienttest provides an in-memory fake of EGW's admin REST API
// (docs/ARCHITECTURE.md, "REST API") for tests of package client and of egwctl, in the way
// wireguard-go keeps tun/tuntest beside tun.
//
// The fake keeps objects in maps and implements every documented endpoint: list, get,
// create, update (resourceVersion checked), delete, all-or-nothing apply and delete, the
// revision, a snapshot and an edge config per gateway; status and explain answer what the
// test sets. It validates just enough to produce the server's error shape
// ({"error","object","field"}): a name, EService port and protocol, CIDRs and IPs. References
// may dangle and show as a ResolvedRefs=False condition, as on the real server.
package clienttest

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/egw-project/egw/api"
)

// MaxBody is the largest request body the fake accepts (as the real server: 1 MiB).
const MaxBody = 1 << 20

// Server is the fake API. Its exported fields may be set before requests are made.
type Server struct {
	// Token, if not empty, must be sent as "Authorization: Bearer <Token>" (else 401).
	Token string

	mu       sync.Mutex
	rev      int64
	objs     map[string]map[string][]byte // kind -> name -> stored JSON
	status   []byte
	explain  func(site, src, to string) (int, any)
	requests []string
}

// New returns an empty fake with revision 1.
func New() *Server {
	return &Server{rev: 1, objs: map[string]map[string][]byte{}}
}

// ServeUnix serves the fake on a unix socket in a new temporary directory and returns the
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

// ServeTCP serves the fake on a loopback TCP port and returns its http:// URL.
func (s *Server) ServeTCP(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv.URL
}

// SetStatus sets the answer of GET /v1/status (marshalled to JSON).
func (s *Server) SetStatus(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.status = b
	s.mu.Unlock()
}

// SetExplain sets the function answering GET /v1/explain with a status code and a body.
func (s *Server) SetExplain(f func(site, src, to string) (int, any)) {
	s.mu.Lock()
	s.explain = f
	s.mu.Unlock()
}

// Revision returns the fake store's revision.
func (s *Server) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

// Requests returns "METHOD /path" of every request so far.
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// Object returns a stored object, or nil.
func (s *Server) Object(kind, name string) api.Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.objs[kind][name]
	if b == nil {
		return nil
	}
	o, _ := api.New(kind)
	if json.Unmarshal(b, o) != nil {
		return nil
	}
	return o
}

// Seed stores objects directly (as an apply would), failing the test on error.
func (s *Server) Seed(t testing.TB, objs ...api.Object) {
	t.Helper()
	raws := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		b, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, b)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, herr := s.applyLocked(raws); herr != nil {
		t.Fatalf("seeding the fake API: %v", herr.Msg)
	}
}

// httpError is an error answer in the server's shape.
type httpError struct {
	Code   int    `json:"-"`
	Msg    string `json:"error"`
	Object string `json:"object,omitempty"`
	Field  string `json:"field,omitempty"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, r.Method+" "+r.URL.RequestURI())
	token := s.Token
	s.mu.Unlock()
	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		writeErr(w, &httpError{Code: http.StatusUnauthorized, Msg: "missing or wrong bearer token"})
		return
	}
	var body []byte
	if r.Body != nil {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
		if err != nil {
			writeErr(w, &httpError{Code: http.StatusRequestEntityTooLarge, Msg: "request body larger than 1 MiB"})
			return
		}
		body = b
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 2 || parts[0] != "v1" {
		writeErr(w, &httpError{Code: http.StatusNotFound, Msg: "no such endpoint " + r.URL.Path})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	code, out, herr := s.route(r, parts[1:], body)
	if herr != nil {
		writeErr(w, herr)
		return
	}
	if raw, ok := out.(rawBody); ok {
		w.Header().Set("Content-Type", raw.ctype)
		w.WriteHeader(code)
		w.Write(raw.data)
		return
	}
	writeJSON(w, code, out)
}

type rawBody struct {
	ctype string
	data  []byte
}

// Must hold s.mu.
func (s *Server) route(r *http.Request, p []string, body []byte) (int, any, *httpError) {
	m := r.Method
	switch {
	case m == "GET" && len(p) == 1 && p[0] == "revision":
		return 200, map[string]int64{"revision": s.rev}, nil
	case m == "GET" && len(p) == 1 && p[0] == "status":
		if s.status == nil {
			return 200, map[string]any{"revision": s.rev, "gateways": []any{}}, nil
		}
		return 200, json.RawMessage(s.status), nil
	case m == "GET" && len(p) == 1 && p[0] == "explain":
		q := r.URL.Query()
		if q.Get("site") == "" || q.Get("src") == "" || q.Get("to") == "" {
			return 0, nil, &httpError{Code: 400, Msg: "explain needs site, src and to"}
		}
		if s.explain == nil {
			return 0, nil, &httpError{Code: 501, Msg: "explain not set in the fake"}
		}
		code, v := s.explain(q.Get("site"), q.Get("src"), q.Get("to"))
		if code >= 400 {
			msg, _ := v.(string)
			return 0, nil, &httpError{Code: code, Msg: msg}
		}
		return code, v, nil
	case m == "POST" && len(p) == 1 && p[0] == "apply":
		var raws []json.RawMessage
		if err := json.Unmarshal(body, &raws); err != nil {
			return 0, nil, &httpError{Code: 400, Msg: "body must be a JSON array of objects: " + err.Error()}
		}
		res, herr := s.applyLocked(raws)
		if herr != nil {
			return 0, nil, herr
		}
		return 200, res, nil
	case m == "POST" && len(p) == 1 && p[0] == "delete":
		return s.deleteBatchLocked(body)
	case m == "GET" && len(p) == 2 && p[0] == "snapshots":
		return s.snapshotLocked(p[1])
	case m == "GET" && len(p) == 3 && p[0] == "egateways" && p[2] == "edgeconfig":
		return s.edgeConfigLocked(p[1])
	}
	kind, err := api.ParseKind(p[0])
	if err != nil || api.Plural(kind) != p[0] || len(p) > 2 {
		return 0, nil, &httpError{Code: 404, Msg: "no such endpoint " + r.URL.Path}
	}
	switch {
	case m == "GET" && len(p) == 1:
		names := make([]string, 0, len(s.objs[kind]))
		for n := range s.objs[kind] {
			names = append(names, n)
		}
		sort.Strings(names)
		items := make([]json.RawMessage, 0, len(names))
		for _, n := range names {
			items = append(items, s.withStatusLocked(kind, s.objs[kind][n]))
		}
		return 200, map[string]any{"kind": kind + "List", "revision": s.rev, "items": items}, nil
	case m == "GET":
		b := s.objs[kind][p[1]]
		if b == nil {
			return 0, nil, &httpError{Code: 404, Msg: fmt.Sprintf("%s %q not found", kind, p[1]), Object: kind + "/" + p[1]}
		}
		return 200, s.withStatusLocked(kind, b), nil
	case m == "POST" && len(p) == 1:
		o, herr := decode(kind, body)
		if herr != nil {
			return 0, nil, herr
		}
		if s.objs[kind][o.GetMeta().Name] != nil {
			return 0, nil, &httpError{Code: 409, Msg: "already exists", Object: key(o)}
		}
		s.rev++
		return 201, s.storeLocked(o), nil
	case m == "PUT" && len(p) == 2:
		o, herr := decode(kind, body)
		if herr != nil {
			return 0, nil, herr
		}
		if o.GetMeta().Name != p[1] {
			return 0, nil, &httpError{Code: 400, Msg: "name in body differs from the path", Object: key(o), Field: "metadata.name"}
		}
		old := s.objs[kind][p[1]]
		if old == nil {
			return 0, nil, &httpError{Code: 404, Msg: "not found", Object: key(o)}
		}
		if rv := o.GetMeta().ResourceVersion; rv != 0 && rv != resourceVersion(kind, old) {
			return 0, nil, &httpError{Code: 409, Msg: fmt.Sprintf("stale resourceVersion %d (stored %d)", rv, resourceVersion(kind, old)), Object: key(o), Field: "metadata.resourceVersion"}
		}
		s.rev++
		return 200, s.storeLocked(o), nil
	case m == "DELETE" && len(p) == 2:
		if s.objs[kind][p[1]] == nil {
			return 0, nil, &httpError{Code: 404, Msg: "not found", Object: kind + "/" + p[1]}
		}
		delete(s.objs[kind], p[1])
		s.rev++
		return 200, map[string]int64{"revision": s.rev}, nil
	}
	return 0, nil, &httpError{Code: 405, Msg: m + " not allowed on " + r.URL.Path}
}

func key(o api.Object) string { return o.GetKind() + "/" + o.GetMeta().Name }

func resourceVersion(kind string, b []byte) int64 {
	o, _ := api.New(kind)
	json.Unmarshal(b, o)
	return o.GetMeta().ResourceVersion
}

// decode decodes and validates one object of a known kind.
func decode(kind string, b []byte) (api.Object, *httpError) {
	o, err := api.New(kind)
	if err != nil {
		return nil, &httpError{Code: 400, Msg: err.Error()}
	}
	if err := json.Unmarshal(b, o); err != nil {
		return nil, &httpError{Code: 400, Msg: "decoding " + kind + ": " + err.Error()}
	}
	if herr := validate(o); herr != nil {
		return nil, herr
	}
	return o, nil
}

func validate(o api.Object) *httpError {
	bad := func(field, msg string) *httpError {
		return &httpError{Code: 422, Msg: msg, Object: key(o), Field: field}
	}
	if o.GetMeta().Name == "" {
		return bad("metadata.name", "name is required")
	}
	switch v := o.(type) {
	case *api.EGateway:
		if _, err := netip.ParsePrefix(v.VirtualPresenceIPcidr); err != nil {
			return bad("virtualPresenceIPcidr", "not a CIDR: "+strconv.Quote(v.VirtualPresenceIPcidr))
		}
	case *api.EService:
		if v.Port < 1 || v.Port > 65535 {
			return bad("port", fmt.Sprintf("port %d out of range 1-65535", v.Port))
		}
		if v.Protocol != "TCP" && v.Protocol != "UDP" {
			return bad("protocol", "protocol must be TCP or UDP, not "+strconv.Quote(v.Protocol))
		}
		if _, err := netip.ParseAddr(v.IP); err != nil {
			return bad("ip", "not an IPv4 address: "+strconv.Quote(v.IP))
		}
	case *api.EServer:
		if _, err := netip.ParseAddr(v.IP); err != nil {
			return bad("ip", "not an IPv4 address: "+strconv.Quote(v.IP))
		}
	}
	return nil
}

// storeLocked stores o at the current revision and returns it as stored. Must hold s.mu.
func (s *Server) storeLocked(o api.Object) json.RawMessage {
	m := o.GetMeta()
	m.ResourceVersion = s.rev
	if old := s.objs[o.GetKind()][m.Name]; old != nil {
		prev, _ := api.New(o.GetKind())
		json.Unmarshal(old, prev)
		m.CreationRevision = prev.GetMeta().CreationRevision
	} else {
		m.CreationRevision = s.rev
	}
	*o.GetStatus() = api.Status{}
	b, _ := json.Marshal(o)
	if s.objs[o.GetKind()] == nil {
		s.objs[o.GetKind()] = map[string][]byte{}
	}
	s.objs[o.GetKind()][m.Name] = b
	return s.withStatusLocked(o.GetKind(), b)
}

type result struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"`
}

type batchAnswer struct {
	Revision int64    `json:"revision"`
	Results  []result `json:"results"`
}

// applyLocked creates or updates every object, all or nothing. Must hold s.mu.
func (s *Server) applyLocked(raws []json.RawMessage) (*batchAnswer, *httpError) {
	objs := make([]api.Object, 0, len(raws))
	actions := make([]string, 0, len(raws))
	for i, raw := range raws {
		var tm api.TypeMeta
		if err := json.Unmarshal(raw, &tm); err != nil {
			return nil, &httpError{Code: 400, Msg: fmt.Sprintf("item %d: %v", i, err)}
		}
		kind, err := api.ParseKind(tm.Kind)
		if err != nil {
			return nil, &httpError{Code: 400, Msg: fmt.Sprintf("item %d: %v", i, err), Field: "kind"}
		}
		o, herr := decode(kind, raw)
		if herr != nil {
			return nil, herr
		}
		action := "created"
		if old := s.objs[kind][o.GetMeta().Name]; old != nil {
			prev, _ := api.New(kind)
			json.Unmarshal(old, prev)
			action = "configured"
			if api.Equal(prev, o) {
				action = "unchanged"
			}
		}
		objs = append(objs, o)
		actions = append(actions, action)
	}
	changed := false
	for _, a := range actions {
		changed = changed || a != "unchanged"
	}
	if changed {
		s.rev++
	}
	ans := &batchAnswer{Revision: s.rev}
	for i, o := range objs {
		if actions[i] != "unchanged" {
			s.storeLocked(o)
		}
		ans.Results = append(ans.Results, result{Kind: o.GetKind(), Name: o.GetMeta().Name, Action: actions[i]})
	}
	return ans, nil
}

// Must hold s.mu.
func (s *Server) deleteBatchLocked(body []byte) (int, any, *httpError) {
	var raws []struct {
		Kind     string         `json:"kind"`
		Metadata api.ObjectMeta `json:"metadata"`
	}
	if err := json.Unmarshal(body, &raws); err != nil {
		return 0, nil, &httpError{Code: 400, Msg: "body must be a JSON array of objects: " + err.Error()}
	}
	ans := &batchAnswer{}
	for _, r := range raws {
		kind, err := api.ParseKind(r.Kind)
		if err != nil {
			return 0, nil, &httpError{Code: 400, Msg: err.Error(), Field: "kind"}
		}
		if s.objs[kind][r.Metadata.Name] == nil {
			return 0, nil, &httpError{Code: 404, Msg: "not found", Object: kind + "/" + r.Metadata.Name}
		}
		ans.Results = append(ans.Results, result{Kind: kind, Name: r.Metadata.Name, Action: "deleted"})
	}
	for _, r := range ans.Results {
		delete(s.objs[r.Kind], r.Name)
	}
	if len(ans.Results) > 0 {
		s.rev++
	}
	ans.Revision = s.rev
	return 200, ans, nil
}

// withStatusLocked returns a stored object with its conditions: ResolvedRefs is False
// naming every reference that does not resolve. Must hold s.mu.
func (s *Server) withStatusLocked(kind string, b []byte) json.RawMessage {
	o, _ := api.New(kind)
	json.Unmarshal(b, o)
	var missing []string
	ref := func(k, name string) {
		if name != "" && s.objs[k][name] == nil {
			missing = append(missing, k+"/"+name)
		}
	}
	st := o.GetStatus()
	switch v := o.(type) {
	case *api.EGateway:
		ref(api.KindESite, v.ESiteName)
		// The fake gives every gateway the same overlay prefix; the real IPAM does not.
		st.OverlayPrefix, st.OverlayIP = "100.64.4.0/22", "100.64.4.1"
	case *api.EService:
		ref(api.KindESite, v.ESiteName)
	case *api.EServer:
		ref(api.KindESite, v.ESiteName)
	case *api.EPolicy:
		for _, n := range v.AllowedServers {
			ref(api.KindEServer, n)
		}
		for _, n := range v.AllowedSites {
			ref(api.KindESite, n)
		}
	case *api.ServiceExpose:
		ref(api.KindEService, v.EServiceName)
		for _, n := range v.ESites {
			ref(api.KindESite, n)
		}
		for _, n := range v.EPolicys {
			ref(api.KindEPolicy, n)
		}
	case *api.VirtualPresence:
		ref(api.KindEService, v.EServiceName)
		st.ESiteName = v.ESiteName
		for _, gb := range s.objs[api.KindEGateway] {
			var g api.EGateway
			json.Unmarshal(gb, &g)
			if g.ESiteName == v.ESiteName && v.ESiteName != "" {
				st.EGateway = g.Metadata.Name
			}
		}
	}
	c := api.Condition{Type: "ResolvedRefs", Status: "True"}
	if len(missing) > 0 {
		c = api.Condition{Type: "ResolvedRefs", Status: "False", Reason: "NotFound", Message: "missing " + strings.Join(missing, ", ")}
	}
	st.Conditions = append(st.Conditions, c)
	out, _ := json.Marshal(o)
	return out
}

// Must hold s.mu.
func (s *Server) gatewayLocked(name string) (*api.EGateway, *httpError) {
	b := s.objs[api.KindEGateway][name]
	if b == nil {
		return nil, &httpError{Code: 404, Msg: "not found", Object: api.KindEGateway + "/" + name}
	}
	var g api.EGateway
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, &httpError{Code: 500, Msg: err.Error()}
	}
	return &g, nil
}

// Must hold s.mu.
func (s *Server) snapshotLocked(name string) (int, any, *httpError) {
	g, herr := s.gatewayLocked(name)
	if herr != nil {
		return 0, nil, herr
	}
	vp, _ := netip.ParsePrefix(g.VirtualPresenceIPcidr)
	return 200, &api.Snapshot{
		Revision:      s.rev,
		Gateway:       g.Metadata.Name,
		Site:          g.ESiteName,
		OverlayCIDR:   netip.MustParsePrefix("100.64.0.0/10"),
		OverlayPrefix: netip.MustParsePrefix("100.64.4.0/22"),
		OverlayIP:     netip.MustParseAddr("100.64.4.1"),
		VPCIDR:        vp,
		VPAddr:        vp.Addr().Next(),
	}, nil
}

// Must hold s.mu.
func (s *Server) edgeConfigLocked(name string) (int, any, *httpError) {
	g, herr := s.gatewayLocked(name)
	if herr != nil {
		return 0, nil, herr
	}
	y := fmt.Sprintf("name: %s\nsite: %s\nvpCIDR: %s\noverlayPrefix: 100.64.4.0/22\noverlayIP: 100.64.4.1\ncloud:\n  endpoint: 203.0.113.1:51820\n  publicKey: Y2xvdWQ=\n  overlayIP: 100.64.0.1\n  syncPort: 7443\n",
		g.Metadata.Name, g.ESiteName, g.VirtualPresenceIPcidr)
	return 200, rawBody{ctype: "application/yaml", data: []byte(y)}, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeErr(w, &httpError{Code: 500, Msg: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

func writeErr(w http.ResponseWriter, e *httpError) {
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code)
	w.Write(b)
}
