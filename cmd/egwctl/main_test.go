package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client/clienttest"
)

// testNow is the clock of every test run.
var testNow = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// result is what one egwctl run produced.
type result struct {
	code           int
	stdout, stderr string
}

// env is a test environment: a fake API on a unix socket and the EGW_* variables.
type env struct {
	t    *testing.T
	fake *clienttest.Server
	vars map[string]string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	fake := clienttest.New(t)
	sock := fake.ServeUnix(t)
	return &env{t: t, fake: fake, vars: map[string]string{"EGW_SOCKET": sock}}
}

// run runs egwctl with args and stdin.
func (e *env) runIn(stdin string, args ...string) result {
	e.t.Helper()
	var out, errOut bytes.Buffer
	a := &app{in: strings.NewReader(stdin), out: &out, errOut: &errOut, now: func() time.Time { return testNow }}
	code := execute(a, args, func(k string) string { return e.vars[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runIn("", args...)
}

// ok runs egwctl and fails the test unless it succeeds with an empty stderr.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 || r.stderr != "" {
		e.t.Fatalf("egwctl %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), r.code, r.stderr, r.stdout)
	}
	return r.stdout
}

// fails runs egwctl, expects exit 1 with exactly one "error: ..." line containing want,
// and an empty stdout.
func (e *env) fails(want string, args ...string) {
	e.t.Helper()
	r := e.run(args...)
	checkFailure(e.t, r, want, args)
}

func checkFailure(t *testing.T, r result, want string, args []string) {
	t.Helper()
	if r.code != 1 {
		t.Errorf("egwctl %s: exit %d, want 1 (stderr %q)", strings.Join(args, " "), r.code, r.stderr)
	}
	if !strings.HasPrefix(r.stderr, "error: ") || strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("egwctl %s: stderr %q, want one line \"error: ...\"", strings.Join(args, " "), r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("egwctl %s: stderr %q, want it to contain %q", strings.Join(args, " "), r.stderr, want)
	}
	if r.stdout != "" {
		t.Errorf("egwctl %s: stdout %q on failure", strings.Join(args, " "), r.stdout)
	}
}

// rows splits a table into its lines, each as whitespace-separated fields.
func rows(table string) [][]string {
	var out [][]string
	for _, l := range strings.Split(strings.TrimRight(table, "\n"), "\n") {
		out = append(out, strings.Fields(l))
	}
	return out
}

func TestApplySeedSamples(t *testing.T) {
	e := newEnv(t)
	out := e.ok("apply", "-f", "testdata/seed.json")
	want := `ESite/TokyoChibaSite1 created
EGateway/TokyoChibaGateway created
VirtualPresence/vp1 created
EService/TykyoChibaNginx created
EServer/Server1 created
EPolicy/Policy1 created
ServiceExpose/TykyoChibaNginx created
`
	if out != want {
		t.Errorf("apply output:\n%s\nwant:\n%s", out, want)
	}
	rev := e.fake.Revision()
	out = e.ok("apply", "-f", "testdata/seed.json")
	if strings.Count(out, " unchanged\n") != 7 || e.fake.Revision() != rev {
		t.Errorf("re-apply output %q, revision %d -> %d", out, rev, e.fake.Revision())
	}

	// The seed's EServer has no metadata.name; it is named by eServerName.
	if e.fake.Object(api.KindEServer, "Server1") == nil {
		t.Error("EServer/Server1 not stored")
	}

	got := rows(e.ok("get", "virtualpresences"))
	wantRows := [][]string{
		{"NAME", "SERVICE", "SITE", "GATEWAY", "VIP", "CONDITIONS"},
		{"vp1", "TykyoChibaNginx", "TokyoChibaSite1", "TokyoChibaGateway", "192.168.0.10", "OK"},
	}
	if !equalRows(got, wantRows) {
		t.Errorf("get virtualpresences = %q, want %q", got, wantRows)
	}
}

func TestApplyBrokenSampleNamesFileLineColumn(t *testing.T) {
	e := newEnv(t)
	r := e.run("apply", "-f", "testdata/seed-broken.json")
	checkFailure(t, r, "testdata/seed-broken.json:", []string{"apply"})
	if !regexp.MustCompile(`seed-broken\.json:4[0-9]:[0-9]+`).MatchString(r.stderr) {
		t.Errorf("stderr %q does not name line and column", r.stderr)
	}
	if len(e.fake.Requests()) != 0 {
		t.Errorf("requests sent for a broken file: %v", e.fake.Requests())
	}
}

func TestApplyStdinDirAndAllOrNothing(t *testing.T) {
	e := newEnv(t)
	out := e.ok("apply", "-f", "testdata/seed")
	if out != "ESite/OsakaSite created\nEServer/client2 created\nEPolicy/osaka-all created\n" {
		t.Errorf("apply dir output %q", out)
	}
	r := e.runIn(`{"kind":"ESite","apiVersion":"v1","metadata":{"name":"kyoto"}}`, "apply", "-f", "-")
	if r.code != 0 || r.stdout != "ESite/kyoto created\n" {
		t.Errorf("apply stdin: %+v", r)
	}

	// One invalid object: nothing of the batch is stored, and the server's object and
	// field are on the error line.
	bad := `[{"kind":"ESite","apiVersion":"v1","metadata":{"name":"nara"}},
{"kind":"EService","apiVersion":"v1","metadata":{"name":"web"},"protocol":"TCP","port":0,"ip":"10.0.0.1","eSiteName":"nara"}]`
	before := e.fake.Revision()
	r = e.runIn(bad, "apply", "-f", "-")
	checkFailure(t, r, "error: EService/web: port", []string{"apply", "-f", "-"})
	if e.fake.Revision() != before || e.fake.Object(api.KindESite, "nara") != nil {
		t.Error("a refused batch stored something")
	}

	e.fails("no input", "apply")
	e.fails("testdata/nope.json", "apply", "-f", "testdata/nope.json")
}

func TestGetFormats(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", "testdata/seed.json")

	// Table columns per kind; a dangling reference shows as a failing condition.
	tests := []struct {
		kind string
		want [][]string
	}{
		{"svc", [][]string{
			{"NAME", "SITE", "PROTOCOL", "IP", "PORT", "DOMAIN", "OVERLAY-IP", "CONDITIONS"},
			{"TykyoChibaNginx", "TokyoChibaSite1", "TCP", "10.0.0.10", "8080", "EServiceNginx", "100.64.1.2", "OK"},
		}},
		{"EServer", [][]string{
			{"NAME", "SITE", "IP", "CONDITIONS"},
			{"Server1", "TokyoChibaSite1", "10.0.0.20", "OK"},
		}},
		{"serviceexposes", [][]string{
			{"NAME", "SERVICE", "DNS", "SITES", "POLICIES", "CONDITIONS"},
			{"TykyoChibaNginx", "TykyoChibaNginx", "url1.test.com", "TokyoChibaSite1", "Policy1,Policy2", "ResolvedRefs=False(NotFound)"},
		}},
		{"gw", [][]string{
			{"NAME", "SITE", "VP-CIDR", "OVERLAY-PREFIX", "ENDPOINT", "PUBLIC-KEY", "CONDITIONS"},
			{"TokyoChibaGateway", "TokyoChibaSite1", "192.168.0.0/24", "100.64.1.0/24", "-", "-", "OK"},
		}},
		{"policies", [][]string{
			{"NAME", "ALLOWED-SERVERS", "ALLOWED-SITES", "CONDITIONS"},
			{"Policy1", "Server1", "-", "OK"},
		}},
		{"esite", [][]string{
			{"NAME", "CONDITIONS"},
			{"TokyoChibaSite1", "-"},
		}},
	}
	for _, tt := range tests {
		if got := rows(e.ok("get", tt.kind)); !equalRows(got, tt.want) {
			t.Errorf("get %s = %q, want %q", tt.kind, got, tt.want)
		}
	}

	// One object, by KIND NAME and KIND/NAME.
	if got := rows(e.ok("get", "EService/TykyoChibaNginx")); len(got) != 2 || got[1][0] != "TykyoChibaNginx" {
		t.Errorf("get EService/TykyoChibaNginx = %q", got)
	}

	// JSON: a single object decodes back; a list has the API's list shape.
	var svc api.EService
	if err := json.Unmarshal([]byte(e.ok("get", "svc", "TykyoChibaNginx", "-o", "json")), &svc); err != nil {
		t.Fatal(err)
	}
	if svc.Kind != "EService" || svc.Port != 8080 || svc.Status.Conditions[0].Type != "ResolvedRefs" {
		t.Errorf("get -o json = %+v", svc)
	}
	var list struct {
		Kind     string            `json:"kind"`
		Revision int64             `json:"revision"`
		Items    []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal([]byte(e.ok("get", "vp", "-o", "json")), &list); err != nil {
		t.Fatal(err)
	}
	if list.Kind != "VirtualPresenceList" || list.Revision != e.fake.Revision() || len(list.Items) != 1 {
		t.Errorf("get vp -o json = %+v", list)
	}

	// YAML decodes to the same object.
	var fromYAML api.EService
	if err := yaml.Unmarshal([]byte(e.ok("get", "svc", "TykyoChibaNginx", "-o", "yaml")), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !api.Equal(&svc, &fromYAML) {
		t.Errorf("yaml %+v differs from json %+v", fromYAML, svc)
	}
	if y := e.ok("get", "esites", "-o", "yaml"); !strings.HasPrefix(y, "items:\n") || !strings.Contains(y, "kind: ESiteList\n") {
		t.Errorf("get esites -o yaml = %q", y)
	}

	// Empty list: a note on stderr, nothing on stdout, success.
	e2 := newEnv(t)
	if r := e2.run("get", "eservers"); r.code != 0 || r.stdout != "" || r.stderr != "No EServer objects found.\n" {
		t.Errorf("get eservers on an empty store: %+v", r)
	}
	if out := e2.ok("get", "eservers", "-o", "json"); !strings.Contains(out, `"items": []`) {
		t.Errorf("empty list as json = %q", out)
	}

	e.fails(`unknown kind "widgets"`, "get", "widgets")
	e.fails(`unknown output format "xml"`, "get", "svc", "-o", "xml")
	e.fails(`EService/nope: not found`, "get", "svc", "nope")
	e.fails("accepts between 1 and 2 arg(s)", "get")
}

func TestDelete(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", "testdata/seed.json")
	if out := e.ok("delete", "vp", "vp1"); out != "VirtualPresence/vp1 deleted\n" {
		t.Errorf("delete vp vp1 = %q", out)
	}
	e.fails("VirtualPresence/vp1: not found", "delete", "vp", "vp1")
	if out := e.ok("delete", "policy/Policy1"); out != "EPolicy/Policy1 deleted\n" {
		t.Errorf("delete policy/Policy1 = %q", out)
	}
	e.ok("apply", "-f", "testdata/seed.json")
	e.ok("delete", "vp", "vp1")

	// Several names: all or nothing.
	e.fails("EServer/ghost: not found", "delete", "server", "Server1", "ghost")
	if e.fake.Object(api.KindEServer, "Server1") == nil {
		t.Fatal("a failed batch delete removed EServer/Server1")
	}
	// The file names vp1, which is gone: nothing is deleted.
	e.fails("VirtualPresence/vp1: not found", "delete", "-f", "testdata/seed.json")
	if e.fake.Object(api.KindEService, "TykyoChibaNginx") == nil {
		t.Fatal("a failed delete -f removed EService/TykyoChibaNginx")
	}
	e.ok("apply", "-f", "testdata/seed.json")
	if out := e.ok("delete", "-f", "testdata/seed.json"); strings.Count(out, " deleted\n") != 7 || !strings.Contains(out, "EServer/Server1 deleted\n") {
		t.Errorf("delete -f = %q", out)
	}
}

func TestDeleteFile(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", "testdata/seed")
	out := e.ok("delete", "-f", "testdata/seed")
	if out != "ESite/OsakaSite deleted\nEServer/client2 deleted\nEPolicy/osaka-all deleted\n" {
		t.Errorf("delete -f = %q", out)
	}
	if e.fake.Object(api.KindESite, "OsakaSite") != nil {
		t.Error("ESite/OsakaSite still stored")
	}
	e.fails("give either KIND NAME or -f FILE", "delete", "svc", "x", "-f", "testdata/seed")
	e.fails("give KIND NAME", "delete", "svc")
}

func TestDescribe(t *testing.T) {
	e := newEnv(t)
	e.ok("apply", "-f", "testdata/seed.json")
	out := e.ok("describe", "eservice", "TykyoChibaNginx")
	for _, want := range []string{
		"Kind:", "EService\n",
		"Name:", "TykyoChibaNginx\n",
		"Protocol:", "TCP\n",
		"Port:", "8080\n",
		"Domain name:", "EServiceNginx\n",
		"Conditions:\n  TYPE",
		"ResolvedRefs   True",
		"Virtual presences:\n  NAME",
		"vp1    TykyoChibaNginx",
		"192.168.0.10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe output lacks %q:\n%s", want, out)
		}
	}
	out = e.ok("describe", "expose", "TykyoChibaNginx")
	if !strings.Contains(out, `ResolvedRefs   False    NotFound   EPolicy "Policy2" not found`) {
		t.Errorf("describe expose does not show the dangling policy:\n%s", out)
	}
	out = e.ok("describe", "gw", "TokyoChibaGateway")
	if !strings.Contains(out, "Overlay prefix:") || !strings.Contains(out, "100.64.1.0/24") {
		t.Errorf("describe gw lacks the overlay prefix:\n%s", out)
	}
	e.fails("describe needs a name", "describe", "svc")
	e.fails("not found", "describe", "svc", "nope")
}

func TestFriendlyVerbs(t *testing.T) {
	e := newEnv(t)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"site", "add", "tokyo"}, "ESite/tokyo created\n"},
		{[]string{"site", "add", "osaka"}, "ESite/osaka created\n"},
		{[]string{"service", "add", "nginx", "--site", "tokyo", "--ip", "10.0.0.10", "--port", "8080", "--protocol", "tcp", "--domain", "nginx"}, "EService/nginx created\n"},
		{[]string{"server", "add", "client1", "--site", "osaka", "--ip", "10.0.0.20"}, "EServer/client1 created\n"},
		{[]string{"policy", "add", "web", "--allow-server", "client1", "--allow-server", "c2,c3", "--allow-site", "tokyo"}, "EPolicy/web created\n"},
		{[]string{"expose", "nginx", "--dns", "url1.test.com", "--site", "tokyo", "--site", "osaka", "--policy", "web"}, "ServiceExpose/nginx created\n"},
	}
	for _, s := range steps {
		if out := e.ok(s.args...); out != s.want {
			t.Errorf("egwctl %s = %q, want %q", strings.Join(s.args, " "), out, s.want)
		}
	}
	svc := e.fake.Object(api.KindEService, "nginx").(*api.EService)
	if svc.Protocol != "TCP" || svc.Port != 8080 || svc.IP != "10.0.0.10" || svc.DomainName != "nginx" || svc.ESiteName != "tokyo" {
		t.Errorf("stored service = %+v", svc)
	}
	pol := e.fake.Object(api.KindEPolicy, "web").(*api.EPolicy)
	if strings.Join(pol.AllowedServers, " ") != "client1 c2 c3" || strings.Join(pol.AllowedSites, " ") != "tokyo" {
		t.Errorf("stored policy = %+v", pol)
	}
	exp := e.fake.Object(api.KindServiceExpose, "nginx").(*api.ServiceExpose)
	if exp.EServiceName != "nginx" || exp.DNSName != "url1.test.com" || strings.Join(exp.ESites, ",") != "tokyo,osaka" || strings.Join(exp.EPolicys, ",") != "web" {
		t.Errorf("stored expose = %+v", exp)
	}

	// expose --name, and the VIPs the control plane allocated are listed.
	e.fake.Seed(t, &api.VirtualPresence{TypeMeta: api.TypeMeta{Kind: api.KindVirtualPresence}, Metadata: api.ObjectMeta{Name: "nginx-kyoto"},
		VirtualIP: "192.168.1.10", EServiceName: "nginx", ESiteName: "kyoto"})
	out := e.ok("expose", "nginx", "--site", "kyoto", "--name", "nginx2")
	if got := rows(out); len(got) != 3 || got[0][0] != "ServiceExpose/nginx2" || got[2][0] != "nginx-kyoto" || got[2][4] != "192.168.1.10" {
		t.Errorf("expose --name output = %q", got)
	}

	e.fails("ESite/tokyo: already exists", "site", "add", "tokyo")
	e.fails(`required flag(s) "ip", "port" not set`, "service", "add", "x", "--site", "tokyo")
	e.fails("EService/x: protocol", "service", "add", "x", "--site", "tokyo", "--ip", "10.0.0.1", "--port", "80", "--protocol", "SCTP")
	e.fails(`invalid argument "70000" for "--port"`, "service", "add", "x", "--site", "tokyo", "--ip", "10.0.0.1", "--port", "70000")
	e.fails(`required flag(s) "site" not set`, "expose", "nginx")
	e.fails("accepts 1 arg(s), received 0", "site", "add")
}

