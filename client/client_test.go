package client_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client"
	"github.com/egw-project/egw/client/clienttest"
	"github.com/egw-project/egw/controlplane"
)

func newPair(t *testing.T) (*clienttest.Server, *client.Client) {
	t.Helper()
	fake := clienttest.New(t)
	c, err := client.New(fake.ServeUnix(t), "")
	if err != nil {
		t.Fatal(err)
	}
	return fake, c
}

func site(name string) *api.ESite {
	return &api.ESite{TypeMeta: api.TypeMeta{Kind: api.KindESite}, Metadata: api.ObjectMeta{Name: name}}
}

func service(name, siteName string, port int32) *api.EService {
	return &api.EService{TypeMeta: api.TypeMeta{Kind: api.KindEService}, Metadata: api.ObjectMeta{Name: name},
		Protocol: "TCP", Port: port, IP: "10.0.0.10", ESiteName: siteName}
}

func TestNewAddresses(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr string
	}{
		{"", ""},
		{"/run/egw/api.sock", ""},
		{"unix:///tmp/x.sock", ""},
		{"http://127.0.0.1:8080", ""},
		{"https://egw.example:8443/", ""},
		{"http://", "no host"},
		{"https://h:1/v1", "must not have a path"},
		{"ftp://h", "want a socket path"},
	}
	for _, tt := range tests {
		c, err := client.New(tt.addr, "")
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("New(%q): %v", tt.addr, err)
			} else if tt.addr == "" && c.Addr() != client.DefaultSocket {
				t.Errorf("New(\"\").Addr() = %q, want %q", c.Addr(), client.DefaultSocket)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("New(%q) error = %v, want it to contain %q", tt.addr, err, tt.wantErr)
		}
	}
}

