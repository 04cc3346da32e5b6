package main

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/internal/etcdmember"
)

func TestStoreConfigAndFlags(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.yaml")
	os.WriteFile(conf, []byte(`store:
  backend: etcd
  etcd:
    endpoints: [http://10.0.0.1:2379, http://10.0.0.2:2379]
    prefix: /prod/egw/
    dialTimeout: 2s
`), 0o600)
	cmd := newCommand(io.Discard)
	cmd.ParseFlags([]string{"--config", conf})
	c, _, err := loadConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.storeConfig()
	if err != nil || sc.Backend != "etcd" || strings.Join(sc.Etcd.Endpoints, " ") != "http://10.0.0.1:2379 http://10.0.0.2:2379" ||
		sc.Etcd.Prefix != "/prod/egw/" || sc.Etcd.DialTimeout != 2*time.Second {
		t.Fatalf("store config %+v %v", sc, err)
	}
	// The flags override the file; --etcd-endpoints is comma-separated.
	cmd = newCommand(io.Discard)
	cmd.ParseFlags([]string{"--config", conf, "--store-backend", "bbolt", "--etcd-endpoints", "http://127.0.0.1:2379, http://127.0.0.1:22379"})
	c, _, _ = loadConfig(cmd.Flags())
	if sc, err = c.storeConfig(); err != nil || sc.Backend != "bbolt" || strings.Join(sc.Etcd.Endpoints, " ") != "http://127.0.0.1:2379 http://127.0.0.1:22379" {
		t.Fatalf("flags: %+v %v", sc, err)
	}
	// The default is bbolt.
	cmd = newCommand(io.Discard)
	cmd.ParseFlags([]string{"--config", filepath.Join(dir, "none.yaml")})
	os.WriteFile(filepath.Join(dir, "none.yaml"), nil, 0o600)
	c, _, _ = loadConfig(cmd.Flags())
	if sc, err = c.storeConfig(); err != nil || sc.Backend != "bbolt" || sc.Etcd.Prefix != "/egw/" || sc.Etcd.DialTimeout != 5*time.Second {
		t.Fatalf("defaults: %+v %v", sc, err)
	}

	for _, tc := range []struct{ yaml, flag, want string }{
		{"store: {backend: mysql}", "", `store.backend "mysql": want bbolt or etcd`},
		{"store: {backend: etcd}", "", "store.etcd.endpoints: empty"},
		{"", "--store-backend=etcd", "store.etcd.endpoints: empty"},
		{"store: {backend: etcd, etcd: {endpoints: [127.0.0.1:2379]}}", "", `"127.0.0.1:2379": want a client URL http://host:port`},
		{"store: {backend: etcd, etcd: {endpoints: [http://127.0.0.1]}}", "", "has no port"},
		{"store: {backend: etcd, etcd: {endpoints: [http://a:1, https://b:2]}}", "", "mixes http:// and https://"},
		{"store: {backend: etcd, etcd: {endpoints: [http://a:1], prefix: egw}}", "", `store.etcd.prefix "egw": want a key prefix that starts and ends with "/"`},
		{"store: {backend: etcd, etcd: {endpoints: [https://a:1], tls: {cert: c.pem}}}", "", "store.etcd.tls.cert and store.etcd.tls.key go together"},
		{"store: {backend: etcd, etcd: {endpoints: [http://a:1], tls: {ca: ca.pem}}}", "", "use https://"},
		{"store: {backend: etcd, etcd: {endpoints: [http://a:1], dialTimeout: 1ms}}", "", "store.etcd.dialTimeout 1ms: want 100ms to 5m"},
	} {
		os.WriteFile(conf, []byte(tc.yaml), 0o600)
		args := []string{"--config", conf}
		if tc.flag != "" {
			args = append(args, tc.flag)
		}
		cmd := newCommand(io.Discard)
		cmd.ParseFlags(args)
		c, _, err := loadConfig(cmd.Flags())
		if err == nil {
			_, err = c.storeConfig()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: err = %v, want %q", tc.yaml, tc.flag, err, tc.want)
		}
	}
}

// TestTwoReplicasOnEtcd runs two control-plane-only cloud gateways on one etcd: a write
// through one is read through the other, and the metrics say so.
func TestTwoReplicasOnEtcd(t *testing.T) {
	m, err := etcdmember.Start(etcdmember.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "cloudgateway.yaml")
	os.WriteFile(conf, []byte("name: hub\nsite: central\nendpoint: 198.51.100.7:51820\nenrollListen: \"\"\n"), 0o600) // two replicas on one host: one enrollment port
	ports, err := etcdmember.FreeURLs(1)
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := strings.TrimPrefix(ports[0], "http://")
	var socks []string
	var stops []func() error
	for i, metrics := range []string{metricsAddr, ""} {
		sock := filepath.Join(dir, "r"+string(rune('1'+i)), "api.sock")
		t.Setenv("EGW_METRICS_LISTEN", metrics)
		stop, logs := start(t, "--config", conf, "--state-dir", filepath.Join(dir, "state"+string(rune('1'+i))), "--api-socket", sock,
			"--dataplane=false", "--store-backend", "etcd", "--etcd-endpoints", m.ClientURL)
		waitSocket(t, sock, logs)
		socks = append(socks, sock)
		stops = append(stops, stop)
	}
	c1, c2 := unixClient(socks[0]), unixClient(socks[1])
	resp, err := c1.Post("http://egw/v1/apply", "application/json", bytes.NewReader([]byte(`{"kind":"ESite","metadata":{"name":"branch"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("apply through replica 1: %d", resp.StatusCode)
	}
	var site struct {
		Metadata struct {
			ResourceVersion int64 `json:"resourceVersion,string"`
		}
	}
	if code := get(t, c2, "/v1/esites/branch", &site); code != 200 || site.Metadata.ResourceVersion == 0 {
		t.Fatalf("read through replica 2: %d %+v", code, site)
	}
	var r1, r2 struct{ Revision int64 }
	get(t, c1, "/v1/revision", &r1)
	get(t, c2, "/v1/revision", &r2)
	if r1.Revision != r2.Revision || r1.Revision < 2 {
		t.Fatalf("revisions %d and %d", r1.Revision, r2.Revision)
	}
	resp, err = http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`egw_controlplane_store_up{backend="etcd"} 1`, "egw_controlplane_revision ", `egw_controlplane_writes_total{result="ok"}`,
		"egw_controlplane_compile_seconds_bucket", "egw_controlplane_sync_waiters 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
	for _, stop := range stops {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state1", controlplane.DBFile)); !os.IsNotExist(err) {
		t.Fatalf("an etcd replica made a bbolt file: %v", err)
	}
}
