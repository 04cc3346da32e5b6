package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egw-project/egw/client"
	"github.com/egw-project/egw/client/clienttest"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
)

// apiConfig writes a control-plane-only configuration with the TCP API on 127.0.0.1:0
// plus extra lines, and returns the arguments to start cloudgateway with.
func apiConfig(t *testing.T, dir, extra string) []string {
	t.Helper()
	tok := filepath.Join(dir, "token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "cloudgateway.yaml")
	body := "name: hub\nsite: central\nvpCIDR: 192.168.9.0/24\napiListen: 127.0.0.1:0\napiTokenFile: " + tok + "\n" + extra
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	sockDir, err := os.MkdirTemp("", "egwcg") // socket paths must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	return []string{"--config", conf, "--state-dir", filepath.Join(dir, "state"), "--api-socket", filepath.Join(sockDir, "api.sock"), "--dataplane=false"}
}

var tcpAddrRE = regexp.MustCompile(`msg="admin API listening" tcp=(127\.0\.0\.1:\d+) tls=(true|false)`)

// tcpAddr waits for the TCP API's address in the logs.
func tcpAddr(t *testing.T, logs *syncBuffer) (addr string, tls bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := tcpAddrRE.FindStringSubmatch(logs.String()); m != nil {
			return m[1], m[2] == "true"
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the TCP API did not come up; logs:\n%s", logs)
	return "", false
}

func TestTCPAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := clienttest.WriteSelfSigned(t, dir)
	args := apiConfig(t, dir, "apiTLSCert: "+cert+"\napiTLSKey: "+key+"\n")
	_, logs := start(t, args...)
	addr, withTLS := tcpAddr(t, logs)
	if !withTLS {
		t.Fatalf("TCP API without TLS; logs:\n%s", logs)
	}
	if strings.Contains(logs.String(), "clear text") {
		t.Errorf("clear-text warning with TLS on:\n%s", logs)
	}
	ctx := context.Background()
	c, err := client.NewWithOptions("https://"+addr, client.Options{Token: "0123456789abcdef-token", CAFile: cert})
	if err != nil {
		t.Fatal(err)
	}
	if rev, err := c.Revision(ctx); err != nil || rev == 0 {
		t.Fatalf("revision over TLS: %d, %v", rev, err)
	}
	// The token is still required.
	noTok, _ := client.NewWithOptions("https://"+addr, client.Options{CAFile: cert})
	if _, err := noTok.Revision(ctx); err == nil || !strings.Contains(err.Error(), "bearer token") {
		t.Errorf("without a token: %v", err)
	}
	// Clear text is not answered.
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/v1/revision")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("the TLS port answered clear-text HTTP with 200")
		}
	}
	// TLS 1.1 is refused; 1.2 is accepted.
	pem, _ := os.ReadFile(cert)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	for _, c := range []struct {
		max uint16
		ok  bool
	}{{tls.VersionTLS11, false}, {tls.VersionTLS12, true}} {
		cfg := &tls.Config{MaxVersion: c.max, RootCAs: pool}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if conn != nil {
			conn.Close()
		}
		if (err == nil) != c.ok {
			t.Errorf("TLS max version %x: err = %v, want ok=%v", c.max, err, c.ok)
		}
	}
}

func TestTCPAPIWithoutTLSOnLoopback(t *testing.T) {
	_, logs := start(t, apiConfig(t, t.TempDir(), "")...)
	addr, withTLS := tcpAddr(t, logs)
	if withTLS {
		t.Fatal("TLS without a certificate")
	}
	c, _ := client.New("http://"+addr, "0123456789abcdef-token")
	if _, err := c.Revision(context.Background()); err != nil {
		t.Fatalf("clear-text API on loopback: %v", err)
	}
	if !regexp.MustCompile(`level=INFO msg="the TCP admin API has no TLS .*clear text; acceptable only because it listens on loopback"`).MatchString(logs.String()) {
		t.Errorf("no clear-text note in the logs:\n%s", logs)
	}
}

func TestTCPAPITLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cert, key := clienttest.WriteSelfSigned(t, dir)
	open := filepath.Join(dir, "open-key.pem")
	data, _ := os.ReadFile(key)
	os.WriteFile(open, data, 0o600)
	os.Chmod(open, 0o640)
	otherCert, _ := clienttest.WriteSelfSigned(t, t.TempDir())
	cases := []struct{ name, extra, want string }{
		{"key readable by group", "apiTLSCert: " + cert + "\napiTLSKey: " + open + "\n",
			"API TLS key file " + open + " has mode 0640: it must not be accessible to group or others (chmod 600)"},
		{"cert without key", "apiTLSCert: " + cert + "\n", "apiTLSCert and apiTLSKey go together"},
		{"key without cert", "apiTLSKey: " + key + "\n", "apiTLSCert and apiTLSKey go together"},
		{"key of another certificate", "apiTLSCert: " + otherCert + "\napiTLSKey: " + key + "\n", "private key does not match public key"},
		{"missing key", "apiTLSCert: " + cert + "\napiTLSKey: " + filepath.Join(dir, "none") + "\n", "API TLS key file: open " + filepath.Join(dir, "none")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Startup fails before the context matters, so stopping returns its error.
			stop, logs := start(t, apiConfig(t, t.TempDir(), c.extra)...)
			err := stop()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q\n%s", err, c.want, logs)
			}
		})
	}
}

