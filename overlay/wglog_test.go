package overlay

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
)

// records is a slog.Handler that keeps every record.
type records struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
	return nil
}
func (r *records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *records) WithGroup(string) slog.Handler      { return r }

func (r *records) count(l slog.Level) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rec := range r.recs {
		if rec.Level == l {
			n++
		}
	}
	return n
}

// TestWGLoggerNoEndpointQuiet: a registered peer that never connected makes wireguard-go
// fail every handshake attempt with "no known endpoint for peer". That is normal: one info
// line per peer, then debug only. Other errors stay errors.
func TestWGLoggerNoEndpointQuiet(t *testing.T) {
	rec := &records{}
	wl := wgLogger(slog.New(rec))
	noEP := errors.New("no known endpoint for peer")
	for range 5 {
		wl.Errorf("%v - Failed to send handshake initiation: %v", "peer(AAAA…BBBB)", noEP)
	}
	wl.Errorf("%v - Failed to send handshake initiation: %v", "peer(CCCC…DDDD)", noEP)
	if n := rec.count(slog.LevelError); n != 0 {
		t.Errorf("%d error lines for peers without an endpoint, want 0", n)
	}
	if n := rec.count(slog.LevelInfo); n != 2 {
		t.Errorf("%d info lines, want one per peer (2)", n)
	}
	if n := rec.count(slog.LevelDebug); n != 4 {
		t.Errorf("%d debug lines, want the 4 repeats", n)
	}
	wl.Errorf("%v - Failed to send data packets: %v", "peer(AAAA…BBBB)", errors.New("sendmsg: network is unreachable"))
	if n := rec.count(slog.LevelError); n != 1 {
		t.Errorf("another failure logged %d errors, want 1", n)
	}
}