const (
	testKey  = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
	testKey2 = "uXf5DPNLbzFDzwE1eIgTBmr8kpNcYtXhSqTBzCfTNVI="
)

func TestGatewayAdd(t *testing.T) {
	e := newEnv(t)
	e.ok("site", "add", "site-a")
	r := e.run("gateway", "add", "edge-a", "--site", "site-a", "--vp-cidr", "192.168.0.0/24", "--public-key", testKey, "--endpoint", "198.51.100.7:51820")
	if r.code != 0 {
		t.Fatalf("gateway add: %+v", r)
	}
	// stdout is exactly the edge config; the note goes to stderr.
	if !strings.HasPrefix(r.stdout, "# /etc/egw/edgegateway.yaml for EGateway edge-a (site site-a)") || !strings.Contains(r.stdout, "\nname: edge-a\nsite: site-a\n") ||
		!strings.Contains(r.stdout, "\nvpCIDR: 192.168.0.0/24\n") || r.stderr != "EGateway/edge-a created\n" {
		t.Errorf("gateway add: stdout %q stderr %q", r.stdout, r.stderr)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &cfg); err != nil || cfg["name"] != "edge-a" {
		t.Errorf("edge config does not parse as YAML: %v %v", cfg, err)
	}
	g := e.fake.Object(api.KindEGateway, "edge-a").(*api.EGateway)
	if g.PublicKey != testKey || g.Endpoint != "198.51.100.7:51820" || g.ESiteName != "site-a" {
		t.Errorf("stored gateway = %+v", g)
	}

	// --output-file writes the config 0600.
	path := filepath.Join(t.TempDir(), "edgegateway.yaml")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := e.ok("gateway", "add", "edge-b", "--site", "site-b", "--vp-cidr", "192.168.0.0/24", "--public-key", testKey2, "--output-file", path)
	if out != "EGateway/edge-b created\nedge config of edge-b written to "+path+"\n" {
		t.Errorf("gateway add --output-file: %q", out)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("edge config mode %v, want 0600", st.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "\nname: edge-b\n") {
		t.Errorf("edge config file = %q", b)
	}

	if out := e.ok("gateway", "config", "edge-a"); !strings.Contains(out, "\nname: edge-a\n") {
		t.Errorf("gateway config = %q", out)
	}
	e.fails("EGateway/edge-a: already exists", "gateway", "add", "edge-a", "--site", "site-a", "--vp-cidr", "192.168.0.0/24", "--public-key", testKey)
	// Without a key, a join token is asked for; this API has no enrollment listener set
	// (lifecycle_test.go sets one).
	if r := e.run("gateway", "add", "edge-c", "--site", "site-c", "--vp-cidr", "192.168.0.0/24"); r.code != 1 || r.stdout != "" ||
		!strings.Contains(r.stderr, "EGateway/edge-c is registered, but no join token was made") {
		t.Errorf("gateway add without a key: %+v", r)
	}
	e.fails("EGateway/nope: not found", "gateway", "config", "nope")
}

func TestVPList(t *testing.T) {
	e := newEnv(t)
	mk := func(name, svc, site, vip string) api.Object {
		return &api.VirtualPresence{TypeMeta: api.TypeMeta{Kind: api.KindVirtualPresence}, Metadata: api.ObjectMeta{Name: name},
			VirtualIP: vip, EServiceName: svc, ESiteName: site}
	}
	e.fake.Seed(t,
		&api.ESite{TypeMeta: api.TypeMeta{Kind: api.KindESite}, Metadata: api.ObjectMeta{Name: "a"}},
		&api.EGateway{TypeMeta: api.TypeMeta{Kind: api.KindEGateway}, Metadata: api.ObjectMeta{Name: "gw-a"}, VirtualPresenceIPcidr: "192.168.0.0/24", ESiteName: "a"},
		mk("web-a", "web", "a", "192.168.0.10"), mk("web-b", "web", "b", "192.168.1.10"), mk("db-a", "db", "a", "192.168.0.11"))
	got := rows(e.ok("vp", "list"))
	want := [][]string{
		{"NAME", "SERVICE", "SITE", "GATEWAY", "VIP", "CONDITIONS"},
		{"db-a", "db", "a", "gw-a", "192.168.0.11", "ResolvedRefs=False(NotFound)"},
		{"web-a", "web", "a", "gw-a", "192.168.0.10", "ResolvedRefs=False(NotFound)"},
		{"web-b", "web", "b", "-", "192.168.1.10", "ResolvedRefs=False(NotFound)"},
	}
	if !equalRows(got, want) {
		t.Errorf("vp list = %q, want %q", got, want)
	}
	if got := rows(e.ok("vp", "list", "--site", "a", "--service", "web")); len(got) != 2 || got[1][0] != "web-a" {
		t.Errorf("vp list --site a --service web = %q", got)
	}
	if r := e.run("vp", "list", "--site", "zzz"); r.code != 0 || r.stdout != "" || r.stderr != "No virtual presences found.\n" {
		t.Errorf("vp list --site zzz: %+v", r)
	}
	var l struct{ Items []api.VirtualPresence }
	if err := json.Unmarshal([]byte(e.ok("vp", "list", "-o", "json", "--service", "db")), &l); err != nil || len(l.Items) != 1 || l.Items[0].VirtualIP != "192.168.0.11" {
		t.Errorf("vp list -o json: %+v %v", l, err)
	}
}

func TestStatus(t *testing.T) {
	e := newEnv(t)
	if out := e.ok("status"); out != "No gateways (revision 0).\n" {
		t.Errorf("status on an empty system = %q", out)
	}
	e.fake.SetStatus(map[string]any{
		"revision": 12,
		"gateways": []map[string]any{
			{"name": "cloud", "site": "cloud", "hub": true, "connected": true, "lastHandshake": testNow.Add(-5 * time.Second),
				"rxBytes": 1536, "txBytes": 3 << 20, "appliedRevision": 12, "latestRevision": 12,
				"leases": []map[string]any{{"pool": "client", "used": 2, "size": 510}, {"pool": "presence", "used": 1, "size": 126}},
				"drops":  map[string]int{}},
			{"name": "edge-a", "site": "site-a", "connected": false, "lastHandshake": testNow.Add(-3*time.Minute - 7*time.Second),
				"rxBytes": 10, "txBytes": 0, "appliedRevision": 9, "latestRevision": 11,
				"drops": map[string]int{"denied": 4, "malformed": 1, "noroute": 0},
				"paths": []map[string]any{
					{"peer": "edge-c", "mode": "relayed", "since": testNow.Add(-2 * time.Minute), "endpoint": "203.0.113.1:51820"},
					{"peer": "edge-b", "mode": "direct", "since": testNow.Add(-45 * time.Second), "endpoint": "198.51.100.9:41641", "rttMs": 2.5}}},
			{"name": "edge-b", "site": "site-b", "appliedRevision": 0},
		},
	})
	got := rows(e.ok("status"))
	want := [][]string{
		{"GATEWAY", "SITE", "ROLE", "CONNECTED", "HANDSHAKE", "RX", "TX", "APPLIED/LATEST", "LEASES", "DROPS"},
		{"cloud", "cloud", "hub", "yes", "-", "-", "-", "12/12", "client", "2/510,", "presence", "1/126", "0"},
		{"edge-a", "site-a", "edge", "no", "3m7s", "10", "B", "0", "B", "9/11", "behind", "-", "denied=4", "malformed=1"},
		{"edge-b", "site-b", "edge", "no", "never", "0", "B", "0", "B", "0/12", "behind", "-", "0"},
		{},
		{"GATEWAY", "PEER", "PATH", "SINCE", "ENDPOINT", "RTT"},
		{"edge-a", "edge-b", "direct", "45s", "198.51.100.9:41641", "2.5", "ms"},
		{"edge-a", "edge-c", "relayed", "2m0s", "203.0.113.1:51820", "-"},
	}
	if !equalRows(got, want) {
		t.Errorf("status =\n%q\nwant\n%q", got, want)
	}
	var v struct {
		Revision int64
		Gateways []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(e.ok("status", "-o", "json")), &v); err != nil || v.Revision != 12 || len(v.Gateways) != 3 {
		t.Errorf("status -o json: %+v %v", v, err)
	}
	if y := e.ok("status", "-o", "yaml"); !strings.Contains(y, "revision: 12\n") {
		t.Errorf("status -o yaml = %q", y)
	}
	e.fails(`unknown output format "wide"`, "status", "-o", "wide")
}

func TestExplain(t *testing.T) {
	e := newEnv(t)
	var asked []string
	e.fake.SetExplain(func(site, src, to string) (int, any) {
		asked = append(asked, site+" "+src+" "+to)
		switch to {
		case "url1.test.com":
			return 200, map[string]any{"allowed": true, "reason": "EPolicy/Policy1 allows EServer/Server1", "service": "nginx",
				"vip": "192.168.0.10", "port": 8080, "protocol": "TCP", "hops": []string{"edge-a", "cloud"},
				"decisions": []map[string]any{{"policy": "Policy1", "server": "Server1", "ip": "10.0.0.20"}}}
		case "192.168.0.11":
			return 200, map[string]any{"allowed": false, "reason": "no policy of ServiceExpose/db allows 10.0.0.99"}
		}
		return 404, "no service, DNS name or VIP " + to + " at site " + site
	})
	out := e.ok("explain", "--site", "a", "--src", "10.0.0.20", "--to", "url1.test.com")
	for _, want := range []string{
		"verdict:    allowed\n",
		"reason:     EPolicy/Policy1 allows EServer/Server1\n",
		"hops:       [\"edge-a\",\"cloud\"]\n",
		"port:       8080\n",
		"service:    nginx\n",
		"decisions:\n  EPolicy/Policy1 allows EServer/Server1 (10.0.0.20)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	if asked[0] != "a 10.0.0.20 url1.test.com" {
		t.Errorf("server was asked %q", asked[0])
	}

	// Denied: exit 0 by default, 2 with --exit-code.
	r := e.run("explain", "--site", "a", "--src", "10.0.0.99", "--to", "192.168.0.11")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "verdict:   denied\nreason:    no policy") {
		t.Errorf("explain denied: %+v", r)
	}
	r = e.run("explain", "--site", "a", "--src", "10.0.0.99", "--to", "192.168.0.11", "--exit-code")
	if r.code != exitDenied || r.stderr != "" || !strings.Contains(r.stdout, "denied") {
		t.Errorf("explain denied --exit-code: %+v", r)
	}
	if out := e.ok("explain", "--site", "a", "--src", "10.0.0.20", "--to", "url1.test.com", "--exit-code"); !strings.Contains(out, "allowed") {
		t.Errorf("explain allowed --exit-code = %q", out)
	}
	var j map[string]any
	if err := json.Unmarshal([]byte(e.ok("explain", "--site", "a", "--src", "10.0.0.20", "--to", "url1.test.com", "-o", "json")), &j); err != nil || j["allowed"] != true {
		t.Errorf("explain -o json: %v %v", j, err)
	}
	e.fails("no service, DNS name or VIP nothing at site a", "explain", "--site", "a", "--src", "10.0.0.20", "--to", "nothing")
	e.fails(`required flag(s) "src", "to" not set`, "explain", "--site", "a")
}