func TestPlaintextWarning(t *testing.T) {
	cases := []struct {
		addr  string
		level slog.Level
		want  string
	}{
		{"127.0.0.1:8443", slog.LevelInfo, "acceptable only because it listens on loopback"},
		{"[::1]:8443", slog.LevelInfo, "acceptable only because it listens on loopback"},
		{"0.0.0.0:8443", slog.LevelWarn, "over the network, readable and replayable"},
		{"[::]:8443", slog.LevelWarn, "over the network"},
		{"198.51.100.7:8443", slog.LevelWarn, "over the network"},
	}
	for _, c := range cases {
		a, err := net.ResolveTCPAddr("tcp", c.addr)
		if err != nil {
			t.Fatal(err)
		}
		level, msg := plaintextWarning(a)
		if level != c.level || !strings.Contains(msg, "bearer token and every object travel in clear text") || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %v %q, want %v with %q", c.addr, level, msg, c.level, c.want)
		}
	}
}

var storeIDRE = regexp.MustCompile(`msg=store file=\S+ storeID=([0-9a-f]{32})`)

// The store's ID survives a restart; --new-store-id replaces it.
func TestNewStoreIDFlag(t *testing.T) {
	dir := t.TempDir()
	sockDir, err := os.MkdirTemp("", "egwcg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "api.sock")
	args := []string{"--config", filepath.Join(dir, "none.yaml"), "--state-dir", filepath.Join(dir, "state"), "--api-socket", sock, "--dataplane=false"}
	os.WriteFile(filepath.Join(dir, "none.yaml"), []byte("name: hub\nsite: central\n"), 0o600)
	idOf := func(extra ...string) string {
		t.Helper()
		stop, logs := start(t, append(args, extra...)...)
		waitSocket(t, sock, logs)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		m := storeIDRE.FindStringSubmatch(logs.String())
		if m == nil {
			t.Fatalf("no store ID in the logs:\n%s", logs)
		}
		return m[1]
	}
	first := idOf()
	if again := idOf(); again != first {
		t.Fatalf("store ID %s after a restart, want %s", again, first)
	}
	rotated := idOf("--new-store-id")
	if rotated == first {
		t.Fatal("--new-store-id kept the ID")
	}
	if again := idOf(); again != rotated {
		t.Fatalf("store ID %s after --new-store-id and a restart, want %s", again, rotated)
	}
}

// SIGHUP re-reads the TLS certificate from its files; a refused one keeps the old.
func TestReloadTLSCert(t *testing.T) {
	dir := t.TempDir()
	cur := &Config{Config: gateway.Config{Name: "hub", Site: "central", VPCIDR: "192.168.9.0/24", OverlayCIDR: controlplane.DefaultOverlayCIDR},
		OverlayPrefixLen: 22, SyncPort: 7443}
	cpcfg, err := cur.controlplaneConfig()
	if err != nil {
		t.Fatal(err)
	}
	store, err := controlplane.Open(dir, cpcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cp, err := controlplane.NewServer(store, controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := clienttest.WriteSelfSigned(t, dir)
	cert, err := controlplane.LoadTLSCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first := cert.Leaf().SerialNumber
	clienttest.WriteSelfSigned(t, dir) // renewed in place
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	var token atomic.Pointer[string]
	same := func() (*Config, error) { n := *cur; return &n, nil }
	reloadConfig(cur, same, cp, &token, cert, log)
	if cert.Leaf().SerialNumber.Cmp(first) == 0 || !strings.Contains(logs.String(), "API TLS certificate reloaded") {
		t.Fatalf("certificate not reloaded:\n%s", logs)
	}
	second := cert.Leaf().SerialNumber
	os.Chmod(keyFile, 0o644)
	reloadConfig(cur, same, cp, &token, cert, log)
	if cert.Leaf().SerialNumber.Cmp(second) != 0 || !strings.Contains(logs.String(), "API TLS certificate not reloaded; serving the previous one") {
		t.Fatalf("a refused certificate was taken:\n%s", logs)
	}
}
