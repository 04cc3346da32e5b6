package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestSyncStopsWhenRevoked(t *testing.T) {
	var polls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/sync" {
			return
		}
		polls.Add(1)
		w.Header().Set(HeaderRevoked, "2026-12-06T08:00:00Z")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":"gateway gw-a was revoked at 2026-12-06T08:00:00Z; it needs a new join token"}`))
	}))
	defer ts.Close()
	c := &SyncClient{BaseURL: ts.URL, HTTP: ts.Client(), Log: slog.New(slog.DiscardHandler), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	var got *RevokedError
	c.Revoked = func(e *RevokedError) { got = e }
	done := make(chan struct{})
	go func() { c.Run(context.Background(), 0); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run kept polling after a revocation")
	}
	if got == nil || got.At != "2026-12-06T08:00:00Z" || polls.Load() != 1 {
		t.Fatalf("revoked %+v after %d polls", got, polls.Load())
	}
	// Recorded, a restart with the same key stops at once; another key starts.
	dir := t.TempDir()
	if err := markRevoked(dir, "KEY1", got); err != nil {
		t.Fatal(err)
	}
	if err := checkRevoked(dir, "KEY1"); !IsRevoked(err) {
		t.Fatalf("same key: %v", err)
	}
	if err := checkRevoked(dir, "KEY2"); err != nil {
		t.Fatalf("new key: %v", err)
	}
	if err := checkRevoked(t.TempDir(), "KEY1"); err != nil {
		t.Fatal(err)
	}
}

func TestSyncOther403KeepsTrying(t *testing.T) {
	var polls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls.Add(1)
		w.WriteHeader(http.StatusForbidden)
	}))
	defer ts.Close()
	c := &SyncClient{BaseURL: ts.URL, HTTP: ts.Client(), Log: slog.New(slog.DiscardHandler), MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}
	c.Revoked = func(*RevokedError) { t.Error("a 403 without the header counted as a revocation") }
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	c.Run(ctx, 0)
	if n := polls.Load(); n < 2 {
		t.Fatalf("%d polls", n)
	}
}
