// Package client is the small HTTP client of EGW's admin REST API (docs/ARCHITECTURE.md,
// "REST API"). egwctl uses it; it imports only package api.
//
// An address is either a unix socket path (the default, DefaultSocket; "unix://PATH" is
// accepted too) or an http:// or https:// URL, to which a non-empty token is sent as
// "Authorization: Bearer <token>". Every method takes a context, returns decoded values,
// and turns a non-2xx answer into an *APIError carrying the HTTP status and the server's
// message, object and field.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egw-project/egw/api"
)

// DefaultSocket is where the cloud gateway serves its API by default.
const DefaultSocket = "/run/egw/api.sock"

// maxResponse bounds what the client reads from one answer (a snapshot of a large site is
// the biggest thing the server sends).
const maxResponse = 64 << 20

// Client talks to one API server. It is safe for concurrent use.
type Client struct {
	base  string // "http://egw" for a unix socket, else the URL without a trailing slash
	token string
	http  *http.Client
	addr  string
}

// New returns a client for addr: a unix socket path (empty means DefaultSocket), a
// "unix://PATH", or an "http://host:port" / "https://host:port" URL. token, if not empty,
// is sent as a bearer token. An https:// server is verified against the system's roots;
// NewWithOptions can trust a given CA instead.
func New(addr, token string) (*Client, error) {
	return NewWithOptions(addr, Options{Token: token})
}

// Options are the settings of NewWithOptions.
type Options struct {
	// Token, if not empty, is sent as "Authorization: Bearer <Token>".
	Token string
	// CAFile, if not empty, is a PEM file of CA certificates: an https:// server's
	// certificate must chain to one of them (instead of to the system's roots). It is an
	// error with any other address.
	CAFile string
}

// NewWithOptions returns a client for addr (see New) with the given options.
func NewWithOptions(addr string, o Options) (*Client, error) {
	if addr == "" {
		addr = DefaultSocket
	}
	c := &Client{token: o.Token, addr: addr}
	switch {
	case strings.HasPrefix(addr, "http://"), strings.HasPrefix(addr, "https://"):
		u, err := url.Parse(addr)
		if err != nil {
			return nil, fmt.Errorf("server address %q: %v", addr, err)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("server address %q: no host", addr)
		}
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("server address %q: must not have a path", addr)
		}
		c.base = u.Scheme + "://" + u.Host
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if o.CAFile != "" {
			if u.Scheme != "https" {
				return nil, fmt.Errorf("CA file %s given for %s: it is for https:// servers only", o.CAFile, addr)
			}
			pool, err := loadCAFile(o.CAFile)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		} else {
			tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12} // system roots
		}
		c.http = &http.Client{Transport: tr}
	default:
		if o.CAFile != "" {
			return nil, fmt.Errorf("CA file %s given for the unix socket %s: it is for https:// servers only", o.CAFile, addr)
		}
		path := strings.TrimPrefix(addr, "unix://")
		if strings.Contains(path, "://") {
			return nil, fmt.Errorf("server address %q: want a socket path, unix://PATH, http:// or https:// URL", addr)
		}
		c.base = "http://egw"
		var d net.Dialer
		c.http = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConns:    2,
			IdleConnTimeout: 30 * time.Second,
		}}
	}
	return c, nil
}

// loadCAFile reads PEM CA certificates into a pool.
func loadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", path)
	}
	return pool, nil
}

// Addr returns the address the client was made for.
func (c *Client) Addr() string { return c.addr }

// APIError is a non-2xx answer of the server. Message, Object and Field come from the
// server's JSON error body ({"error","object","field"}); for a body that is not such JSON,
// Message is its text (or the HTTP status text).
type APIError struct {
	StatusCode int
	Message    string
	Object     string // e.g. "EService/nginx"
	Field      string // e.g. "port"
}

