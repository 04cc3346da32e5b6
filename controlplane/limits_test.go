package controlplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func serveLimited(t *testing.T, h http.Handler, lim ServeLimits) (string, *ConnLimiter) {
	t.Helper()
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := LimitListener(tl, lim.MaxConns, lim.MaxConnsPerAddr)
	s := NewHTTPServer(h, lim)
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return tl.Addr().String(), l
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refused reports whether a connection from src is refused: reset while dialling, or
// closed unanswered.
func refused(t *testing.T, src, addr string) bool {
	t.Helper()
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return true
	}
	defer c.Close()
	_, ok := answered(c, getRevision)
	return !ok
}

// answered reports whether a request on c gets an HTTP answer within a second.
func answered(c net.Conn, req string) (int, bool) {
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		return 0, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, false
	}
	resp.Body.Close()
	return resp.StatusCode, true
}

const getRevision = "GET /v1/revision HTTP/1.1\r\nHost: egw\r\nAuthorization: Bearer 0123456789abcdef\r\n\r\n"

func waitOpen(t *testing.T, l *ConnLimiter, n int) {
	t.Helper()
	for i := 0; i < 600 && l.Open() != n; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if l.Open() != n {
		t.Fatalf("open connections: %d, want %d", l.Open(), n)
	}
}

func TestLimitListenerPerAddressAndTotal(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	lim := DefaultServeLimits
	lim.MaxConns, lim.MaxConnsPerAddr = 5, 2
	addr, l := serveLimited(t, ok, lim)

	a1, a2 := dialFrom(t, "127.0.0.1", addr), dialFrom(t, "127.0.0.1", addr)
	for _, c := range []net.Conn{a1, a2} {
		if code, ok := answered(c, getRevision); !ok || code != 200 {
			t.Fatalf("within the per-address cap: %d %v", code, ok)
		}
	}
	if !refused(t, "127.0.0.1", addr) {
		t.Fatal("a third connection from 127.0.0.1 was served (cap 2 per address)")
	}
	b := []net.Conn{dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.2", addr), dialFrom(t, "127.0.0.3", addr)}
	for i, c := range b {
		if _, ok := answered(c, getRevision); !ok {
			t.Fatalf("connection %d from another address refused below the total cap", i)
		}
	}
	if !refused(t, "127.0.0.4", addr) {
		t.Fatal("a sixth connection was served (cap 5 in all)")
	}
	if l.Refused() != 2 {
		t.Errorf("Refused() = %d, want 2", l.Refused())
	}
	a1.Close()
	waitOpen(t, l, 4)
	if _, ok := answered(dialFrom(t, "127.0.0.1", addr), getRevision); !ok {
		t.Fatal("a slot freed by Close was not reused")
	}
}

// A client without the token that announces a body and never sends it gets its 401 at
// once, and the connection is closed (after net/http's short lingering close): nothing
// waits for the body.
func TestUnauthenticatedBodyNotAwaited(t *testing.T) {
	h := BearerAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("handler reached without a token")
	}), func() string { return "0123456789abcdef" })
	addr, l := serveLimited(t, h, DefaultServeLimits)
	c := dialFrom(t, "127.0.0.1", addr)
	t0 := time.Now()
	code, ok := answered(c, "POST /v1/apply HTTP/1.1\r\nHost: egw\r\nContent-Length: 1000\r\n\r\n")
	if !ok || code != http.StatusUnauthorized {
		t.Fatalf("no 401 within a second (got %d %v)", code, ok)
	}
	t.Logf("401 after %v", time.Since(t0))
	waitOpen(t, l, 0)
}

// Timeouts close a connection that sends nothing, one that stalls in its body, and one
// left idle after an answer.
func TestServeTimeouts(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) })
	lim := ServeLimits{ReadHeaderTimeout: 100 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: time.Second, IdleTimeout: 200 * time.Millisecond, MaxConns: 10, MaxConnsPerAddr: 10}
	addr, l := serveLimited(t, h, lim)
	silent := dialFrom(t, "127.0.0.1", addr)
	stalled := dialFrom(t, "127.0.0.1", addr)
	fmt.Fprintf(stalled, "POST /x HTTP/1.1\r\nHost: egw\r\nContent-Length: 1000\r\n\r\nabc")
	idle := dialFrom(t, "127.0.0.1", addr)
	if _, ok := answered(idle, "GET /x HTTP/1.1\r\nHost: egw\r\n\r\n"); !ok {
		t.Fatal("no answer")
	}
	for name, c := range map[string]net.Conn{"silent": silent, "stalled body": stalled, "idle": idle} {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("%s: not closed by the server: %v", name, err)
		}
	}
	waitOpen(t, l, 0)
}

// Long lists and duplicates are refused with a short answer; an object colliding with
// another on every entry gets an error listing the first api.MaxReportedErrors problems
// and a count (it was 13.6 MB for 100,000 entries).
func TestListLimitsOverHTTP(t *testing.T) {
	h := newServer(t, t.TempDir(), testConfig(), Options{}).Handler()
	list := func(n int, f string) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf(`"`+f+`"`, i)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/epolicies", `{"kind":"EPolicy","metadata":{"name":"big"},"allowedServers":[` + list(100000, "s%d") + `]}`,
			"has 100000 entries; at most 256 are allowed"},
		{"/v1/serviceexposes", `{"kind":"ServiceExpose","metadata":{"name":"x"},"eServiceName":"web","eSites":["a","a","a"]}`,
			"is a duplicate of eSites[0]"},
	} {
		rec := do(t, h, "POST", tc.path, []byte(tc.body))
		if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), tc.want) || rec.Body.Len() > 4096 {
			t.Errorf("%s: %d, %d bytes: %.300s", tc.path, rec.Code, rec.Body.Len(), rec.Body)
		}
	}
	sites := list(api.MaxListLen, "site%d")
	if rec := do(t, h, "POST", "/v1/serviceexposes", []byte(`{"kind":"ServiceExpose","metadata":{"name":"x1"},"eServiceName":"web","eSites":[`+sites+`]}`)); rec.Code != http.StatusCreated {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	rec := do(t, h, "POST", "/v1/serviceexposes", []byte(`{"kind":"ServiceExpose","metadata":{"name":"x2"},"eServiceName":"web","eSites":[`+sites+`]}`))
	more := fmt.Sprintf("and %d more problems", api.MaxListLen-api.MaxReportedErrors)
	if rec.Code != http.StatusUnprocessableEntity || !strings.Contains(rec.Body.String(), more) || rec.Body.Len() > 8192 {
		t.Errorf("collision: %d, %d bytes: %.300s", rec.Code, rec.Body.Len(), rec.Body)
	}
}

func TestDeviceName(t *testing.T) {
	seen := map[string]string{}
	for _, g := range []string{"edge-a", "EdgeB", "abcdefghijk", "TokyoChibaGateway", "TokyoChibaGateway2", "tokyo-", "tokyo-chiba-gateway"} {
		d := DeviceName(g)
		if len(d) > 15 || !strings.HasPrefix(d, "egw-") || strings.ContainsAny(d, " /") {
			t.Errorf("DeviceName(%q) = %q", g, d)
		}
		if other, ok := seen[d]; ok {
			t.Errorf("%q and %q both get %q", g, other, d)
		}
		seen[d] = g
	}
	if DeviceName("edge-a") != "egw-edge-a" {
		t.Errorf("short names are kept: %q", DeviceName("edge-a"))
	}
}
