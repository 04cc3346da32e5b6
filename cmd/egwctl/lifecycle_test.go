package main

import (
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/internal/jointoken"
)

func TestGatewayLifecycleCommands(t *testing.T) {
	e := newEnv(t)
	e.fake.ControlPlane().SetEnrollment(controlplane.Enrollment{Address: "203.0.113.1:7444", CertHash: sha256.Sum256([]byte("cert"))})
	e.ok("site", "add", "site-a")
	e.ok("site", "add", "site-c")

	// Without a key: the token alone on stdout, how to use it on stderr.
	r := e.run("gateway", "add", "edge-c", "--site", "site-c", "--vp-cidr", "192.168.5.0/24", "--ttl", "2h")
	tok, err := jointoken.Parse(r.stdout)
	if r.code != 0 || err != nil || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("gateway add without a key: %+v (%v)", r, err)
	}
	if tok.Address != "203.0.113.1:7444" || !strings.Contains(r.stderr, "edgegateway join") || !strings.Contains(r.stderr, tok.ID) {
		t.Errorf("token %+v, stderr %q", tok, r.stderr)
	}
	if out := e.ok("token", "list"); !strings.Contains(out, tok.ID) || !strings.Contains(out, "pending") || strings.Contains(out, tok.Secret) {
		t.Errorf("token list: %q", out)
	}
	if out := e.ok("token", "revoke", tok.ID); !strings.Contains(out, "revoked") {
		t.Errorf("token revoke: %q", out)
	}
	if out := e.ok("token", "list"); !strings.Contains(out, "revoked") {
		t.Errorf("token list after revoke: %q", out)
	}
	r = e.run("gateway", "token", "edge-c")
	if _, err := jointoken.Parse(r.stdout); r.code != 0 || err != nil {
		t.Errorf("gateway token: %+v", r)
	}
	e.fails("JoinToken/0123456789abcdef: not found", "token", "revoke", "0123456789abcdef")

	// Revoke and rotate a gateway that has a key.
	e.ok("gateway", "add", "edge-a", "--site", "site-a", "--vp-cidr", "192.168.0.0/24", "--public-key", testKey, "--output-file", t.TempDir()+"/a.yaml")
	if out := e.ok("gateway", "rotate-key", "edge-a"); !strings.Contains(out, "rotation requested") {
		t.Errorf("rotate-key: %q", out)
	}
	if out := e.ok("gateway", "revoke", "edge-a"); !strings.Contains(out, "EGateway/edge-a revoked at ") {
		t.Errorf("revoke: %q", out)
	}
	if out := e.ok("describe", "egateway", "edge-a"); !strings.Contains(out, "egw.io/revoked-at") {
		t.Errorf("describe after revoke: %q", out)
	}
	e.fails("EGateway/edge-a: has no key to rotate", "gateway", "rotate-key", "edge-a")
	e.fails("EGateway/edge-x: publicKey: was revoked", "gateway", "add", "edge-x", "--site", "site-x", "--vp-cidr", "192.168.6.0/24", "--public-key", testKey)
}
