package controlplane

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// waitChanOf waits until someone waits for gw's snapshot and returns the channel they
// wait on.
func waitChanOf(t *testing.T, s *Server, gw string) chan struct{} {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		ch := s.wake[gw]
		s.mu.Unlock()
		if ch != nil {
			return ch
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("nobody waits for %s", gw)
	return nil
}

func closed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestWatchWakesOnlyItsGateway: a change of one gateway's snapshot closes that gateway's
// channel only; a watcher of another gateway sleeps on.
func TestWatchWakesOnlyItsGateway(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	rev := mustApply(t, srv, twoSites)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		snap *api.Snapshot
		err  error
	}
	watch := func(gw string) chan answer {
		ch := make(chan answer, 1)
		go func() {
			s, err := srv.Watch(ctx, gw, rev)
			ch <- answer{s, err}
		}()
		return ch
	}
	gotA, gotB := watch("gw-a"), watch("gw-b")
	chA, chB := waitChanOf(t, srv, "gw-a"), waitChanOf(t, srv, "gw-b")

	// Allowing c2 too changes gw-a's VIP ACL; gw-b's hosted service is allowed to site-a
	// before and after.
	rev2 := mustApply(t, srv, `{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
		{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}`)
	select {
	case a := <-gotA:
		if a.err != nil || a.snap.Gateway != "gw-a" || a.snap.Revision != rev2 {
			t.Fatalf("gw-a's watch: %v, %+v", a.err, a.snap)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("gw-a's watch was not woken by a change of its snapshot")
	}
	if !closed(chA) {
		t.Fatal("gw-a's channel is still open")
	}
	if closed(chB) {
		t.Fatal("a change of gw-a's snapshot woke gw-b's watchers")
	}
	if s, _ := srv.Snapshot("gw-b"); s.Revision != rev {
		t.Fatalf("gw-b moved to %d", s.Revision)
	}
	select {
	case b := <-gotB:
		t.Fatalf("gw-b's watch returned: %v %+v", b.err, b.snap)
	case <-time.After(50 * time.Millisecond):
	}

	// Deleting gw-b wakes its watcher, which then waits for a snapshot that may come back.
	if _, err := srv.Delete(api.KindEGateway, "gw-b"); err != nil {
		t.Fatal(err)
	}
	if !closed(chB) {
		t.Fatal("removing gw-b's snapshot did not wake its watchers")
	}
	if _, ok := srv.Snapshot("gw-b"); ok {
		t.Fatal("gw-b still has a snapshot")
	}
	cancel()
	if b := <-gotB; b.err == nil {
		t.Fatalf("gw-b's watch returned %+v after its gateway was deleted", b.snap)
	}
}

// TestReadersDoNotWaitForRefresh: while a refresh runs (refreshMu held), the readers
// answer at once from the snapshots in place.
func TestReadersDoNotWaitForRefresh(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 50 * time.Millisecond})
	mustApply(t, srv, twoSites)
	srv.refreshMu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		if s, ok := srv.Snapshot("gw-a"); !ok || s.Gateway != "gw-a" {
			t.Errorf("Snapshot: %v %+v", ok, s)
		}
		if gw, ok := srv.GatewayByAddr(netip.MustParseAddr("100.64.8.77")); !ok || gw != "gw-b" {
			t.Errorf("GatewayByAddr: %q %v", gw, ok)
		}
		srv.Report("gw-a", api.Report{AppliedRevision: 1})
		if _, err := srv.Status(); err != nil {
			t.Errorf("Status: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if s, err := srv.Watch(ctx, "gw-a", 0); err != nil || s.Gateway != "gw-a" {
			t.Errorf("Watch: %v %+v", err, s)
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("readers waited for the refresh")
	}
	srv.refreshMu.Unlock()
	<-done
}

func TestGatewayByAddr(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	mustApply(t, srv, twoSites)
	cases := []struct {
		addr string
		gw   string // "" for none
	}{
		{"100.64.4.1", "gw-a"},
		{"100.64.7.255", "gw-a"},
		{"100.64.8.0", "gw-b"},
		{"::ffff:100.64.9.3", "gw-b"},
		{"100.64.12.1", ""},
		{"100.64.3.255", ""},
		{"10.0.0.20", ""},
		{"fd00::1", ""},
	}
	for _, c := range cases {
		gw, ok := srv.GatewayByAddr(netip.MustParseAddr(c.addr))
		if gw != c.gw || ok != (c.gw != "") {
			t.Errorf("GatewayByAddr(%s) = %q, %v; want %q", c.addr, gw, ok, c.gw)
		}
	}
	if _, ok := srv.GatewayByAddr(netip.Addr{}); ok {
		t.Error("the zero address belongs to a gateway")
	}
	// A deleted gateway's prefix no longer identifies anyone.
	if _, err := srv.Delete(api.KindEGateway, "gw-a"); err != nil {
		t.Fatal(err)
	}
	if gw, ok := srv.GatewayByAddr(netip.MustParseAddr("100.64.4.1")); ok {
		t.Errorf("deleted gw-a's address belongs to %s", gw)
	}
}

// TestSyncBodyIsTheSnapshot: the sync answer, encoded once per revision, decodes to the
// current snapshot and is the same bytes for every request at that revision.
func TestSyncBodyIsTheSnapshot(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 50 * time.Millisecond})
	mustApply(t, srv, twoSites)
	h := srv.SyncHandler()
	first := syncRequest(h, "GET", "/v1/sync?since=0", "100.64.4.1:1", "")
	second := syncRequest(h, "GET", "/v1/sync?since=0", "100.64.4.9:2", "")
	if first.Code != 200 || second.Code != 200 || first.Body.String() != second.Body.String() {
		t.Fatalf("two syncs at one revision: %d %d, bodies equal %v", first.Code, second.Code, first.Body.String() == second.Body.String())
	}
	if ct := first.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var got api.Snapshot
	if err := json.Unmarshal(first.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want, _ := srv.Snapshot("gw-a")
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("sync body\n got %+v\nwant %+v", got, *want)
	}
	// A change gives a new body with the new revision.
	rev := mustApply(t, srv, `{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
		{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}`)
	third := syncRequest(h, "GET", "/v1/sync?since=1", "100.64.4.1:1", "")
	got = api.Snapshot{}
	if err := json.Unmarshal(third.Body.Bytes(), &got); err != nil || got.Revision != rev || len(got.VIPs[0].AllowedClients) != 2 {
		t.Fatalf("after the change: %v, revision %d (want %d), VIPs %+v", err, got.Revision, rev, got.VIPs)
	}
}

// TestSyncGzipped: in a fleet past Options.KeepDecoded, an edge's snapshot is kept
// gzipped: sent as is to a client that takes gzip, decompressed for one that does not,
// and decoded for Snapshot and Watch; the snapshots kept decoded before are converted
// without waking anyone.
func TestSyncGzipped(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 50 * time.Millisecond, KeepDecoded: 2})
	mustApply(t, srv, twoSites)
	if srv.gzipped {
		t.Fatal("two gateways kept gzipped")
	}
	rev, _ := srv.SnapshotRevision("gw-a")
	mustApply(t, srv, gatewayJSON("gw-c", "site-c", "192.168.7.0/24"))
	if !srv.gzipped || srv.snaps["gw-a"].gz == nil || srv.snaps["gw-a"].snap != nil {
		t.Fatal("not kept gzipped past KeepDecoded")
	}
	if r, _ := srv.SnapshotRevision("gw-a"); r != rev {
		t.Fatalf("converting gw-a moved its revision %d -> %d", rev, r)
	}
	h := srv.SyncHandler()
	plain := syncRequest(h, "GET", "/v1/sync?since=0", "100.64.4.1:1", "")
	req := httptest.NewRequest("GET", "/v1/sync?since=0", nil)
	req.RemoteAddr = "100.64.4.1:1"
	req.Header.Set("Accept-Encoding", "br, gzip;q=0.8")
	zipped := httptest.NewRecorder()
	h.ServeHTTP(zipped, req)
	if plain.Code != 200 || plain.Header().Get("Content-Encoding") != "" || zipped.Code != 200 || zipped.Header().Get("Content-Encoding") != "gzip" {
		t.Fatalf("plain %d %q, zipped %d %q", plain.Code, plain.Header().Get("Content-Encoding"), zipped.Code, zipped.Header().Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, _ := io.ReadAll(zr)
	if string(unzipped) != plain.Body.String() {
		t.Fatal("gzipped and plain bodies differ")
	}
	var got api.Snapshot
	if err := json.Unmarshal(unzipped, &got); err != nil || got.Gateway != "gw-a" || got.Revision != rev {
		t.Fatalf("body: %v %+v", err, got)
	}
	s, _ := srv.Snapshot("gw-a")
	if !reflect.DeepEqual(s, &got) {
		t.Fatalf("Snapshot %+v, sync body %+v", s, got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if w, err := srv.Watch(ctx, "gw-a", 0); err != nil || !reflect.DeepEqual(w, &got) {
		t.Fatalf("Watch: %v %+v", err, w)
	}
}
