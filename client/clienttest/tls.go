package clienttest

import (
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"testing"

	"github.com/egw-project/egw/internal/testcert"
)

// WriteSelfSigned makes a self-signed ECDSA certificate for 127.0.0.1, ::1 and localhost,
// valid for a day, and writes it to dir as cert.pem (0644) and key.pem (0600): see
// internal/testcert.
func WriteSelfSigned(t testing.TB, dir string) (certFile, keyFile string) {
	return testcert.Write(t, dir)
}

// ServeTLS serves the fake over TLS on 127.0.0.1 with the certificate in certFile and
// keyFile (WriteSelfSigned) and returns its https:// URL. It is closed when the test ends.
func (s *Server) ServeTLS(t testing.TB, certFile, keyFile string) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	// Tests make clients refuse the certificate on purpose; keep their handshake errors
	// out of the test output.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}