func TestVersion(t *testing.T) {
	e := newEnv(t)
	if out := e.ok("version"); !regexp.MustCompile(`^egwctl \S+ \(go\S* \w+/\w+\)\n$`).MatchString(out) {
		t.Errorf("version = %q", out)
	}
	if len(e.fake.Requests()) != 0 {
		t.Error("version talked to the API")
	}
}

func TestConnectionFlags(t *testing.T) {
	// --socket overrides EGW_SOCKET.
	e := newEnv(t)
	other := clienttest.New(t)
	otherSock := other.ServeUnix(t)
	e.ok("--socket", otherSock, "site", "add", "x")
	if other.Object(api.KindESite, "x") == nil || e.fake.Object(api.KindESite, "x") != nil {
		t.Error("--socket did not select the other server")
	}

	// TCP with a bearer token from a file, by flag and by environment.
	tcp := clienttest.New(t)
	tcp.Token = "t0ken"
	url := tcp.ServeTCP(t)
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "good"), filepath.Join(dir, "bad")
	os.WriteFile(good, []byte("t0ken\n"), 0o600)
	os.WriteFile(bad, []byte("nope\n"), 0o600)
	e.ok("--server", url, "--token-file", good, "site", "add", "y")
	if tcp.Object(api.KindESite, "y") == nil {
		t.Error("site y not created over TCP")
	}
	e.vars["EGW_SERVER"] = url
	e.vars["EGW_TOKEN_FILE"] = good
	if got := rows(e.ok("get", "sites")); len(got) != 2 || got[1][0] != "y" {
		t.Errorf("get sites via EGW_SERVER = %q", got)
	}
	e.fails("missing or wrong bearer token", "--token-file", bad, "get", "sites")
	e.fails("token file: open "+filepath.Join(dir, "missing"), "--token-file", filepath.Join(dir, "missing"), "get", "sites")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o600)
	e.fails("want one non-empty line", "--token-file", empty, "get", "sites")
	e.fails("want http://host:port", "--server", "egw.example:8443", "get", "sites")
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("t0ken\n"), 0o600)
	os.Chmod(open, 0o640)
	e.fails("has mode 0640: it must not be accessible to group or others (chmod 600)", "--token-file", open, "get", "sites")

	// Nothing listening.
	e2 := newEnv(t)
	e2.vars["EGW_SOCKET"] = filepath.Join(t.TempDir(), "none.sock")
	e2.fails("cannot reach the EGW API at "+e2.vars["EGW_SOCKET"], "get", "sites")
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t)
	e.fails(`unknown command "frobnicate" for "egwctl"`, "frobnicate")
	e.fails("unknown flag: --bogus", "get", "svc", "--bogus")
	if out := e.ok("--help"); !strings.Contains(out, "egwctl operates EGW") || !strings.Contains(out, "explain") {
		t.Errorf("--help = %q", out)
	}
	if len(e.fake.Requests()) != 0 {
		t.Errorf("usage errors talked to the API: %v", e.fake.Requests())
	}
}

