package controlplane

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/egw-project/egw/api"
)

// Reports shared between replicas.
//
// A gateway reports to the hub it syncs from; on a store that several replicas share (a
// KeyFeed backend, etcd), each replica also stores the reports it receives (bucket
// reports, one key per gateway, without moving the store revision) and takes the others'
// from the feed, so `egwctl status` through any replica shows every gateway's report. A
// report is stored when the gateway's applied revision changed or its stored one is older
// than reportStoreEvery, by a flusher every reportFlushEvery, in transactions of at most
// reportsPerTx keys and reportBytesPerTx bytes (within etcd's limits): at 10,000 gateways
// that is about 170 keys a second.

const (
	bucketReports    = "reports"
	reportFlushEvery = 5 * time.Second
	reportStoreEvery = time.Minute
	reportsPerTx     = 60
	reportBytesPerTx = 1 << 20
)

// sharedReports is the Server's part of report sharing.
type sharedReports struct {
	mu     sync.Mutex
	dirty  map[string]struct{}
	stored map[string]storedReport
}

type storedReport struct {
	rev int64
	at  time.Time
}

// shareReports starts storing this replica's reports and taking the others' (KeyFeed
// backends only), until ctx ends.
func (s *Server) shareReports(ctx context.Context) {
	if _, ok := s.store.Backend().(KeyFeed); !ok || s.store.feed == nil {
		return
	}
	s.shared.mu.Lock()
	s.shared.dirty, s.shared.stored = map[string]struct{}{}, map[string]storedReport{}
	s.shared.mu.Unlock()
	// The feed calls back on the backend's watch goroutine: hand the batches over.
	in := make(chan []FeedChange, 64)
	s.store.feed.setOther(bucketReports, func(c []FeedChange) {
		select {
		case in <- c:
		default: // behind: the next reports bring it up to date
		}
	})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case c := <-in:
				s.takeReports(c)
			}
		}
	}()
	go func() {
		t := time.NewTicker(reportFlushEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if !s.StoreHealth().Up {
					continue // kept dirty: stored once etcd is back
				}
				if err := s.flushReports(); err != nil {
					s.log.Warn("storing gateway reports for the other replicas", "err", err)
				}
			}
		}
	}()
}

// markReport notes that gateway's report changed (Report).
func (s *Server) markReport(gateway string) {
	s.shared.mu.Lock()
	if s.shared.dirty != nil {
		s.shared.dirty[gateway] = struct{}{}
	}
	s.shared.mu.Unlock()
}

// flushReports stores the reports that changed enough since they were last stored.
func (s *Server) flushReports() error {
	now := s.opts.Now()
	s.shared.mu.Lock()
	var names []string
	for n := range s.shared.dirty {
		names = append(names, n)
	}
	s.shared.mu.Unlock()
	slices.Sort(names)
	type entry struct {
		name string
		rev  int64
		data []byte
	}
	var batch []entry
	size := 0
	write := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.store.Backend().Update(func(tx Tx) error {
			for _, e := range batch {
				if err := tx.Put(bucketReports, e.name, e.data); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			s.shared.mu.Lock()
			for _, e := range batch {
				s.shared.stored[e.name] = storedReport{rev: e.rev, at: now}
			}
			s.shared.mu.Unlock()
		}
		batch, size = nil, 0
		return err
	}
	for _, n := range names {
		s.mu.Lock()
		r, ok := s.reports[n]
		s.mu.Unlock()
		s.shared.mu.Lock()
		st, had := s.shared.stored[n]
		delete(s.shared.dirty, n)
		s.shared.mu.Unlock()
		if !ok || had && st.rev == r.AppliedRevision && now.Sub(st.at) < reportStoreEvery {
			continue
		}
		data, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if len(batch) == reportsPerTx || size+len(data) > reportBytesPerTx {
			if err := write(); err != nil {
				return err
			}
		}
		batch = append(batch, entry{n, r.AppliedRevision, data})
		size += len(data)
	}
	return write()
}

// takeReports takes the reports another replica stored (from the feed): a report newer
// than the one held replaces it.
func (s *Server) takeReports(changes []FeedChange) {
	for _, c := range changes {
		if c.Deleted {
			continue
		}
		var r api.Report
		if json.Unmarshal(c.Value, &r) != nil || r.Gateway != c.Key {
			continue
		}
		s.mu.Lock()
		if cur, ok := s.reports[c.Key]; !ok || r.Received.After(cur.Received) {
			s.reports[c.Key] = r
		}
		s.mu.Unlock()
	}
}
