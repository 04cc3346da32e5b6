package client_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// serveFunc serves h on the unix socket path until the returned server is closed (or the
// test ends).
func serveFunc(t *testing.T, path string, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}
