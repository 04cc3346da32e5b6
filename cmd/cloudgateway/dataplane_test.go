package main

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

type recordSink struct {
	mu  sync.Mutex
	got []string
}

func (r *recordSink) SetObservedEndpoint(gw string, ep netip.AddrPort) {
	r.mu.Lock()
	r.got = append(r.got, gw+"="+ep.String())
	r.mu.Unlock()
}

func TestFeedObservedPassesChangesOnly(t *testing.T) {
	var mu sync.Mutex
	cur := map[string]netip.AddrPort{"edge-a": netip.MustParseAddrPort("203.0.113.1:4000")}
	observed := func() map[string]netip.AddrPort {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(cur)
	}
	sink := &recordSink{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { feedObserved(ctx, sink, observed, time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()
	wait := func(n int) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			sink.mu.Lock()
			got := len(sink.got)
			sink.mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d calls, want %d", got, n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	wait(1)
	time.Sleep(20 * time.Millisecond) // many ticks without a change
	mu.Lock()
	cur["edge-a"] = netip.MustParseAddrPort("203.0.113.1:4001") // NAT rebinding
	mu.Unlock()
	wait(2)
	time.Sleep(20 * time.Millisecond)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	want := []string{"edge-a=203.0.113.1:4000", "edge-a=203.0.113.1:4001"}
	if !slices.Equal(sink.got, want) {
		t.Fatalf("calls %v, want %v", sink.got, want)
	}
}
