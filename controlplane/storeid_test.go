package controlplane

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// The store's ID is made once, kept in the file, and differs between stores.
func TestStoreIDPersists(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	id, err := s.ID()
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		t.Fatalf("store ID %q: want 32 hex digits", id)
	}
	if rev, _ := s.Revision(); rev != 0 {
		t.Fatalf("making the ID moved the revision to %d", rev)
	}
	s.Close()
	s = openStore(t, dir, testConfig())
	if again, err := s.ID(); err != nil || again != id {
		t.Fatalf("reopened store has ID %q (%v), want %q", again, err, id)
	}
	if other, _ := openStore(t, t.TempDir(), testConfig()).ID(); other == id {
		t.Fatalf("two new stores share the ID %q", id)
	}
	rotated, err := s.RotateID()
	if err != nil || rotated == id {
		t.Fatalf("RotateID = %q, %v (was %q)", rotated, err, id)
	}
	s.Close()
	if again, _ := openStore(t, dir, testConfig()).ID(); again != rotated {
		t.Fatalf("after RotateID the file holds %q, want %q", again, rotated)
	}
}

// An edge that holds revision 9 of an old store gets the new store's revision-1 snapshot
// at once, through Watch and through /v1/sync, with the new store's ID.
func TestSyncAfterStoreReset(t *testing.T) {
	old := newServer(t, t.TempDir(), testConfig(), Options{})
	mustApply(t, old, twoSites)
	for i := range 8 { // move the old store to revision 9, changing gw-a each time
		mustApply(t, old, fmt.Sprintf(`{"kind":"EServer","metadata":{"name":"c1"},"ip":"10.0.0.%d","eSiteName":"site-a"}`, 2+i))
	}
	oldSnap, _ := old.Snapshot("gw-a")
	if oldSnap.Revision != 9 || oldSnap.StoreID != old.StoreID() || oldSnap.StoreID == "" {
		t.Fatalf("old gw-a snapshot at %d with store %q (server's %q)", oldSnap.Revision, oldSnap.StoreID, old.StoreID())
	}

	fresh := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 2 * time.Second})
	mustApply(t, fresh, twoSites)
	if fresh.StoreID() == old.StoreID() {
		t.Fatal("a new store has the old one's ID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := fresh.Watch(ctx, "gw-a", oldSnap.Revision)
	if err != nil {
		t.Fatalf("Watch(since=%d) on the new store: %v", oldSnap.Revision, err)
	}
	if snap.Revision != 1 || snap.StoreID != fresh.StoreID() {
		t.Fatalf("Watch gave revision %d store %q", snap.Revision, snap.StoreID)
	}

	h := fresh.SyncHandler()
	const edgeA = "100.64.4.1:40000"
	cases := []struct {
		name  string
		query string
		code  int
	}{
		{"higher revision", "since=9", 200},
		{"higher revision, old store named", "since=9&storeID=" + old.StoreID(), 200},
		{"same revision of another store", "since=1&storeID=" + old.StoreID(), 200},
		{"same revision, store not named", "since=1", 204},
		{"same revision of this store", "since=1&storeID=" + fresh.StoreID(), 204},
		{"store ID too long", "since=1&storeID=" + strings.Repeat("a", 65), 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			rec := syncRequest(h, "GET", "/v1/sync?"+c.query, edgeA, "")
			if rec.Code != c.code {
				t.Fatalf("%s: %d %s, want %d", c.query, rec.Code, rec.Body, c.code)
			}
			if c.code != 200 {
				return
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("answered after %v; want at once", d)
			}
			snap := decodeJSON[api.Snapshot](t, rec)
			if snap.Revision != 1 || snap.StoreID != fresh.StoreID() {
				t.Fatalf("got revision %d store %q, want 1 and %q", snap.Revision, snap.StoreID, fresh.StoreID())
			}
		})
	}
}

// Every snapshot carries the store's ID, also after a restart of the server.
func TestSnapshotsCarryStoreID(t *testing.T) {
	dir := t.TempDir()
	st, err := Open(dir, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(st, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, srv, twoSites)
	id := srv.StoreID()
	for _, gw := range []string{"gw-a", "gw-b"} {
		if snap, ok := srv.Snapshot(gw); !ok || snap.StoreID != id {
			t.Fatalf("%s: snapshot %v with store %q, want %q", gw, ok, snap.StoreID, id)
		}
	}
	st.Close()
	srv = newServer(t, dir, testConfig(), Options{})
	if snap, _ := srv.Snapshot("gw-a"); snap.StoreID != id {
		t.Fatalf("after a restart gw-a has store %q, want %q", snap.StoreID, id)
	}
}

// A fifth poll of one gateway ends its oldest with 503; the others keep
// waiting, and nothing stays registered once every poll is answered.
func TestSyncPollLimit(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 20 * time.Second, MaxPollsPerGateway: 4})
	mustApply(t, srv, twoSites)
	h := srv.SyncHandler()
	const edgeA, edgeB = "100.64.4.1:40000", "100.64.8.1:40000"
	type answer struct {
		i   int
		rec *httptest.ResponseRecorder
	}
	answers := make(chan answer, 8)
	start := func(i int, remote string) {
		go func() { answers <- answer{i, syncRequest(h, "GET", "/v1/sync?since=1", remote, "")} }()
	}
	waitPolls := func(gw string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for srv.waitingPolls(gw) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d polls waiting, want %d", gw, srv.waitingPolls(gw), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 4 { // one at a time, so that poll 0 is the oldest
		start(i, edgeA)
		waitPolls("gw-a", i+1)
	}
	start(100, edgeB) // another gateway's poll counts for it alone
	waitPolls("gw-b", 1)
	start(4, edgeA)
	select {
	case a := <-answers:
		if a.i != 0 || a.rec.Code != 503 || a.rec.Header().Get("Retry-After") != "1" ||
			!strings.Contains(a.rec.Body.String(), "more than 4 sync polls waiting") {
			t.Fatalf("poll %d answered %d %q (Retry-After %q); want the oldest, 0, ended with 503",
				a.i, a.rec.Code, a.rec.Body, a.rec.Header().Get("Retry-After"))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the fifth poll did not end the oldest")
	}
	waitPolls("gw-a", 4)
	// A change of both snapshots answers the rest with 200.
	mustApply(t, srv, `{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
		{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}
		{"kind":"EService","metadata":{"name":"web2"},"protocol":"TCP","port":81,"ip":"10.1.0.11","eSiteName":"site-b"}
		{"kind":"ServiceExpose","metadata":{"name":"web2"},"eServiceName":"web2","eSites":["site-b"]}`)
	for range 5 {
		select {
		case a := <-answers:
			if a.rec.Code != 200 {
				t.Fatalf("poll %d answered %d %s after a change", a.i, a.rec.Code, a.rec.Body)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("waiting polls were not answered after a change")
		}
	}
	waitPolls("gw-a", 0)
	waitPolls("gw-b", 0)
}
