package controlplane

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// testConfig is the configuration tests run with: hub "cloud-gw" at site "cloud", and
// /22 overlay prefixes (the expectations are written for those).
func testConfig() Config {
	return Config{HubGateway: "cloud-gw", HubSite: "cloud", Endpoint: "203.0.113.1:51820", OverlayPrefixLen: 22,
		PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}.WithDefaults()
}

func openStore(t testing.TB, dir string, cfg Config) *Store {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newServer(t testing.TB, dir string, cfg Config, opts Options) *Server {
	t.Helper()
	srv, err := NewServer(openStore(t, dir, cfg), opts)
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// decode decodes objects written as JSON or YAML.
func decode(t *testing.T, text string) []api.Object {
	t.Helper()
	objs, err := api.Decode("test", []byte(text))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return objs
}

func seedObjects(t *testing.T) []api.Object {
	t.Helper()
	data, err := os.ReadFile("testdata/seed.json")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := api.Decode("testdata/seed.json", data)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func mustApply(t *testing.T, s interface {
	Apply([]api.Object) (int64, []Result, error)
}, text string) int64 {
	t.Helper()
	rev, _, err := s.Apply(decode(t, text))
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return rev
}

// wantErr checks err is an *Error of code naming object and field with msg in its
// message.
func wantErr(t *testing.T, err error, code ErrorCode, object, field, msg string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", msg)
	}
	e := toError(err)
	if e.Code != code || e.Object != object || e.Field != field || !strings.Contains(e.Message, msg) {
		t.Fatalf("error = {code %d object %q field %q message %q}\nwant {code %d object %q field %q message containing %q}",
			e.Code, e.Object, e.Field, e.Message, code, object, field, msg)
	}
}

func condition(o api.Object, typ string) *api.Condition {
	for i, c := range o.GetStatus().Conditions {
		if c.Type == typ {
			return &o.GetStatus().Conditions[i]
		}
	}
	return nil
}

// do runs one request against h and returns the recorder.
func do(t testing.TB, h http.Handler, method, path string, body any) *httptest.ResponseRecorder {
	t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func decodeJSON[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("answer %d %q: %v", rec.Code, rec.Body.String(), err)
	}
	return v
}

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

var _ = time.Second

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }
