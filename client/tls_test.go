package client_test

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/egw-project/egw/client"
	"github.com/egw-project/egw/client/clienttest"
)

// An https:// server with a self-signed certificate: trusted through CAFile, refused
// without it or with another CA, and the options checked.
func TestHTTPSWithCAFile(t *testing.T) {
	dir := t.TempDir()
	cert, key := clienttest.WriteSelfSigned(t, dir)
	fake := clienttest.New(t)
	fake.Token = "s3cret-token"
	url := fake.ServeTLS(t, cert, key)
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("fake served at %s", url)
	}
	otherCert, _ := clienttest.WriteSelfSigned(t, t.TempDir())
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a certificate\n"), 0o644)

	ctx := context.Background()
	c, err := client.NewWithOptions(url, client.Options{Token: "s3cret-token", CAFile: cert})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Revision(ctx); err != nil {
		t.Fatalf("with the CA file: %v", err)
	}
	if _, err := c.Create(ctx, site("over-tls")); err != nil || fake.Object("ESite", "over-tls") == nil {
		t.Fatalf("create over TLS: %v", err)
	}

	var unknown x509.UnknownAuthorityError
	sys, _ := client.New(url, "s3cret-token") // system roots do not hold the test CA
	if _, err := sys.Revision(ctx); !errors.As(err, &unknown) {
		t.Errorf("without the CA file: %v, want an unknown-authority error", err)
	}
	wrong, err := client.NewWithOptions(url, client.Options{Token: "s3cret-token", CAFile: otherCert})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Revision(ctx); !errors.As(err, &unknown) {
		t.Errorf("with another CA: %v, want an unknown-authority error", err)
	}

	bad := []struct {
		name, addr, ca, want string
	}{
		{"missing file", url, filepath.Join(dir, "none.pem"), "CA file: open " + filepath.Join(dir, "none.pem")},
		{"not PEM", url, garbage, "CA file " + garbage + ": no PEM certificate in it"},
		{"plain http", "http://127.0.0.1:1", cert, "it is for https:// servers only"},
		{"unix socket", "/run/egw/api.sock", cert, "it is for https:// servers only"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			_, err := client.NewWithOptions(b.addr, client.Options{CAFile: b.ca})
			if err == nil || !strings.Contains(err.Error(), b.want) {
				t.Fatalf("err = %v, want %q", err, b.want)
			}
		})
	}
}

// Without CAFile the client trusts the system's roots. The test runs itself in a child
// process whose system roots are the test CA (SSL_CERT_FILE, read once per process).
func TestHTTPSWithSystemRoots(t *testing.T) {
	if url := os.Getenv("EGW_TEST_SYSTEM_ROOTS_URL"); url != "" {
		c, err := client.New(url, "s3cret-token")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Revision(context.Background()); err != nil {
			t.Fatalf("with the test CA as system root: %v", err)
		}
		return
	}
	dir := t.TempDir()
	cert, key := clienttest.WriteSelfSigned(t, dir)
	fake := clienttest.New(t)
	fake.Token = "s3cret-token"
	url := fake.ServeTLS(t, cert, key)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHTTPSWithSystemRoots$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EGW_TEST_SYSTEM_ROOTS_URL="+url, "SSL_CERT_FILE="+cert, "SSL_CERT_DIR="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if reqs := fake.Requests(); len(reqs) != 1 || reqs[0] != "GET /v1/revision" {
		t.Fatalf("the child made %v, want one GET /v1/revision", reqs)
	}
}
