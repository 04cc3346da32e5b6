package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/egw-project/egw/api"
)

// MaxBodySize is the largest request body the API accepts (413 beyond).
const MaxBodySize = 1 << 20

// Handler returns the admin REST API (docs/ARCHITECTURE.md, "REST API"). It does no
// authentication: serve it on the unix socket (ListenUnix), or wrap it in BearerAuth for
// TCP.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/revision", s.handleRevision)
	mux.HandleFunc("GET /v1/status", s.handleStatus)
	mux.HandleFunc("GET /v1/explain", s.handleExplain)
	mux.HandleFunc("POST /v1/apply", s.handleApply)
	mux.HandleFunc("POST /v1/delete", s.handleDeleteMany)
	mux.HandleFunc("GET /v1/snapshots/{gateway}", s.handleSnapshot)
	mux.HandleFunc("GET /v1/egateways/{name}/edgeconfig", s.handleEdgeConfig)
	s.lifecycleRoutes(mux)
	mux.HandleFunc("GET /v1/{plural}", s.handleList)
	mux.HandleFunc("POST /v1/{plural}", s.handleCreate)
	mux.HandleFunc("GET /v1/{plural}/{name}", s.handleGet)
	mux.HandleFunc("PUT /v1/{plural}/{name}", s.handleUpdate)
	mux.HandleFunc("DELETE /v1/{plural}/{name}", s.handleDelete)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, s.log, &Error{Code: CodeNotFound, Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	return s.markStale(mux)
}

