package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(handler("svc"))
	defer srv.Close()
	tests := []struct {
		name, method, path, body string
		status                   int
		check                    func(t *testing.T, body []byte)
	}{
		{"whoami", "GET", "/", "", 200, func(t *testing.T, b []byte) {
			var w whoami
			if err := json.Unmarshal(b, &w); err != nil || w.Name != "svc" || !strings.HasPrefix(w.Remote, "127.0.0.1:") || w.Local == "" {
				t.Errorf("whoami = %s (%v)", b, err)
			}
		}},
		{"bytes", "GET", "/bytes?n=200000", "", 200, func(t *testing.T, b []byte) {
			if len(b) != 200000 || b[1] != 1 || b[65537] != 1 {
				t.Errorf("got %d bytes", len(b))
			}
		}},
		{"bytes zero", "GET", "/bytes?n=0", "", 200, func(t *testing.T, b []byte) {
			if len(b) != 0 {
				t.Errorf("got %d bytes", len(b))
			}
		}},
		{"bytes negative", "GET", "/bytes?n=-1", "", 400, nil},
		{"bytes junk", "GET", "/bytes?n=x", "", 400, nil},
		{"bytes too many", "GET", "/bytes?n=99999999999", "", 400, nil},
		{"bytes seeded", "GET", "/bytes?n=200000&seed=7", "", 200, func(t *testing.T, b []byte) {
			want := make([]byte, 200000)
			_, _ = SeededStream(7).Read(want)
			if !bytes.Equal(b, want) {
				t.Errorf("seeded stream differs (%d bytes)", len(b))
			}
			other := make([]byte, 200000)
			_, _ = SeededStream(8).Read(other)
			if bytes.Equal(b, other) {
				t.Error("seeds 7 and 8 give the same stream")
			}
		}},
		{"bytes bad seed", "GET", "/bytes?n=10&seed=-1", "", 400, nil},
		{"upload", "POST", "/upload", strings.Repeat("x", 123456), 200, func(t *testing.T, b []byte) {
			sum := sha256.Sum256([]byte(strings.Repeat("x", 123456)))
			if strings.TrimSpace(string(b)) != `{"received":123456,"sha256":"`+hex.EncodeToString(sum[:])+`"}` {
				t.Errorf("upload = %s", b)
			}
		}},
		{"unknown path", "GET", "/nope", "", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, b)
			}
			if tc.check != nil {
				tc.check(t, b)
			}
		})
	}
}

func TestEchoServers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveEcho(ln)
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("echo"), 10000)
	go func() { _, _ = c.Write(msg); _ = c.(*net.TCPConn).CloseWrite() }()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || !bytes.Equal(got, msg) {
		t.Errorf("TCP echo: %d bytes, %v", len(got), err)
	}

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go serveUDP(pc)
	u, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	_ = u.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	for _, tc := range []struct{ send, want string }{
		{"hello", "hello"},
		{"whoami", u.LocalAddr().String() + "\n"},
	} {
		if _, err := u.Write([]byte(tc.send)); err != nil {
			t.Fatal(err)
		}
		n, err := u.Read(buf)
		if err != nil || string(buf[:n]) != tc.want {
			t.Errorf("UDP %q -> %q (%v); want %q", tc.send, buf[:n], err, tc.want)
		}
	}
}