func TestRunUsesRealStreams(t *testing.T) {
	// run (what main calls) wires the streams and environment as execute does.
	var out, errOut bytes.Buffer
	code := run([]string{"version"}, strings.NewReader(""), &out, &errOut, func(string) string { return "" })
	if code != 0 || !strings.HasPrefix(out.String(), "egwctl ") || errOut.Len() != 0 {
		t.Errorf("run version: %d %q %q", code, out.String(), errOut.String())
	}
	code = run([]string{"get"}, strings.NewReader(""), io.Discard, &errOut, func(string) string { return "" })
	if code != 1 || !strings.HasPrefix(errOut.String(), "error: ") {
		t.Errorf("run get: %d %q", code, errOut.String())
	}
}

func equalRows(a, b [][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if strings.Join(a[i], "\x00") != strings.Join(b[i], "\x00") {
			return false
		}
	}
	return true
}

// --server https:// with the CA from --ca-file or EGW_CA_FILE; without it the test CA is
// unknown (system roots).
func TestHTTPSServer(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	cert, key := clienttest.WriteSelfSigned(t, dir)
	tls := clienttest.New(t)
	tls.Token = "t0ken"
	url := tls.ServeTLS(t, cert, key)
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("t0ken\n"), 0o600)

	e.ok("--server", url, "--token-file", tok, "--ca-file", cert, "site", "add", "a")
	if tls.Object(api.KindESite, "a") == nil {
		t.Error("site a not created over TLS")
	}
	e.fails("certificate signed by unknown authority", "--server", url, "--token-file", tok, "get", "sites")
	e.vars["EGW_SERVER"] = url
	e.vars["EGW_TOKEN_FILE"] = tok
	e.vars["EGW_CA_FILE"] = cert
	if got := rows(e.ok("get", "sites")); len(got) != 2 || got[1][0] != "a" {
		t.Errorf("get sites via EGW_CA_FILE = %q", got)
	}
	e.fails("CA file: open "+filepath.Join(dir, "none"), "--ca-file", filepath.Join(dir, "none"), "get", "sites")
	e.fails("--ca-file "+cert+": it is for --server https://host:port, not http://127.0.0.1:1", "--server", "http://127.0.0.1:1", "get", "sites")

	// The socket ignores a CA file from the environment, as it ignores the token.
	e2 := newEnv(t)
	e2.vars["EGW_CA_FILE"] = cert
	e2.ok("site", "add", "b")
	if e2.fake.Object(api.KindESite, "b") == nil {
		t.Error("site b not created over the socket with EGW_CA_FILE set")
	}
}