// errorBody is the JSON of every error answer.
type errorBody struct {
	Error  string `json:"error"`
	Object string `json:"object"`
	Field  string `json:"field"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, log *slog.Logger, err error) {
	var de *api.DecodeError
	var e *Error
	switch {
	case errors.As(err, &de):
		e = &Error{Code: CodeBadRequest, Message: de.Error(), Object: de.Object, Field: de.Field}
	case codeOf(err) != 0:
		e = toError(err)
	default:
		log.Error("API request failed", "err", err)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	writeJSON(w, e.HTTPStatus(), errorBody{Error: e.Message, Object: e.Object, Field: e.Field})
}

// readBody reads a request body of at most MaxBodySize bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodySize))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("request body is larger than %d bytes", MaxBodySize)}
	}
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: "reading request body: " + err.Error()}
	}
	return data, nil
}

// kindOf maps the {plural} of a path to a kind.
func kindOf(r *http.Request) (string, error) {
	p := r.PathValue("plural")
	k, err := api.ParseKind(p)
	if err != nil {
		return "", &Error{Code: CodeNotFound, Message: fmt.Sprintf("no such resource %q (want one of esites egateways eservices eservers epolicies serviceexposes virtualpresences)", p)}
	}
	return k, nil
}

func (s *Server) handleRevision(w http.ResponseWriter, r *http.Request) {
	rev, err := s.store.Revision()
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int64{"revision": rev})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.Status()
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) handleExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ex, err := s.Explain(q.Get("site"), q.Get("src"), q.Get("to"))
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, ex)
}

// batchAnswer is the answer of /v1/apply and /v1/delete.
type batchAnswer struct {
	Revision int64    `json:"revision"`
	Results  []Result `json:"results"`
}

func (s *Server) handleApply(w http.ResponseWriter, r *http.Request) {
	data, err := readBody(w, r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	objs, err := api.Decode("request body", data)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	rev, res, err := s.Apply(objs)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	if rev == 0 {
		rev, _ = s.store.Revision()
	}
	if res == nil {
		res = []Result{}
	}
	writeJSON(w, http.StatusOK, batchAnswer{Revision: rev, Results: res})
}

func (s *Server) handleDeleteMany(w http.ResponseWriter, r *http.Request) {
	data, err := readBody(w, r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Message: "request body: want a JSON array of objects (kind and name): " + err.Error()})
		return
	}
	refs := make([]Ref, 0, len(raws))
	for i, raw := range raws {
		ref, err := refOf(raw)
		if err != nil {
			writeError(w, s.log, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("request body: item %d: %v", i, err)})
			return
		}
		refs = append(refs, ref)
	}
	rev, res, err := s.DeleteAll(refs)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	if res == nil {
		res = []Result{}
	}
	writeJSON(w, http.StatusOK, batchAnswer{Revision: rev, Results: res})
}

// refOf reads kind and name of one object, named as Normalize names it (eServerName, a
// ServiceExpose's eServiceName).
func refOf(raw json.RawMessage) (Ref, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return Ref{}, err
	}
	o, err := api.New(head.Kind)
	if err != nil {
		return Ref{}, err
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return Ref{}, err
	}
	api.Normalize(o)
	if o.GetMeta().Name == "" {
		return Ref{}, fmt.Errorf("%s without a name", o.GetKind())
	}
	return Ref{Kind: o.GetKind(), Name: o.GetMeta().Name}, nil
}

func (s *Server) handleSnapshot(w http.ResponseWriter, r *http.Request) {
	gw := r.PathValue("gateway")
	snap, ok := s.Snapshot(gw)
	if !ok {
		writeError(w, s.log, &Error{Code: CodeNotFound, Object: api.KindEGateway + "/" + gw, Message: "no snapshot: no such gateway, or it has no overlay prefix"})
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func (s *Server) handleEdgeConfig(w http.ResponseWriter, r *http.Request) {
	c, err := s.EdgeConfig(r.PathValue("name"))
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	data, err := c.YAML()
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(data)
}

// listAnswer is the answer of GET /v1/{plural}.
type listAnswer struct {
	Kind     string       `json:"kind"`
	Revision int64        `json:"revision"`
	Metadata listMeta     `json:"metadata"`
	Items    []api.Object `json:"items"`
}

// listMeta is a list's metadata, as Kubernetes spells it: Continue is the token of the
// next page ("" after the last), ResourceVersion the revision the page was read at.
type listMeta struct {
	Continue        string `json:"continue,omitempty"`
	ResourceVersion string `json:"resourceVersion"`
}

// handleList answers GET /v1/{plural}[?limit=N[&continue=TOKEN]]: the objects of a kind
// sorted by name, with their status; with limit, at most N of them (at most MaxPageSize)
// and, if more follow, metadata.continue to pass as continue for the next page.
func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	k, err := kindOf(r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, s.log, &Error{Code: CodeBadRequest, Field: "limit", Message: fmt.Sprintf("%q is not a page size (0 or more)", v)})
			return
		}
		limit = n
	}
	items, rev, next, err := s.store.ListPage(k, limit, q.Get("continue"))
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	if items == nil {
		items = []api.Object{}
	}
	writeJSON(w, http.StatusOK, listAnswer{Kind: k + "List", Revision: rev,
		Metadata: listMeta{Continue: next, ResourceVersion: strconv.FormatInt(rev, 10)}, Items: items})
}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	k, err := kindOf(r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	o, err := s.store.Get(k, r.PathValue("name"))
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, o)
}

// decodeOne decodes a body holding exactly one object of kind k.
func decodeOne(w http.ResponseWriter, r *http.Request, k string) (api.Object, error) {
	data, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	objs, err := api.Decode("request body", data)
	if err != nil {
		return nil, err
	}
	if len(objs) != 1 {
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("request body: want one %s, got %d objects", k, len(objs))}
	}
	if objs[0].GetKind() != k {
		return nil, &Error{Code: CodeBadRequest, Object: api.Key(objs[0]), Field: "kind",
			Message: fmt.Sprintf("is %s but the path is for %s", objs[0].GetKind(), api.Plural(k))}
	}
	return objs[0], nil
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	k, err := kindOf(r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	o, err := decodeOne(w, r, k)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	created, err := s.Create(o)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, created)
}

func (s *Server) handleUpdate(w http.ResponseWriter, r *http.Request) {
	k, err := kindOf(r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	o, err := decodeOne(w, r, k)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	if name := r.PathValue("name"); o.GetMeta().Name != name {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Object: api.Key(o), Field: "metadata.name",
			Message: fmt.Sprintf("is %q but the path names %q", o.GetMeta().Name, name)})
		return
	}
	updated, err := s.Update(o, o.GetMeta().ResourceVersion)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, updated)
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	k, err := kindOf(r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	name := r.PathValue("name")
	rev, err := s.Delete(k, name)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, batchAnswer{Revision: rev, Results: []Result{{Kind: k, Name: name, Action: "deleted"}}})
}

// SyncHandler returns the edge sync API, to be served on the hub's overlay IP (port
// Config.SyncPort) only, inside WireGuard:
//
//	GET  /v1/sync?since=REV[&storeID=ID]
//	                         the caller's snapshot as soon as its Revision differs from REV
//	                         (greater; or lower, after the store was reset or restored —
//	                         the snapshot's StoreID tells), or its StoreID differs from the
//	                         optional ID; long poll up to Options.SyncTimeout, 204 when
//	                         nothing changed
//	POST /v1/report          the caller's Report (JSON), answered 204
//	GET  /v1/ping            204: the hub is alive (gateway.SyncClient pings the hub it
//	                         syncs from while a long poll waits)
//
// The caller is the gateway whose overlay prefix holds the request's source address
// (WireGuard authenticated it); any other source gets 403.
//
// One gateway may have at most Options.MaxPollsPerGateway polls waiting; a further poll
// ends the gateway's oldest waiting one with 503 (Retry-After: 1) and waits in its place.
// The newest poll wins because it is the one a live edge is waiting on: an edge that
// restarted, or whose connections broke without a FIN, leaves older polls behind, and
// refusing the new one would keep it from syncing until those time out. A gateway can
// only ever end its own polls.
func (s *Server) SyncHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sync", s.handleSync)
	mux.HandleFunc("POST /v1/report", s.handleReport)
	mux.HandleFunc("POST /v1/rotate", s.handleRotate)
	mux.HandleFunc("GET /v1/ping", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, s.log, &Error{Code: CodeNotFound, Message: fmt.Sprintf("no such endpoint: %s %s", r.Method, r.URL.Path)})
	})
	return mux
}

// caller identifies the gateway of a sync request by its source address.
func (s *Server) caller(w http.ResponseWriter, r *http.Request) (string, bool) {
	ap, err := parseRemote(r.RemoteAddr)
	if err == nil {
		if gw, ok := s.GatewayByAddr(ap); ok {
			return gw, true
		}
	}
	s.log.Warn("sync request from an address of no gateway", "remote", r.RemoteAddr)
	writeJSON(w, http.StatusForbidden, errorBody{Error: fmt.Sprintf("%s is not inside the overlay prefix of any gateway", r.RemoteAddr)})
	return "", false
}

func (s *Server) handleSync(w http.ResponseWriter, r *http.Request) {
	gw, ok := s.caller(w, r)
	if !ok || s.refuseRevokedSync(w, gw) {
		return
	}
	s.rotationHeader(w, gw)
	q := r.URL.Query()
	var since int64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, s.log, &Error{Code: CodeBadRequest, Field: "since", Message: fmt.Sprintf("%q is not a revision", v)})
			return
		}
		since = n
	}
	storeID := q.Get("storeID")
	if len(storeID) > maxStoreIDLen {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Field: "storeID", Message: fmt.Sprintf("is longer than %d characters", maxStoreIDLen)})
		return
	}
	ctx, cancel := contextWithTimeout(r.Context(), s.opts.SyncTimeout)
	defer cancel()
	ctx, done := s.startPoll(ctx, gw)
	defer done()
	g, err := s.watch(ctx, gw, since, storeID)
	if err != nil {
		if waitRevoked(ctx) && s.refuseRevokedSync(w, gw) {
			return
		}
		s.rotationHeader(w, gw) // a rotation request may have ended the poll
		if errors.Is(context.Cause(ctx), errPollEvicted) {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: fmt.Sprintf(
				"gateway %s has more than %d sync polls waiting; this, its oldest, was ended", gw, s.opts.MaxPollsPerGateway)})
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	// The encoding is made once per snapshot revision and shared by every request; an
	// edge's is kept gzipped and sent so to a client that takes gzip (Go's does).
	w.Header().Set("Content-Type", "application/json")
	if g.gz != nil && acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(g.gz)))
		w.WriteHeader(http.StatusOK)
		w.Write(g.gz)
		return
	}
	body, err := g.plain()
	if err != nil {
		writeError(w, s.log, fmt.Errorf("encoding the snapshot of %s: %w", gw, err))
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// acceptsGzip reports whether r's Accept-Encoding takes gzip.
func acceptsGzip(r *http.Request) bool {
	for _, v := range r.Header.Values("Accept-Encoding") {
		for _, e := range strings.Split(v, ",") {
			e, q, _ := strings.Cut(strings.TrimSpace(e), ";")
			if strings.EqualFold(strings.TrimSpace(e), "gzip") && strings.ReplaceAll(q, " ", "") != "q=0" {
				return true
			}
		}
	}
	return false
}

// maxStoreIDLen bounds the storeID a sync request may carry (Store.ID makes 32).
const maxStoreIDLen = 64

// errPollEvicted is the cause of a sync poll ended for a newer one of the same gateway.
var errPollEvicted = errors.New("ended for a newer sync poll of the same gateway")

// poll is one waiting /v1/sync request.
type poll struct{ cancel context.CancelCauseFunc }

// startPoll registers a sync poll of gw and returns its context and the func that
// unregisters it. Past Options.MaxPollsPerGateway, the gateway's oldest polls are ended
// (their context's cause is errPollEvicted).
func (s *Server) startPoll(ctx context.Context, gw string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	p := &poll{cancel: cancel}
	s.mu.Lock()
	list := append(s.polls[gw], p)
	var evicted []*poll
	if n := len(list) - s.opts.MaxPollsPerGateway; n > 0 {
		evicted = list[:n]
		list = slices.Clone(list[n:])
	}
	s.polls[gw] = list
	s.mu.Unlock()
	if len(evicted) > 0 {
		s.log.Warn("too many sync polls from one gateway; ending its oldest", "gateway", gw, "ended", len(evicted), "max", s.opts.MaxPollsPerGateway)
	}
	for _, e := range evicted {
		e.cancel(errPollEvicted)
	}
	return ctx, func() {
		s.mu.Lock()
		list := slices.DeleteFunc(s.polls[gw], func(q *poll) bool { return q == p })
		if len(list) == 0 {
			delete(s.polls, gw)
		} else {
			s.polls[gw] = list
		}
		s.mu.Unlock()
		cancel(nil)
	}
}

// waitingPolls returns how many sync polls of gw are registered.
func (s *Server) waitingPolls(gw string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.polls[gw])
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	gw, ok := s.caller(w, r)
	if !ok {
		return
	}
	data, err := readBody(w, r)
	if err != nil {
		writeError(w, s.log, err)
		return
	}
	var rep api.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		writeError(w, s.log, &Error{Code: CodeBadRequest, Message: "report: " + err.Error()})
		return
	}
	s.Report(gw, rep)
	w.WriteHeader(http.StatusNoContent)
}