func TestCRUD(t *testing.T) {
	ctx := context.Background()
	fake, c := newPair(t)

	created, err := c.Create(ctx, site("tokyo"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if created.GetMeta().ResourceVersion != 1 {
		t.Errorf("created resourceVersion = %d, want 1 (the first write)", created.GetMeta().ResourceVersion)
	}
	if _, err := c.Create(ctx, site("tokyo")); !client.IsConflict(err) {
		t.Errorf("second Create: err = %v, want a 409", err)
	}

	if _, err := c.Create(ctx, service("nginx", "tokyo", 8080)); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, "svc", "nginx") // a short form of the kind
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	svc, ok := got.(*api.EService)
	if !ok || svc.Port != 8080 || svc.ESiteName != "tokyo" {
		t.Fatalf("Get = %#v", got)
	}
	// The site has no gateway yet: the server says so in a condition.
	if len(svc.Status.Conditions) != 1 || svc.Status.Conditions[0].Type != "ResolvedRefs" || svc.Status.Conditions[0].Status != "False" ||
		!strings.Contains(svc.Status.Conditions[0].Message, `ESite "tokyo" has no EGateway`) {
		t.Errorf("conditions = %+v, want ResolvedRefs=False naming the missing gateway", svc.Status.Conditions)
	}

	// Update with the current resourceVersion works; with a stale one, 409.
	svc.Port = 9090
	upd, err := c.Update(ctx, svc)
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if upd.(*api.EService).Port != 9090 {
		t.Errorf("updated port = %d", upd.(*api.EService).Port)
	}
	svc.Port = 7070 // svc still carries the old resourceVersion
	if _, err := c.Update(ctx, svc); !client.IsConflict(err) {
		t.Errorf("stale Update: err = %v, want a 409", err)
	}

	l, err := c.List(ctx, "eservices")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if l.Kind != "EServiceList" || len(l.Items) != 1 || l.Revision != fake.Revision() {
		t.Errorf("List = %+v (fake revision %d)", l, fake.Revision())
	}

	if err := c.Delete(ctx, "EService", "nginx"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := c.Delete(ctx, "EService", "nginx"); !client.IsNotFound(err) {
		t.Errorf("second Delete: err = %v, want a 404", err)
	}
	if _, err := c.Get(ctx, "EService", "nginx"); !client.IsNotFound(err) {
		t.Errorf("Get after delete: err = %v, want a 404", err)
	}
	rev, err := c.Revision(ctx)
	if err != nil || rev != fake.Revision() {
		t.Errorf("Revision = %d, %v; want %d", rev, err, fake.Revision())
	}
}

func TestBadKindIsRefusedLocally(t *testing.T) {
	fake, c := newPair(t)
	if _, err := c.List(context.Background(), "widgets"); err == nil {
		t.Fatal("List(widgets) succeeded")
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests sent for an unknown kind", n)
	}
}

func TestAPIErrorCarriesObjectAndField(t *testing.T) {
	_, c := newPair(t)
	_, err := c.Create(context.Background(), service("nginx", "tokyo", 70000))
	var ae *client.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want *client.APIError", err, err)
	}
	if ae.StatusCode != 422 || ae.Object != "EService/nginx" || ae.Field != "port" {
		t.Errorf("APIError = %+v", ae)
	}
	if want := "EService/nginx: port: must be 1-65535, got 70000"; ae.Error() != want {
		t.Errorf("Error() = %q, want %q", ae.Error(), want)
	}
}

func TestAPIErrorText(t *testing.T) {
	tests := []struct {
		e    client.APIError
		want string
	}{
		{client.APIError{StatusCode: 404}, "not found"},
		{client.APIError{StatusCode: 599}, "HTTP status 599"},
		{client.APIError{StatusCode: 400, Message: "bad", Field: "ip"}, "ip: bad"},
		{client.APIError{StatusCode: 400, Message: "bad", Object: "EServer/a", Field: "ip"}, "EServer/a: ip: bad"},
		{client.APIError{StatusCode: 400, Message: "EServer/a: ip is bad", Object: "EServer/a", Field: "ip"}, "EServer/a: ip is bad"},
		{client.APIError{StatusCode: 400, Message: "EServer/a: ip: bad", Object: "EServer/a", Field: "ip"}, "EServer/a: ip: bad"},
		// The server joins several problems; only the first lacks the object.
		{client.APIError{StatusCode: 422, Message: "VP CIDR overlaps; EGateway/g: eSiteName: taken", Object: "EGateway/g", Field: "virtualPresenceIPcidr"},
			"EGateway/g: virtualPresenceIPcidr: VP CIDR overlaps; EGateway/g: eSiteName: taken"},
		{client.APIError{StatusCode: 404, Message: "no snapshot", Object: "EGateway/g"}, "EGateway/g: no snapshot"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestApplyIsIdempotentAndAllOrNothing(t *testing.T) {
	ctx := context.Background()
	fake, c := newPair(t)
	objs := []api.Object{site("tokyo"), service("nginx", "tokyo", 8080)}
	r, err := c.Apply(ctx, objs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(r.Results) != 2 || r.Results[0].Action != "created" || r.Results[1].Action != "created" {
		t.Fatalf("first apply results = %+v", r.Results)
	}
	rev := r.Revision
	r, err = c.Apply(ctx, objs)
	if err != nil {
		t.Fatal(err)
	}
	if r.Revision != rev || r.Results[0].Action != "unchanged" || r.Results[1].Action != "unchanged" {
		t.Errorf("second apply = %+v, want unchanged at revision %d", r, rev)
	}
	objs[1].(*api.EService).Port = 8081
	r, err = c.Apply(ctx, objs)
	if err != nil {
		t.Fatal(err)
	}
	if r.Results[1].Action != "configured" || r.Revision != rev+1 {
		t.Errorf("third apply = %+v", r)
	}

	// A batch with one bad object stores nothing.
	before := fake.Revision()
	_, err = c.Apply(ctx, []api.Object{site("osaka"), service("bad", "osaka", 0)})
	if err == nil {
		t.Fatal("half-valid batch applied")
	}
	if fake.Revision() != before || fake.Object(api.KindESite, "osaka") != nil {
		t.Error("half-valid batch stored something")
	}
}

func TestApplySetsKind(t *testing.T) {
	// An object whose TypeMeta.Kind is empty still goes out with its kind.
	fake, c := newPair(t)
	if _, err := c.Apply(context.Background(), []api.Object{&api.ESite{Metadata: api.ObjectMeta{Name: "x"}}}); err != nil {
		t.Fatal(err)
	}
	if fake.Object(api.KindESite, "x") == nil {
		t.Error("ESite/x not stored")
	}
}

func TestDeleteObjects(t *testing.T) {
	ctx := context.Background()
	fake, c := newPair(t)
	fake.Seed(t, site("a"), site("b"))
	if _, err := c.DeleteObjects(ctx, []api.Object{site("a"), site("missing")}); !client.IsNotFound(err) {
		t.Fatalf("err = %v, want 404", err)
	}
	if fake.Object(api.KindESite, "a") == nil {
		t.Fatal("a failed batch delete removed ESite/a")
	}
	r, err := c.DeleteObjects(ctx, []api.Object{site("a"), site("b")})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 2 || r.Results[1].Action != "deleted" || r.Results[1].Name != "b" {
		t.Errorf("results = %+v", r.Results)
	}
}

func TestSnapshotAndEdgeConfig(t *testing.T) {
	ctx := context.Background()
	fake, c := newPair(t)
	fake.Seed(t, site("tokyo"), &api.EGateway{TypeMeta: api.TypeMeta{Kind: api.KindEGateway}, Metadata: api.ObjectMeta{Name: "gw1"},
		VirtualPresenceIPcidr: "192.168.0.0/24", ESiteName: "tokyo"})
	s, err := c.Snapshot(ctx, "gw1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Gateway != "gw1" || s.VPCIDR.String() != "192.168.0.0/24" || s.VPAddr.String() != "192.168.0.1" {
		t.Errorf("snapshot = %+v", s)
	}
	y, err := c.EdgeConfig(ctx, "gw1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(y), "\nname: gw1\nsite: tokyo\n") {
		t.Errorf("edge config = %q", y)
	}
	if _, err := c.EdgeConfig(ctx, "nope"); !client.IsNotFound(err) {
		t.Errorf("EdgeConfig(nope) err = %v", err)
	}
}

// TestEdgeConfigShapes checks the edge config is YAML whichever way the server sends it.
func TestEdgeConfigShapes(t *testing.T) {
	tests := []struct {
		ctype, body, want string
	}{
		{"application/yaml", "name: a\nsite: s", "name: a\nsite: s\n"},
		{"application/json", `"name: a\n"`, "name: a\n"},
		{"application/json", `{"name":"a","cloud":{"syncPort":7443}}`, "cloud:\n  syncPort: 7443\nname: a\n"},
	}
	for _, tt := range tests {
		dir, err := os.MkdirTemp("", "egwc")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		sock := filepath.Join(dir, "s")
		srv := serveFunc(t, sock, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", tt.ctype)
			w.Write([]byte(tt.body))
		})
		c, _ := client.New(sock, "")
		got, err := c.EdgeConfig(context.Background(), "a")
		if err != nil || string(got) != tt.want {
			t.Errorf("%s %s: got %q, %v; want %q", tt.ctype, tt.body, got, err, tt.want)
		}
		srv.Close()
	}
}

func TestStatusAndExplain(t *testing.T) {
	ctx := context.Background()
	fake, c := newPair(t)
	fake.SetStatus(map[string]any{"revision": 7, "gateways": []map[string]any{{
		"name": "gw1", "site": "tokyo", "connected": true, "lastHandshake": "2026-01-02T03:04:05Z",
		"rxBytes": 100, "txBytes": 200, "appliedRevision": 6, "latestRevision": 7,
		"leases": []map[string]any{{"pool": "presence", "used": 3, "size": 127}},
		"drops":  map[string]int{"denied": 4},
	}}})
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Gateways) != 1 {
		t.Fatalf("status = %+v", st)
	}
	g := st.Gateways[0]
	if !g.Connected || g.RxBytes != 100 || g.AppliedRevision != 6 || g.Drops["denied"] != 4 || g.Leases[0].Size != 127 || g.LastHandshake.Year() != 2026 {
		t.Errorf("gateway status = %+v", g)
	}
	if !strings.Contains(string(st.Raw), `"rxBytes":100`) {
		t.Errorf("raw = %s", st.Raw)
	}

	fake.SetExplain(func(site, src, to string) (int, any) {
		if to == "nobody" {
			return 404, "no service or VIP named nobody at " + site
		}
		return 200, map[string]any{"verdict": "allow", "reason": "EPolicy/p1 allows EServer/c1 (" + src + ")", "service": to}
	})
	e, err := c.Explain(ctx, "tokyo", "10.0.0.20", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	if !e.Allowed || e.Service != "nginx" || !strings.Contains(e.Reason, "10.0.0.20") {
		t.Errorf("explain = %+v", e)
	}
	if _, err := c.Explain(ctx, "tokyo", "10.0.0.20", "nobody"); !client.IsNotFound(err) || !strings.Contains(err.Error(), "no service") {
		t.Errorf("explain nobody: %v", err)
	}
	if _, err := c.Explain(ctx, "", "10.0.0.20", "x"); err == nil {
		t.Error("explain without a site succeeded")
	}
}

func TestBearerTokenOverTCP(t *testing.T) {
	fake := clienttest.New(t)
	fake.Token = "s3cret"
	url := fake.ServeTCP(t)
	bad, _ := client.New(url, "wrong")
	if _, err := bad.Revision(context.Background()); !hasCode(err, 401) {
		t.Errorf("wrong token: err = %v, want 401", err)
	}
	good, _ := client.New(url, "s3cret")
	if _, err := good.Revision(context.Background()); err != nil {
		t.Errorf("right token: %v", err)
	}
}

func TestTooLargeBody(t *testing.T) {
	_, c := newPair(t)
	big := site("big")
	big.Metadata.Annotations = map[string]string{"x": strings.Repeat("a", controlplane.MaxBodySize)}
	if _, err := c.Create(context.Background(), big); !hasCode(err, 413) {
		t.Errorf("err = %v, want 413", err)
	}
}

func TestNonJSONErrorAndUnreachable(t *testing.T) {
	dir, err := os.MkdirTemp("", "egwc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	srv := serveFunc(t, sock, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream exploded\nstack...", http.StatusBadGateway)
	})
	c, _ := client.New(sock, "")
	_, err = c.Revision(context.Background())
	if !hasCode(err, 502) || err.Error() != "upstream exploded" {
		t.Errorf("err = %v", err)
	}
	srv.Close()
	os.Remove(sock)
	_, err = c.Revision(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach the EGW API at "+sock) {
		t.Errorf("unreachable: err = %v", err)
	}
}

func hasCode(err error, code int) bool {
	var ae *client.APIError
	return errors.As(err, &ae) && ae.StatusCode == code
}

func TestAnswerOfAnotherKindIsRefused(t *testing.T) {
	dir, err := os.MkdirTemp("", "egwc")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "s")
	serveFunc(t, sock, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"kind":"EServer","metadata":{"name":"nginx"},"ip":"10.0.0.1"}`))
	})
	c, _ := client.New(sock, "")
	if _, err := c.Get(context.Background(), "svc", "nginx"); err == nil || !strings.Contains(err.Error(), "the answer is an object of kind EServer, not EService") {
		t.Errorf("err = %v", err)
	}
}
