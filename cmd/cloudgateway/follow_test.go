package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
)

func TestRetryBackoff(t *testing.T) {
	cases := []struct {
		n    int
		want time.Duration
	}{
		{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {5, 16 * time.Second},
		{6, 30 * time.Second}, {7, 30 * time.Second}, {1000, 30 * time.Second},
	}
	for _, c := range cases {
		if got := retryBackoff(c.n); got != c.want {
			t.Errorf("retryBackoff(%d) = %v, want %v", c.n, got, c.want)
		}
	}
}

// applyLog is a node's Apply that fails while failing is set and records every call.
type applyLog struct {
	mu      sync.Mutex
	failing bool
	calls   []applyCall
	reports int
	called  chan struct{}
}

type applyCall struct {
	rev int64
	at  time.Time
	ok  bool
}

func (a *applyLog) apply(s *api.Snapshot) error {
	a.mu.Lock()
	ok := !a.failing
	a.calls = append(a.calls, applyCall{s.Revision, time.Now(), ok})
	a.mu.Unlock()
	select {
	case a.called <- struct{}{}:
	default:
	}
	if !ok {
		return errors.New("injected failure")
	}
	return nil
}

func (a *applyLog) setFailing(f bool) { a.mu.Lock(); a.failing = f; a.mu.Unlock() }

func (a *applyLog) snapshot() ([]applyCall, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]applyCall(nil), a.calls...), a.reports
}

// waitCalls waits until Apply was called n times.
func (a *applyLog) waitCalls(t *testing.T, n int) []applyCall {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		calls, _ := a.snapshot()
		if len(calls) >= n {
			return calls
		}
		select {
		case <-a.called:
		case <-deadline:
			t.Fatalf("Apply called %d times, want %d", len(calls), n)
		}
	}
}

// The hub's loop follows a real control plane: a snapshot that fails to apply is retried
// after the backoff (never at once, although Watch answers at once for it), rev does not
// advance until one applies, a newer snapshot is tried without waiting out the backoff,
// and once applied the loop waits quietly.
func TestFollowerRetriesWithoutSpinning(t *testing.T) {
	cfg := controlplane.Config{HubGateway: "cloud-gw", HubSite: "cloud"}.WithDefaults()
	store, err := controlplane.Open(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cp, err := controlplane.NewServer(store, controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.EnsureHub("192.168.9.0/24", "AgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4fICE=", "203.0.113.1:51820"); err != nil {
		t.Fatal(err)
	}
	first, _ := cp.Snapshot("cloud-gw")
	addEdge := func(name string) int64 {
		t.Helper()
		objs, err := api.Decode("test", []byte(`{"kind":"ESite","metadata":{"name":"`+name+`"}}
{"kind":"EGateway","metadata":{"name":"`+name+`"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"`+name+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		rev, _, err := cp.Apply(objs)
		if err != nil {
			t.Fatal(err)
		}
		if s, _ := cp.Snapshot("cloud-gw"); s.Revision != rev {
			t.Fatalf("adding %s did not change the hub's snapshot", name)
		}
		return rev
	}

	a := &applyLog{failing: true, called: make(chan struct{}, 1)}
	var logs syncBuffer
	var backoffMu sync.Mutex
	backoff := 50 * time.Millisecond
	f := &follower{
		watch:  func(ctx context.Context, since int64) (*api.Snapshot, error) { return cp.Watch(ctx, "cloud-gw", since) },
		latest: func() (*api.Snapshot, bool) { return cp.Snapshot("cloud-gw") },
		apply:  a.apply,
		report: func() { a.mu.Lock(); a.reports++; a.mu.Unlock() },
		log:    slog.New(slog.NewTextHandler(&logs, nil)),
		backoff: func(int) time.Duration {
			backoffMu.Lock()
			defer backoffMu.Unlock()
			return backoff
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.run(ctx, 0) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("run returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("run did not stop with its context")
		}
	}()

	// Three failures, each retried only after the backoff.
	calls := a.waitCalls(t, 3)
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].at.Sub(calls[i-1].at); gap < 45*time.Millisecond {
			t.Fatalf("retry %d came %v after the failure; want the 50ms backoff", i, gap)
		}
		if calls[i].rev != first.Revision {
			t.Fatalf("retry %d applied revision %d, want %d", i, calls[i].rev, first.Revision)
		}
	}
	if _, reports := a.snapshot(); reports != 0 {
		t.Fatalf("%d reports while nothing applied", reports)
	}
	if !strings.Contains(logs.String(), "hub snapshot not applied") || !strings.Contains(logs.String(), "retry_in=50ms") {
		t.Fatalf("failures not logged with the retry delay:\n%s", logs.String())
	}

	// It applies once the node accepts it, then waits quietly.
	a.setFailing(false)
	calls = a.waitCalls(t, len(calls)+1)
	if last := calls[len(calls)-1]; !last.ok || last.rev != first.Revision {
		t.Fatalf("last call %+v, want revision %d applied", last, first.Revision)
	}
	time.Sleep(200 * time.Millisecond)
	if now, reports := a.snapshot(); len(now) != len(calls) || reports != 1 {
		t.Fatalf("after applying: %d more calls, %d reports (want 0 more and 1): the loop spins", len(now)-len(calls), reports)
	}

	// A change applies at once.
	rev2 := addEdge("edge-1")
	calls = a.waitCalls(t, len(calls)+1)
	if last := calls[len(calls)-1]; !last.ok || last.rev != rev2 {
		t.Fatalf("after a change: %+v, want revision %d applied", last, rev2)
	}

	// During a long backoff a newer snapshot is tried at once.
	a.setFailing(true)
	backoffMu.Lock()
	backoff = time.Hour
	backoffMu.Unlock()
	rev3 := addEdge("edge-2")
	calls = a.waitCalls(t, len(calls)+1)
	if last := calls[len(calls)-1]; last.ok || last.rev != rev3 {
		t.Fatalf("call %+v, want revision %d failing", last, rev3)
	}
	a.setFailing(false)
	rev4 := addEdge("edge-3")
	calls = a.waitCalls(t, len(calls)+1)
	if last := calls[len(calls)-1]; !last.ok || last.rev != rev4 {
		t.Fatalf("call %+v, want revision %d applied without waiting out the backoff", last, rev4)
	}
	time.Sleep(100 * time.Millisecond)
	if now, _ := a.snapshot(); len(now) != len(calls) {
		t.Fatalf("%d calls after the last apply: the loop spins", len(now)-len(calls))
	}
}