// Error reads "EService/nginx: port: must be 1-65535": the object, the field, the
// message, leaving out a prefix the message already starts with.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = strings.ToLower(http.StatusText(e.StatusCode))
		if msg == "" {
			msg = "HTTP status " + strconv.Itoa(e.StatusCode)
		}
	}
	if e.Field != "" && !strings.HasPrefix(msg, e.Field) && !strings.HasPrefix(msg, e.Object+": "+e.Field) {
		msg = e.Field + ": " + msg
	}
	if e.Object != "" && !strings.HasPrefix(msg, e.Object) {
		msg = e.Object + ": " + msg
	}
	return msg
}

// IsNotFound reports whether err is an APIError with status 404.
func IsNotFound(err error) bool { return hasStatus(err, http.StatusNotFound) }

// IsConflict reports whether err is an APIError with status 409 (exists, or stale
// resourceVersion).
func IsConflict(err error) bool { return hasStatus(err, http.StatusConflict) }

func hasStatus(err error, code int) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.StatusCode == code
}

// do sends one request. body, if not nil, is sent as JSON. out, if not nil, receives the
// JSON answer. It returns the raw answer and its content type for callers that want them.
func (c *Client) do(ctx context.Context, method, path string, body any, out any) ([]byte, string, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, "", fmt.Errorf("encoding request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("cannot reach the EGW API at %s: %w", c.addr, unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, "", fmt.Errorf("%s %s: reading answer: %w", method, path, err)
	}
	if len(data) > maxResponse {
		return nil, "", fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponse)
	}
	ctype := resp.Header.Get("Content-Type")
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, ctype, decodeError(resp.StatusCode, data)
	}
	if out != nil {
		if len(bytes.TrimSpace(data)) == 0 {
			return data, ctype, fmt.Errorf("%s %s: empty answer (HTTP %d)", method, path, resp.StatusCode)
		}
		if err := json.Unmarshal(data, out); err != nil {
			return data, ctype, fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
		}
	}
	return data, ctype, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func decodeError(code int, data []byte) error {
	var body struct {
		Error  string `json:"error"`
		Object string `json:"object"`
		Field  string `json:"field"`
	}
	ae := &APIError{StatusCode: code}
	if json.Unmarshal(data, &body) == nil && body.Error != "" {
		ae.Message, ae.Object, ae.Field = body.Error, body.Object, body.Field
		return ae
	}
	text := strings.TrimSpace(string(data))
	if i := strings.IndexByte(text, '\n'); i >= 0 {
		text = strings.TrimSpace(text[:i])
	}
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	ae.Message = text
	return ae
}

// pluralOf maps a kind (any spelling api.ParseKind accepts) to its URL plural.
func pluralOf(kind string) (string, string, error) {
	k, err := api.ParseKind(kind)
	if err != nil {
		return "", "", err
	}
	return k, api.Plural(k), nil
}

func objectPath(kind, name string) (string, string, error) {
	k, plural, err := pluralOf(kind)
	if err != nil {
		return "", "", err
	}
	if name == "" {
		return k, "", fmt.Errorf("%s: empty name", k)
	}
	return k, "/v1/" + plural + "/" + url.PathEscape(name), nil
}

// decodeObject decodes one object of kind k; an answer naming another kind is an error.
func decodeObject(k string, raw json.RawMessage) (api.Object, error) {
	var tm struct {
		Kind string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &tm); err != nil {
		return nil, err
	}
	if tm.Kind != "" {
		got, err := api.ParseKind(tm.Kind)
		if err != nil {
			return nil, err
		}
		if got != k {
			return nil, fmt.Errorf("the answer is an object of kind %s, not %s", got, k)
		}
	}
	o, err := api.New(k)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, o); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", k, err)
	}
	return o, nil
}

// encodeObject marshals o with its kind set, whatever its TypeMeta says.
func encodeObject(o api.Object) (json.RawMessage, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encoding %s/%s: %w", o.GetKind(), o.GetMeta().Name, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if k, _ := json.Marshal(o.GetKind()); string(m["kind"]) != string(k) {
		m["kind"] = k
		return json.Marshal(m)
	}
	return b, nil
}

