package controlplane

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	yaml "go.yaml.in/yaml/v3"
)

// seedAndMore is the seed plus an unpinned exposure (Policy3 allows the whole site; the seed's Policy2 stays dangling).
const moreObjects = `[
{"kind":"EService","metadata":{"name":"redis"},"protocol":"TCP","port":6379,"ip":"10.0.0.11","eSiteName":"TokyoChibaSite1"},
{"kind":"EPolicy","metadata":{"name":"Policy3"},"allowedSites":["TokyoChibaSite1"]},
{"kind":"ServiceExpose","metadata":{"name":"redis"},"eServiceName":"redis","dnsName":"redis.test.com","eSites":["TokyoChibaSite1"],"ePolicys":["Policy3"]}
]`

type listOf struct {
	Kind     string            `json:"kind"`
	Revision int64             `json:"revision"`
	Items    []json.RawMessage `json:"items"`
}

func listVPs(t *testing.T, h http.Handler) []api.VirtualPresence {
	t.Helper()
	rec := do(t, h, "GET", "/v1/virtualpresences", nil)
	if rec.Code != 200 {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	l := decodeJSON[listOf](t, rec)
	if l.Kind != "VirtualPresenceList" {
		t.Fatalf("kind %q", l.Kind)
	}
	var out []api.VirtualPresence
	for _, raw := range l.Items {
		var vp api.VirtualPresence
		if err := json.Unmarshal(raw, &vp); err != nil {
			t.Fatal(err)
		}
		out = append(out, vp)
	}
	return out
}

func revisionOf(t *testing.T, h http.Handler) int64 {
	t.Helper()
	return decodeJSON[map[string]int64](t, do(t, h, "GET", "/v1/revision", nil))["revision"]
}

// TestSeedInAnyOrder is the "done when": the proposal's samples (comma added)
// applied in any order give TykyoChibaNginx the pinned VIP 192.168.0.10 at
// TokyoChibaSite1; an unpinned exposure gets a VIP; everything survives a restart;
// applying the same objects again changes nothing.
func TestSeedInAnyOrder(t *testing.T) {
	seed := seedObjects(t)
	extra := decode(t, moreObjects)
	all := append(append([]api.Object{}, seed...), extra...)
	rng := rand.New(rand.NewPCG(1, 2))
	orders := [][]api.Object{all, reverse(all)}
	for range 3 {
		o := append([]api.Object{}, all...)
		rng.Shuffle(len(o), func(i, j int) { o[i], o[j] = o[j], o[i] })
		orders = append(orders, o)
	}
	var wantVIP string
	for i, order := range orders {
		for _, oneByOne := range []bool{false, true} {
			t.Run(fmt.Sprintf("order%d/oneByOne=%v", i, oneByOne), func(t *testing.T) {
				dir := t.TempDir()
				srv := newServer(t, dir, testConfig(), Options{})
				h := srv.Handler()
				if oneByOne {
					for _, o := range order {
						if rec := do(t, h, "POST", "/v1/apply", []api.Object{o}); rec.Code != 200 {
							t.Fatalf("apply %s: %d %s", api.Key(o), rec.Code, rec.Body)
						}
					}
				} else if rec := do(t, h, "POST", "/v1/apply", order); rec.Code != 200 {
					t.Fatalf("apply: %d %s", rec.Code, rec.Body)
				}
				vips := map[string]api.VirtualPresence{}
				for _, vp := range listVPs(t, h) {
					vips[vp.EServiceName] = vp
				}
				nginx := vips["TykyoChibaNginx"]
				if nginx.Metadata.Name != "vp1" || nginx.VirtualIP != "192.168.0.10" || nginx.Status.ESiteName != "TokyoChibaSite1" ||
					nginx.Status.EGateway != "TokyoChibaGateway" {
					t.Fatalf("TykyoChibaNginx's VirtualPresence: %+v", nginx)
				}
				redis := vips["redis"]
				if redis.VirtualIP == "" || redis.Metadata.Labels[LabelManaged] != "true" || redis.Status.ESiteName != "TokyoChibaSite1" {
					t.Fatalf("unpinned exposure's VirtualPresence: %+v", redis)
				}
				if wantVIP == "" {
					wantVIP = redis.VirtualIP
				} else if redis.VirtualIP != wantVIP {
					t.Fatalf("unpinned VIP %s depends on apply order (first run: %s)", redis.VirtualIP, wantVIP)
				}
				rev := revisionOf(t, h)

				// Restart: a new store and server over the same directory.
				srv.Store().Close()
				srv2 := newServer(t, dir, testConfig(), Options{})
				h2 := srv2.Handler()
				if got := revisionOf(t, h2); got != rev {
					t.Fatalf("revision after restart %d, want %d", got, rev)
				}
				for _, vp := range listVPs(t, h2) {
					if vips[vp.EServiceName].VirtualIP != vp.VirtualIP {
						t.Fatalf("VIP of %s moved across restart", vp.EServiceName)
					}
				}
				// Re-apply the same objects: nothing changes.
				rec := do(t, h2, "POST", "/v1/apply", all)
				ans := decodeJSON[batchAnswer](t, rec)
				if rec.Code != 200 || ans.Revision != rev {
					t.Fatalf("re-apply: %d revision %d, want %d", rec.Code, ans.Revision, rev)
				}
				for _, r := range ans.Results {
					if r.Action != "unchanged" {
						t.Fatalf("re-apply: %+v", r)
					}
				}
				// And the edge's snapshot has both VIPs.
				snap := decodeJSON[api.Snapshot](t, do(t, h2, "GET", "/v1/snapshots/TokyoChibaGateway", nil))
				if len(snap.VIPs) != 2 || snap.VIPs[0].VIP.String() != wantVIP && snap.VIPs[1].VIP.String() != wantVIP {
					t.Fatalf("snapshot VIPs %+v", snap.VIPs)
				}
			})
		}
	}
}

func reverse(in []api.Object) []api.Object {
	out := make([]api.Object, len(in))
	for i, o := range in {
		out[len(in)-1-i] = o
	}
	return out
}

func TestAPIErrors(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	if rec := do(t, h, "POST", "/v1/apply", seedObjects(t)); rec.Code != 200 {
		t.Fatalf("seed: %d %s", rec.Code, rec.Body)
	}
	rev := revisionOf(t, h)
	big := `{"kind":"ESite","metadata":{"name":"big","annotations":{"x":"` + strings.Repeat("a", MaxBodySize) + `"}}}`
	stale := `{"kind":"ESite","metadata":{"name":"TokyoChibaSite1","resourceVersion":"` + fmt.Sprint(rev+5) + `","labels":{"a":"b"}}}`
	cases := []struct {
		name, method, path, body string
		code                     int
		errSub, object, field    string
	}{
		{"oversized body", "POST", "/v1/apply", "[" + big + "]", 413, "larger than 1048576 bytes", "", ""},
		{"oversized create", "POST", "/v1/esites", big, 413, "larger than", "", ""},
		{"malformed JSON", "POST", "/v1/apply", `[{"kind":"ESite",}]`, 400, "request body:1:", "", ""},
		{"the seed's missing comma", "POST", "/v1/apply", `{"kind":"EService","metadata":{"name":"x"},"domainName":"a" "eSiteName":"s"}`, 400, "request body:1:", "", ""},
		{"invalid object", "POST", "/v1/eservices", `{"kind":"EService","metadata":{"name":"x"},"protocol":"TCP","port":70000,"ip":"10.0.0.1","eSiteName":"s"}`, 422, "", "EService/x", "port"},
		{"half-valid batch", "POST", "/v1/apply", `[{"kind":"ESite","metadata":{"name":"fine"}},{"kind":"EGateway","metadata":{"name":"bad"},"virtualPresenceIPcidr":"100.64.0.0/24","eSiteName":"fine"}]`, 422, "overlaps the overlay CIDR", "EGateway/bad", "virtualPresenceIPcidr"},
		{"create existing", "POST", "/v1/esites", `{"kind":"ESite","metadata":{"name":"TokyoChibaSite1"}}`, 409, "already exists", "ESite/TokyoChibaSite1", ""},
		{"stale update", "PUT", "/v1/esites/TokyoChibaSite1", stale, 409, "changed since you read it", "ESite/TokyoChibaSite1", "metadata.resourceVersion"},
		{"update of another name", "PUT", "/v1/esites/other", `{"kind":"ESite","metadata":{"name":"TokyoChibaSite1"}}`, 400, "path names", "ESite/TokyoChibaSite1", "metadata.name"},
		{"wrong kind for path", "POST", "/v1/esites", `{"kind":"EPolicy","metadata":{"name":"p"}}`, 400, "path is for esites", "EPolicy/p", "kind"},
		{"delete absent", "DELETE", "/v1/esites/nope", "", 404, "not found", "ESite/nope", ""},
		{"get absent", "GET", "/v1/eservices/nope", "", 404, "not found", "EService/nope", ""},
		{"unknown resource", "GET", "/v1/widgets", "", 404, "no such resource", "", ""},
		{"batch delete with an absent object", "POST", "/v1/delete", `[{"kind":"ESite","metadata":{"name":"TokyoChibaSite1"}},{"kind":"EPolicy","metadata":{"name":"nope"}}]`, 404, "not found", "EPolicy/nope", ""},
		{"snapshot of no gateway", "GET", "/v1/snapshots/nope", "", 404, "no snapshot", "EGateway/nope", ""},
		{"edgeconfig of no gateway", "GET", "/v1/egateways/nope/edgeconfig", "", 404, "not found", "EGateway/nope", ""},
		{"explain with a bad src", "GET", "/v1/explain?site=TokyoChibaSite1&src=nope&to=x", "", 400, "not an IPv4 address", "", "src"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := do(t, h, c.method, c.path, c.body)
			if rec.Code != c.code {
				t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, rec.Code, rec.Body, c.code)
			}
			e := decodeJSON[errorBody](t, rec)
			if !strings.Contains(e.Error, c.errSub) || e.Object != c.object || e.Field != c.field {
				t.Fatalf("error %+v, want %q object %q field %q", e, c.errSub, c.object, c.field)
			}
			if got := revisionOf(t, h); got != rev {
				t.Fatalf("revision moved to %d on a refused request", got)
			}
		})
	}
	for _, name := range []string{"big", "fine", "bad", "x"} {
		for _, p := range []string{"esites", "egateways", "eservices"} {
			if rec := do(t, h, "GET", "/v1/"+p+"/"+name, nil); rec.Code != 404 {
				t.Fatalf("%s/%s of a refused request was stored", p, name)
			}
		}
	}
}

