package main

import (
	"context"
	"crypto/tls"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/client/clienttest"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/internal/jointoken"
)

// joinCloud is a control plane with edge gw-c (no key) and its enrollment listener.
func joinCloud(t *testing.T) *controlplane.Server {
	t.Helper()
	fake := clienttest.New(t)
	objs, err := api.Decode("t", []byte(`{"kind":"ESite","metadata":{"name":"site-c"}}
{"kind":"EGateway","metadata":{"name":"gw-c"},"virtualPresenceIPcidr":"192.168.5.0/24","eSiteName":"site-c"}`))
	if err != nil {
		t.Fatal(err)
	}
	fake.Seed(t, objs...)
	srv := fake.ControlPlane()
	cert, hash, err := controlplane.EnrollIdentity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.EnrollHandler())
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	srv.SetEnrollment(controlplane.Enrollment{Address: ts.Listener.Addr().String(), CertHash: hash})
	return srv
}

func TestJoinWritesKeyAndConfig(t *testing.T) {
	srv := joinCloud(t)
	text, _, err := srv.CreateJoinToken("gw-c", 0)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jointoken.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath, state := filepath.Join(dir, "etc", "edgegateway.yaml"), filepath.Join(dir, "state")

	// A refused join leaves nothing behind.
	bad := tok
	bad.CertHash[0] ^= 1
	if _, err := join(context.Background(), bad, cfgPath, state); err == nil || !strings.Contains(err.Error(), "identity") {
		t.Fatalf("wrong identity: %v", err)
	}
	for _, p := range []string{cfgPath, filepath.Join(state, "private.key"), filepath.Join(state, "private.key.join")} {
		if _, err := os.Stat(p); err == nil {
			t.Fatalf("%s left behind by a refused join", p)
		}
	}

	name, err := join(context.Background(), tok, cfgPath, state)
	if err != nil || name != "gw-c" {
		t.Fatalf("join: %q %v", name, err)
	}
	for _, p := range []string{cfgPath, filepath.Join(state, "private.key")} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v; want mode 0600", p, st, err)
		}
	}
	cfg, _ := os.ReadFile(cfgPath)
	if !strings.Contains(string(cfg), "privateKeyFile: "+filepath.Join(state, "private.key")) {
		t.Errorf("config does not name the key:\n%s", cfg)
	}
	if strings.Contains(string(cfg), tok.Secret) {
		t.Error("the config holds the token's secret")
	}
	if _, err := os.Stat(filepath.Join(state, "private.key.join")); err == nil {
		t.Error("the temporary key was left")
	}
	// Again: refused with the reason; the key and config stay.
	before, _ := os.ReadFile(filepath.Join(state, "private.key"))
	if _, err := join(context.Background(), tok, cfgPath, state); err == nil || !strings.Contains(err.Error(), "already used") {
		t.Fatalf("second use: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(state, "private.key"))
	if string(before) != string(after) {
		t.Fatal("a refused join replaced the key")
	}
}
