package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Follow keeps the server current with writes that other processes make to its store —
// other cloud gateway replicas on one etcd: whenever the backend reports a change
// (Watcher), the server refreshes: the store brings its model forward by the keys that
// changed (feed.go) and the server recompiles the snapshots the change affects, which wakes
// the long polls of every gateway whose snapshot changed. It returns at once and follows until ctx ends. A backend that is not
// a Watcher (bbolt: one process owns the file) has no other writer, and Follow does
// nothing.
func (s *Server) Follow(ctx context.Context) {
	w, ok := s.store.Backend().(Watcher)
	if !ok {
		return
	}
	kick := make(chan struct{}, 1)
	w.Watch(ctx, func(int64) {
		select {
		case kick <- struct{}{}:
		default: // a refresh is pending already; it reads the latest state
		}
	})
	kick <- struct{}{} // a write between NewServer and Watch would otherwise wait for the next one
	s.shareReports(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
			if err := s.refresh(); err != nil {
				s.log.Warn("recompiling after a change in the store", "err", err)
			}
		}
	}()
}

// StoreHealth reports the availability of the store's backend; a backend that cannot
// become unavailable (bbolt) is always up.
func (s *Server) StoreHealth() StoreHealth {
	if h, ok := s.store.Backend().(HealthReporter); ok {
		return h.Health()
	}
	rev, _ := s.store.Revision()
	return StoreHealth{Backend: BackendBolt, Up: true, Revision: rev}
}

// StaleHeader is set on every API answer given while the store is unavailable: reads
// then come from the last state this cloud gateway saw, and writes fail (503).
const StaleHeader = "X-Egw-Store-Stale"

// markStale wraps an API handler so that answers say when the store is unavailable.
func (s *Server) markStale(h http.Handler) http.Handler {
	if _, ok := s.store.Backend().(HealthReporter); !ok {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&staleWriter{ResponseWriter: w, s: s}, r)
	})
}

// staleWriter adds StaleHeader when the answer's header is written, if the store is down
// at that moment.
type staleWriter struct {
	http.ResponseWriter
	s     *Server
	wrote bool
}

func (w *staleWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		if h := w.s.StoreHealth(); !h.Up {
			w.Header().Set(StaleHeader, fmt.Sprintf("store %s unavailable since %s (%s): this answer is from the last state this cloud gateway saw (%s revision %d)",
				h.Backend, h.Since.UTC().Format(time.RFC3339), h.Reason, h.Backend, h.Revision))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *staleWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *staleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