func TestAPICRUD(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	rec := do(t, h, "POST", "/v1/esites", `{"kind":"ESite","metadata":{"name":"s1"}}`)
	if rec.Code != 201 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	rec = do(t, h, "POST", "/v1/egateways", `{"kind":"EGateway","metadata":{"name":"g1"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s1"}`)
	g := decodeJSON[api.EGateway](t, rec)
	if rec.Code != 201 || g.Status.OverlayPrefix != "100.64.4.0/22" || g.Metadata.ResourceVersion != 2 {
		t.Fatalf("create gateway: %d %+v", rec.Code, g)
	}
	g.PublicKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	rec = do(t, h, "PUT", "/v1/egateways/g1", g)
	g2 := decodeJSON[api.EGateway](t, rec)
	if rec.Code != 200 || g2.PublicKey != g.PublicKey || g2.Metadata.ResourceVersion != 3 {
		t.Fatalf("update: %d %+v", rec.Code, g2)
	}
	// The same body again is stale now.
	if rec := do(t, h, "PUT", "/v1/egateways/g1", g); rec.Code != 409 {
		t.Fatalf("stale PUT: %d", rec.Code)
	}
	rec = do(t, h, "GET", "/v1/egateways/g1", nil)
	if got := decodeJSON[api.EGateway](t, rec); got.PublicKey != g.PublicKey {
		t.Fatalf("get: %+v", got)
	}
	rec = do(t, h, "POST", "/v1/delete", `[{"kind":"EGateway","metadata":{"name":"g1"}},{"kind":"ESite","metadata":{"name":"s1"}}]`)
	ans := decodeJSON[batchAnswer](t, rec)
	if rec.Code != 200 || len(ans.Results) != 2 || ans.Results[0].Action != "deleted" || ans.Revision != 4 {
		t.Fatalf("batch delete: %d %+v", rec.Code, ans)
	}
	if rec := do(t, h, "DELETE", "/v1/esites/s1", nil); rec.Code != 404 {
		t.Fatalf("delete again: %d", rec.Code)
	}
	// The seed's EServer (named by eServerName) can be deleted by that name.
	do(t, h, "POST", "/v1/apply", `[{"kind":"EServer","apiVersion":"v1","eServerName":"Server1","ip":"10.0.0.20","eSiteName":"TokyoChibaSite1"}]`)
	rec = do(t, h, "POST", "/v1/delete", `[{"kind":"EServer","eServerName":"Server1"}]`)
	if rec.Code != 200 {
		t.Fatalf("delete by eServerName: %d %s", rec.Code, rec.Body)
	}
}

