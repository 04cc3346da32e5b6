package controlplane

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"testing"
)

// FuzzApply feeds arbitrary bodies to /v1/apply and /v1/delete on a store that holds the
// seed: the server never panics, answers 200 or a 4xx with a JSON error, and a refused
// request leaves the revision where it was.
func FuzzApply(f *testing.F) {
	seed, err := os.ReadFile("testdata/seed.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(twoSites))
	f.Add([]byte(base))
	f.Add([]byte(`[{"kind":"VirtualPresence","metadata":{"name":"v"},"virtualIp":"192.168.0.200","eServiceName":"TykyoChibaNginx"}]`))
	f.Add([]byte(`[{"kind":"EGateway","metadata":{"name":"g"},"virtualPresenceIPcidr":"192.168.0.0/30","eSiteName":"TokyoChibaSite1"}]`))
	f.Add([]byte(`[{"kind":"ESite","metadata":{"name":"TokyoChibaSite1"}}]`))
	srv := newServer(f, f.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	rec := do(f, h, "POST", "/v1/apply", seed)
	if rec.Code != 200 {
		f.Fatal(rec.Body.String())
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, path := range []string{"/v1/apply", "/v1/delete"} {
			before, _ := srv.Store().Revision()
			rec := do(t, h, "POST", path, body)
			switch {
			case rec.Code == 200:
			case rec.Code >= 400 && rec.Code < 500:
				e := decodeJSON[errorBody](t, rec)
				if e.Error == "" {
					t.Fatalf("%s: %d without a message", path, rec.Code)
				}
				if after, _ := srv.Store().Revision(); after != before {
					t.Fatalf("%s: refused (%d) but the revision moved %d -> %d", path, rec.Code, before, after)
				}
			default:
				t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
			}
			for _, p := range []string{"/v1/virtualpresences", "/v1/status", "/v1/snapshots/TokyoChibaGateway"} {
				if rec := do(t, h, "GET", p, nil); rec.Code >= 500 {
					t.Fatalf("GET %s: %d %s", p, rec.Code, rec.Body)
				}
			}
		}
	})
}

// FuzzListQuery feeds arbitrary limit and continue values to GET /v1/{plural}: the server
// never panics, answers 200 with at most the page size asked for, or 400; a token it made
// itself is read back to the name it holds.
func FuzzListQuery(f *testing.F) {
	f.Add("5", encodeContinue("ESite", "s03"))
	f.Add("0", "")
	f.Add("-1", "x")
	f.Add("99999999999999999999", "eyJrIjoiRVNpdGUiLCJhIjoiIn0")
	srv := newServer(f, f.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	do(f, h, "POST", "/v1/apply", `[{"kind":"ESite","metadata":{"name":"s01"}},{"kind":"ESite","metadata":{"name":"s03"}},{"kind":"ESite","metadata":{"name":"s05"}}]`)
	f.Fuzz(func(t *testing.T, limit, cont string) {
		q := url.Values{"limit": {limit}, "continue": {cont}}
		rec := do(t, h, "GET", "/v1/esites?"+q.Encode(), nil)
		switch rec.Code {
		case 200:
			var l struct{ Items []json.RawMessage }
			if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
				t.Fatalf("200 with %v", err)
			}
			if n, err := strconv.Atoi(limit); err == nil && n > 0 && len(l.Items) > n {
				t.Fatalf("limit %d gave %d items", n, len(l.Items))
			}
		case 400:
		default:
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		if after, err := decodeContinue("ESite", cont); err == nil && encodeContinue("ESite", after) != cont {
			if a2, _ := decodeContinue("ESite", encodeContinue("ESite", after)); a2 != after {
				t.Fatalf("token round trip %q -> %q", after, a2)
			}
		}
		acceptsGzip(&http.Request{Header: http.Header{"Accept-Encoding": {limit, cont}}})
	})
}