func encodeObjects(objs []api.Object) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(objs))
	for _, o := range objs {
		b, err := encodeObject(o)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// List is the answer of GET /v1/{plural}.
type List struct {
	Kind     string // e.g. "EServiceList"
	Revision int64
	Items    []api.Object
}

// PageSize is how many objects List asks for per page.
const PageSize = 500

// maxPages bounds the pages one List follows (PageSize × maxPages objects).
const maxPages = 100000

// List returns every object of a kind. It reads them a page at a time (GET
// /v1/{plural}?limit=PageSize, then &continue= with the token each page returns) and
// returns them together; Revision is that of the last page. A server that does not page
// answers everything at once, which is fine too.
func (c *Client) List(ctx context.Context, kind string) (*List, error) {
	k, plural, err := pluralOf(kind)
	if err != nil {
		return nil, err
	}
	l := &List{Kind: k + "List"}
	cont := ""
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, fmt.Errorf("list %s: more than %d pages", plural, maxPages)
		}
		q := url.Values{"limit": {strconv.Itoa(PageSize)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		var raw struct {
			Kind     string `json:"kind"`
			Revision int64  `json:"revision"`
			Metadata struct {
				Continue string `json:"continue"`
			} `json:"metadata"`
			Items []json.RawMessage `json:"items"`
		}
		if _, _, err := c.do(ctx, http.MethodGet, "/v1/"+plural+"?"+q.Encode(), nil, &raw); err != nil {
			return nil, err
		}
		if raw.Kind != "" {
			l.Kind = raw.Kind
		}
		l.Revision = raw.Revision
		for i, item := range raw.Items {
			o, err := decodeObject(k, item)
			if err != nil {
				return nil, fmt.Errorf("list %s: item %d: %w", plural, len(l.Items)+i, err)
			}
			l.Items = append(l.Items, o)
		}
		if raw.Metadata.Continue == "" || raw.Metadata.Continue == cont {
			break
		}
		cont = raw.Metadata.Continue
	}
	if l.Items == nil {
		l.Items = []api.Object{}
	}
	return l, nil
}

// Get returns one object with its status.
func (c *Client) Get(ctx context.Context, kind, name string) (api.Object, error) {
	k, path, err := objectPath(kind, name)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if _, _, err := c.do(ctx, http.MethodGet, path, nil, &raw); err != nil {
		return nil, err
	}
	return decodeObject(k, raw)
}

// Create stores a new object; the server answers 409 if it exists. It returns the object
// as stored.
func (c *Client) Create(ctx context.Context, o api.Object) (api.Object, error) {
	_, plural, err := pluralOf(o.GetKind())
	if err != nil {
		return nil, err
	}
	return c.write(ctx, http.MethodPost, "/v1/"+plural, o)
}

// Update replaces an object. If o's metadata.resourceVersion is set it must equal the
// stored one, else the server answers 409.
func (c *Client) Update(ctx context.Context, o api.Object) (api.Object, error) {
	_, path, err := objectPath(o.GetKind(), o.GetMeta().Name)
	if err != nil {
		return nil, err
	}
	return c.write(ctx, http.MethodPut, path, o)
}

func (c *Client) write(ctx context.Context, method, path string, o api.Object) (api.Object, error) {
	body, err := encodeObject(o)
	if err != nil {
		return nil, err
	}
	data, _, err := c.do(ctx, method, path, body, nil)
	if err != nil {
		return nil, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return o, nil // the server confirmed without echoing the object
	}
	stored, err := decodeObject(o.GetKind(), data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: decoding answer: %w", method, path, err)
	}
	return stored, nil
}

// Delete removes one object; the server answers 404 if it is absent.
func (c *Client) Delete(ctx context.Context, kind, name string) error {
	_, path, err := objectPath(kind, name)
	if err != nil {
		return err
	}
	_, _, err = c.do(ctx, http.MethodDelete, path, nil, nil)
	return err
}

// Result is what the server did to one object of a batch.
type Result struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"` // created, configured, unchanged (apply); deleted (delete)
}

// BatchResult is the answer of POST /v1/apply and POST /v1/delete.
type BatchResult struct {
	Revision int64    `json:"revision"`
	Results  []Result `json:"results"`
}

// Apply creates or updates every object, all or nothing. Applying objects identical to the
// stored ones changes nothing (every result "unchanged", the same revision).
func (c *Client) Apply(ctx context.Context, objs []api.Object) (*BatchResult, error) {
	return c.batch(ctx, "/v1/apply", objs)
}

// DeleteObjects deletes every object named (kind and name) by objs, all or nothing.
// If the server answers without results, one "deleted" result per object is filled in.
func (c *Client) DeleteObjects(ctx context.Context, objs []api.Object) (*BatchResult, error) {
	r, err := c.batch(ctx, "/v1/delete", objs)
	if err != nil {
		return nil, err
	}
	if len(r.Results) == 0 {
		for _, o := range objs {
			r.Results = append(r.Results, Result{Kind: o.GetKind(), Name: o.GetMeta().Name, Action: "deleted"})
		}
	}
	return r, nil
}

func (c *Client) batch(ctx context.Context, path string, objs []api.Object) (*BatchResult, error) {
	body, err := encodeObjects(objs)
	if err != nil {
		return nil, err
	}
	data, _, err := c.do(ctx, http.MethodPost, path, body, nil)
	if err != nil {
		return nil, err
	}
	r := &BatchResult{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, r); err != nil {
			return nil, fmt.Errorf("POST %s: decoding answer: %w", path, err)
		}
	}
	return r, nil
}

// Snapshot returns the compiled snapshot of one gateway.
func (c *Client) Snapshot(ctx context.Context, gateway string) (*api.Snapshot, error) {
	if gateway == "" {
		return nil, errors.New("snapshot: empty gateway name")
	}
	s := &api.Snapshot{}
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/snapshots/"+url.PathEscape(gateway), nil, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Revision returns the store's current revision.
func (c *Client) Revision(ctx context.Context) (int64, error) {
	var r struct {
		Revision *int64 `json:"revision"`
	}
	if _, _, err := c.do(ctx, http.MethodGet, "/v1/revision", nil, &r); err != nil {
		return 0, err
	}
	if r.Revision == nil {
		return 0, errors.New("GET /v1/revision: answer has no revision")
	}
	return *r.Revision, nil
}

// EdgeConfig returns the ready edgegateway.yaml of a gateway. The server may send it as
// YAML text, as a JSON string, or as a JSON object (converted to YAML here).
func (c *Client) EdgeConfig(ctx context.Context, gateway string) ([]byte, error) {
	if gateway == "" {
		return nil, errors.New("edgeconfig: empty gateway name")
	}
	data, ctype, err := c.do(ctx, http.MethodGet, "/v1/egateways/"+url.PathEscape(gateway)+"/edgeconfig", nil, nil)
	if err != nil {
		return nil, err
	}
	y, err := edgeConfigYAML(ctype, data)
	if err != nil {
		return nil, fmt.Errorf("edgeconfig of %s: %w", gateway, err)
	}
	return y, nil
}

// edgeConfigYAML turns the edgeconfig answer into YAML ending in a newline.
func edgeConfigYAML(ctype string, data []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, errors.New("empty answer")
	}
	if strings.Contains(ctype, "json") {
		switch trimmed[0] {
		case '"':
			var s string
			if err := json.Unmarshal(trimmed, &s); err != nil {
				return nil, err
			}
			data = []byte(s)
		case '{':
			y, err := yaml.JSONToYAML(trimmed)
			if err != nil {
				return nil, err
			}
			data = y
		}
	}
	if len(data) == 0 {
		return nil, errors.New("empty answer")
	}
	if data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	return data, nil
}