func TestExplain(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	if rec := do(t, h, "POST", "/v1/apply", append(seedObjects(t), decode(t, moreObjects)...)); rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	cases := []struct {
		src, to string
		allowed bool
		reason  string
	}{
		{"10.0.0.20", "url1.test.com", true, `EPolicy "Policy1" allows EServer "Server1" (10.0.0.20)`},
		{"10.0.0.20", "192.168.0.10", true, `EPolicy "Policy1" allows EServer "Server1"`},
		{"10.0.0.20", "TykyoChibaNginx", true, `EPolicy "Policy1"`},
		{"10.0.0.99", "url1.test.com.", false, `no policy of ServiceExpose "TykyoChibaNginx" allows 10.0.0.99 at site "TokyoChibaSite1" (default deny)`},
		{"10.0.0.99", "redis", true, `EPolicy "Policy3" allows site "TokyoChibaSite1"`},
		{"10.0.0.99", "nothing.example", false, `"nothing.example" names no service exposed to site "TokyoChibaSite1"`},
	}
	for _, c := range cases {
		rec := do(t, h, "GET", "/v1/explain?site=TokyoChibaSite1&src="+c.src+"&to="+c.to, nil)
		ex := decodeJSON[api.Explanation](t, rec)
		if rec.Code != 200 || ex.Allowed != c.allowed || !strings.Contains(ex.Reason, c.reason) {
			t.Errorf("explain %s -> %s: %d %+v, want allowed=%v %q", c.src, c.to, rec.Code, ex, c.allowed, c.reason)
		}
		if (ex.Verdict == "allowed") != c.allowed {
			t.Errorf("verdict %q", ex.Verdict)
		}
	}
	if rec := do(t, h, "GET", "/v1/explain?site=nope&src=10.0.0.1&to=x", nil); rec.Code != 404 {
		t.Fatalf("unknown site: %d", rec.Code)
	}
}

