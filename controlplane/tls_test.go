package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/client"
	"github.com/egw-project/egw/internal/testcert"
)

// The admin API over TLS on 127.0.0.1:0 with a self-signed certificate made in the test:
// the client trusts it through its CA file, the key file's mode is checked, and Reload
// swaps the certificate for new connections (and keeps the old one when the new files are
// refused).
func TestAPIOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testcert.Write(t, dir)
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTLSCert(certFile, keyFile); err == nil || !strings.Contains(err.Error(), "has mode 0644: it must not be accessible to group or others") {
		t.Fatalf("key file 0644: %v", err)
	}
	os.Chmod(keyFile, 0o600)
	cert, err := LoadTLSCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}

	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	const token = "0123456789abcdef"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: BearerAuth(srv.Handler(), func() string { return token }), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(tls.NewListener(l, cert.Config()))
	t.Cleanup(func() { hs.Close() })
	url := "https://" + l.Addr().String()

	// A client keeps its CA pool; make one per certificate generation.
	trusting := func(caFile string) *client.Client {
		c, err := client.NewWithOptions(url, client.Options{Token: token, CAFile: caFile})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ctx := context.Background()
	if _, err := trusting(certFile).Revision(ctx); err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	served := func() *x509.Certificate {
		t.Helper()
		conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
			t.Fatalf("TLS version %x", v)
		}
		return conn.ConnectionState().PeerCertificates[0]
	}
	first := served()

	// A renewed certificate in the same files is served after Reload.
	oldPEM, _ := os.ReadFile(certFile)
	testcert.Write(t, dir)
	if err := cert.Reload(); err != nil {
		t.Fatal(err)
	}
	if second := served(); second.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("Reload did not change the served certificate")
	}
	if _, err := trusting(certFile).Revision(ctx); err != nil {
		t.Fatalf("with the renewed certificate: %v", err)
	}
	oldCA := filepath.Join(t.TempDir(), "old.pem")
	os.WriteFile(oldCA, oldPEM, 0o644)
	if _, err := trusting(oldCA).Revision(ctx); err == nil {
		t.Fatal("the old CA still verifies the renewed certificate")
	}

	// A refused reload keeps serving what was served.
	current := served()
	os.Chmod(keyFile, 0o640)
	if err := cert.Reload(); err == nil {
		t.Fatal("Reload accepted a key file of mode 0640")
	}
	if after := served(); after.SerialNumber.Cmp(current.SerialNumber) != 0 {
		t.Fatal("a refused Reload changed the served certificate")
	}
}
