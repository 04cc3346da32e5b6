package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs cloudgateway with args until the returned stop is called.
func start(t *testing.T, args ...string) (stop func() error, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	cmd := newCommand(logs)
	cmd.SetArgs(args)
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	errc := make(chan error, 1)
	go func() { errc <- cmd.ExecuteContext(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Error("cloudgateway did not stop within 10s")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop, logs
}

func unixClient(sock string) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}}}
}

func waitSocket(t *testing.T, sock string, logs *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("API socket %s did not come up; logs:\n%s", sock, logs)
}

func get(t *testing.T, c *http.Client, path string, out any) int {
	t.Helper()
	resp, err := c.Get("http://egw" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func TestControlPlaneOnlyRunAndRestart(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	sock := filepath.Join(dir, "run", "api.sock")
	conf := filepath.Join(dir, "cloudgateway.yaml")
	os.WriteFile(conf, []byte(`name: hub
site: central
vpCIDR: 192.168.9.0/24
endpoint: 198.51.100.7:51820
stateDir: /nonexistent/overridden/by/flag
dataplane: true
`), 0o600)
	args := []string{"--config", conf, "--state-dir", state, "--api-socket", sock, "--dataplane=false"}
	stop, logs := start(t, args...)
	waitSocket(t, sock, logs)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	c := unixClient(sock)
	var gw struct {
		ESiteName string `json:"eSiteName"`
		Endpoint  string `json:"endpoint"`
		Status    struct {
			OverlayPrefix string `json:"overlayPrefix"`
		} `json:"status"`
	}
	if code := get(t, c, "/v1/egateways/hub", &gw); code != 200 || gw.ESiteName != "central" || gw.Status.OverlayPrefix != "100.64.0.0/24" ||
		gw.Endpoint != "198.51.100.7:51820" {
		t.Fatalf("hub gateway: %d %+v", code, gw)
	}
	seed, err := os.ReadFile("../../controlplane/testdata/seed.json")
	if err != nil {
		t.Fatal(err)
	}
	// The seed file holds objects one after another; the API takes them as written.
	resp, err := c.Post("http://egw/v1/apply", "application/json", bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("apply seed: %d", resp.StatusCode)
	}
	var rev struct{ Revision int64 }
	get(t, c, "/v1/revision", &rev)
	if err := stop(); err != nil {
		t.Fatalf("shutdown: %v\n%s", err, logs)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatal("socket left after shutdown")
	}
	if _, err := os.Stat(filepath.Join(state, "egw.db")); err != nil {
		t.Fatal(err)
	}

	// Restart: same revision (the hub is not registered again), objects still there.
	_, logs = start(t, args...)
	waitSocket(t, sock, logs)
	c = unixClient(sock)
	var rev2 struct{ Revision int64 }
	get(t, c, "/v1/revision", &rev2)
	if rev2.Revision != rev.Revision {
		t.Fatalf("revision %d after restart, want %d", rev2.Revision, rev.Revision)
	}
	var vp struct {
		VirtualIP string `json:"virtualIp"`
		Status    struct {
			ESiteName string `json:"eSiteName"`
		} `json:"status"`
	}
	if code := get(t, c, "/v1/virtualpresences/vp1", &vp); code != 200 || vp.VirtualIP != "192.168.0.10" || vp.Status.ESiteName != "TokyoChibaSite1" {
		t.Fatalf("vp1 after restart: %d %+v", code, vp)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "c.yaml")
	os.WriteFile(conf, []byte("name: from-file\nsite: s\noverlayPrefixLen: 24\ndns:\n  zone: file.zone.\n  ttl: 9s\n"), 0o600)
	t.Setenv("EGW_SITE", "from-env")
	t.Setenv("EGW_DNS_ZONE", "env.zone.")
	cmd := newCommand(io.Discard)
	cmd.ParseFlags([]string{"--config", conf, "--api-socket", "/tmp/x.sock"})
	c, used, err := loadConfig(cmd.Flags())
	if err != nil {
		t.Fatal(err)
	}
	if used != conf || c.Name != "from-file" || c.Site != "from-env" || c.OverlayPrefixLen != 24 || c.DNS.Zone != "env.zone." ||
		c.DNS.TTL != 9*time.Second || c.APISocket != "/tmp/x.sock" || !c.Dataplane || c.StateDir != "/var/lib/egw" ||
		c.SyncPort != 7443 || c.PrivateKeyFile != "/var/lib/egw/private.key" || c.TUN.Name != "vp0" {
		t.Fatalf("config %+v", c)
	}
	cp, err := c.controlplaneConfig()
	if err != nil || cp.HubGateway != "from-file" || cp.HubSite != "from-env" || cp.OverlayPrefixLen != 24 || cp.DNSZone != "env.zone." {
		t.Fatalf("control plane config %+v %v", cp, err)
	}
	os.WriteFile(conf, []byte("overlayCIDR: 100.64.0.1/10\n"), 0o600)
	c, _, _ = loadConfig(cmd.Flags())
	if _, err := c.controlplaneConfig(); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("bad overlayCIDR: %v", err)
	}
}

func TestMissingExplicitConfig(t *testing.T) {
	dir := t.TempDir()
	stop, logs := start(t, "--config", filepath.Join(dir, "none.yaml"), "--dataplane=false")
	if err := stop(); err == nil || !strings.Contains(err.Error(), "none.yaml") {
		t.Fatalf("missing explicit config file: %v\n%s", err, logs)
	}
}

func TestLogLevelFlag(t *testing.T) {
	dir := t.TempDir()
	args := apiConfig(t, dir, "")
	stop, logs := start(t, append(args, "--log-level", "warn")...)
	waitSocket(t, args[5], logs)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=INFO") {
		t.Errorf("--log-level warn logged info lines:\n%s", logs)
	}
	cmd := newCommand(io.Discard)
	cmd.SetArgs(append(args, "--log-level", "loud"))
	cmd.SetOut(io.Discard)
	cmd.SetErr(io.Discard)
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("--log-level loud: %v", err)
	}
}