func TestEdgeConfig(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	if err := srv.EnsureHub("192.168.9.0/24", "HUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBA=", ""); err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	do(t, h, "POST", "/v1/apply", seedObjects(t))
	rec := do(t, h, "GET", "/v1/egateways/TokyoChibaGateway/edgeconfig", nil)
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/yaml" {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := yaml.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	cloud := got["cloud"].(map[string]any)
	if got["name"] != "TokyoChibaGateway" || got["site"] != "TokyoChibaSite1" || got["overlayPrefix"] != "100.64.4.0/22" ||
		got["overlayIP"] != "100.64.4.1" || got["vpCIDR"] != "192.168.0.0/24" || got["overlayCIDR"] != "100.64.0.0/10" ||
		cloud["endpoint"] != "203.0.113.1:51820" || cloud["publicKey"] != "HUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBA=" ||
		cloud["overlayIP"] != "100.64.0.1" || cloud["syncPort"] != 7443 || cloud["keepalive"] != "25s" ||
		got["dns"].(map[string]any)["zone"] != "egw.local." || got["tun"].(map[string]any)["name"] != DeviceName("TokyoChibaGateway") {
		t.Fatalf("edge config:\n%s", rec.Body)
	}
	if rec := do(t, h, "GET", "/v1/egateways/cloud-gw/edgeconfig", nil); rec.Code != 400 {
		t.Fatalf("edgeconfig of the hub: %d", rec.Code)
	}
}

