package main

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
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

// TestHubSnapshot: a hub replica that does not run the cloud site's gateway takes the site
// gateway's snapshot under its own name and overlay address, with every edge as a peer and
// the relay's links, and without the cloud site's services.
func TestHubSnapshot(t *testing.T) {
	s := &api.Snapshot{Revision: 9, Gateway: "cloud-gw", Hub: true, OverlayIP: netip.MustParseAddr("100.64.0.1"),
		Peers:  []api.Peer{{Name: "edge-a"}, {Name: "edge-b"}},
		Links:  []api.Link{{A: netip.MustParseAddr("100.64.1.1"), B: netip.MustParseAddr("100.64.2.1")}},
		VIPs:   []api.VIP{{Service: "web"}},
		Hosted: []api.Hosted{{Service: "db"}}}
	h := hubSnapshot(s, "cloud-gw-2", netip.MustParseAddr("100.64.0.127"))
	if h.Gateway != "cloud-gw-2" || h.OverlayIP != netip.MustParseAddr("100.64.0.127") || !h.Hub || h.Revision != 9 ||
		len(h.Peers) != 2 || len(h.Links) != 1 || h.VIPs != nil || h.Hosted != nil {
		t.Fatalf("hub snapshot %+v", h)
	}
	if s.Gateway != "cloud-gw" || len(s.VIPs) != 1 {
		t.Fatal("the site gateway's snapshot was changed")
	}
}