func TestEnsureHub(t *testing.T) {
	dir := t.TempDir()
	srv := newServer(t, dir, testConfig(), Options{})
	if err := srv.EnsureHub("192.168.9.0/24", "", "203.0.113.1:51820"); err != nil {
		t.Fatal(err)
	}
	rev, _ := srv.Store().Revision()
	if err := srv.EnsureHub("192.168.9.0/24", "", "203.0.113.1:51820"); err != nil {
		t.Fatal(err)
	}
	if again, _ := srv.Store().Revision(); again != rev {
		t.Fatal("EnsureHub wrote although the hub was registered")
	}
	snap, ok := srv.Snapshot("cloud-gw")
	if !ok || !snap.Hub || snap.OverlayPrefix != prefix("100.64.0.0/22") || snap.OverlayIP != addr("100.64.0.1") {
		t.Fatalf("hub snapshot %+v", snap)
	}
	// A new key is recorded.
	if err := srv.EnsureHub("192.168.9.0/24", "HUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBA=", ""); err != nil {
		t.Fatal(err)
	}
	g, _ := srv.Store().Get("EGateway", "cloud-gw")
	if g.(*api.EGateway).PublicKey != "HUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBHUBA=" || g.(*api.EGateway).Endpoint != "203.0.113.1:51820" {
		t.Fatalf("hub gateway %+v", g)
	}
}

func TestStatusShowsReportsAndPeerStats(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	srv := newServer(t, t.TempDir(), testConfig(), Options{Now: func() time.Time { return now }})
	h := srv.Handler()
	do(t, h, "POST", "/v1/apply", seedObjects(t))
	srv.SetPeerStats(func() map[string]PeerStats {
		return map[string]PeerStats{"TokyoChibaGateway": {Connected: true, LastHandshake: now.Add(-5 * time.Second), RxBytes: 100, TxBytes: 200}}
	})
	srv.Report("TokyoChibaGateway", api.Report{AppliedRevision: 1, Leases: []api.PoolUse{{Pool: "presence", Used: 3, Size: 126}}, Drops: map[string]uint64{"denied": 7}})
	st := decodeJSON[api.StatusReport](t, do(t, h, "GET", "/v1/status", nil))
	if st.Revision != 1 || len(st.Gateways) != 1 {
		t.Fatalf("status %+v", st)
	}
	g := st.Gateways[0]
	if g.Name != "TokyoChibaGateway" || !g.Connected || g.RxBytes != 100 || g.TxBytes != 200 || !g.LastHandshake.Equal(now.Add(-5*time.Second)) ||
		g.AppliedRevision != 1 || g.LatestRevision != 1 || g.Drops["denied"] != 7 || g.Leases[0].Used != 3 || !g.LastReport.Equal(now) ||
		g.OverlayPrefix != "100.64.4.0/22" {
		t.Fatalf("gateway status %+v", g)
	}
}

func TestUnixSocketAndToken(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "api.sock")
	l, err := ListenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want socket 0600", fi.Mode())
	}
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "another server is listening") {
		t.Fatalf("second listener: %v", err)
	}
	l.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatal("socket left behind after Close")
	}
	// A regular file in the way is not removed.
	os.WriteFile(sock, []byte("x"), 0o600)
	if _, err := ListenUnix(sock); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Fatalf("file in the way: %v", err)
	}

	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("0123456789abcdef0123\n"), 0o644)
	if _, err := ReadTokenFile(tok); err == nil || !strings.Contains(err.Error(), "must not be accessible to group or others") {
		t.Fatalf("0644 token file: %v", err)
	}
	os.Chmod(tok, 0o600)
	token, err := ReadTokenFile(tok)
	if err != nil || token != "0123456789abcdef0123" {
		t.Fatalf("token %q %v", token, err)
	}
	os.WriteFile(filepath.Join(dir, "short"), []byte("abc"), 0o600)
	if _, err := ReadTokenFile(filepath.Join(dir, "short")); err == nil {
		t.Fatal("short token accepted")
	}
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := BearerAuth(srv.Handler(), func() string { return token })
	for _, c := range []struct {
		auth string
		code int
	}{{"", 401}, {"Bearer wrong", 401}, {"Bearer " + token, 200}} {
		req, _ := http.NewRequest("GET", "/v1/revision", nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := newRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.code {
			t.Errorf("auth %q: %d, want %d", c.auth, rec.Code, c.code)
		}
	}
	_ = bytes.MinRead
}
