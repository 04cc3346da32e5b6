package controlplane

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// syncRequest runs one sync request as if it came from remote.
func syncRequest(h http.Handler, method, path, remote, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSyncLongPoll(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 50 * time.Millisecond})
	if _, _, err := srv.Apply(decode(t, twoSites)); err != nil {
		t.Fatal(err)
	}
	h := srv.SyncHandler()
	const edgeA = "100.64.4.1:40000" // gw-a's overlay IP
	const edgeB = "100.64.8.1:40000"

	// since=0: answered at once with the current snapshot.
	rec := syncRequest(h, "GET", "/v1/sync?since=0", edgeA, "")
	if rec.Code != 200 {
		t.Fatalf("first sync: %d %s", rec.Code, rec.Body)
	}
	snap := decodeJSON[api.Snapshot](t, rec)
	if snap.Gateway != "gw-a" || snap.Revision != 1 {
		t.Fatalf("snapshot %s at %d", snap.Gateway, snap.Revision)
	}

	// Nothing newer: 204 after the (injected) timeout.
	start := time.Now()
	rec = syncRequest(h, "GET", "/v1/sync?since=1", edgeA, "")
	if rec.Code != 204 {
		t.Fatalf("up-to-date sync: %d", rec.Code)
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("long poll took %v with a 50ms timeout", d)
	}

	// A write that concerns gw-a wakes a waiting poll.
	srvSlow := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 10 * time.Second})
	if _, _, err := srvSlow.Apply(decode(t, twoSites)); err != nil {
		t.Fatal(err)
	}
	hs := srvSlow.SyncHandler()
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- syncRequest(hs, "GET", "/v1/sync?since=1", edgeA, "") }()
	// An unrelated write (a server at site-b nobody allows) changes nothing for gw-a...
	if _, _, err := srvSlow.Apply(decode(t, `{"kind":"EServer","metadata":{"name":"b9"},"ip":"10.0.0.99","eSiteName":"site-b"}`)); err != nil {
		t.Fatal(err)
	}
	if snap, _ := srvSlow.Snapshot("gw-a"); snap.Revision != 1 {
		t.Fatalf("an unrelated write moved gw-a's snapshot to revision %d", snap.Revision)
	}
	select {
	case rec := <-done:
		t.Fatalf("poll answered %d after an unrelated write", rec.Code)
	case <-time.After(100 * time.Millisecond):
	}
	// ...a policy change that allows c2 does.
	rev, _, err := srvSlow.Apply(decode(t, `{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}
		{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}`))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case rec := <-done:
		snap := decodeJSON[api.Snapshot](t, rec)
		if rec.Code != 200 || snap.Revision != rev || len(snap.VIPs[0].AllowedClients) != 2 {
			t.Fatalf("woken poll: %d revision %d (want %d) VIPs %+v", rec.Code, snap.Revision, rev, snap.VIPs)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the poll was not woken by a change of its snapshot")
	}

	// Identity: an address outside every gateway's prefix is refused.
	for _, remote := range []string{"10.0.0.20:1234", "100.65.0.1:1", "garbage"} {
		if rec := syncRequest(h, "GET", "/v1/sync?since=0", remote, ""); rec.Code != 403 {
			t.Fatalf("sync from %s: %d, want 403", remote, rec.Code)
		}
	}
	if rec := syncRequest(h, "GET", "/v1/sync?since=x", edgeA, ""); rec.Code != 400 {
		t.Fatalf("bad since: %d", rec.Code)
	}
	// Each gateway gets its own snapshot.
	if snap := decodeJSON[api.Snapshot](t, syncRequest(h, "GET", "/v1/sync", edgeB, "")); snap.Gateway != "gw-b" {
		t.Fatalf("gw-b got %s's snapshot", snap.Gateway)
	}
}

func TestSyncReport(t *testing.T) {
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	srv := newServer(t, t.TempDir(), testConfig(), Options{SyncTimeout: 50 * time.Millisecond, Now: func() time.Time { return now }})
	if _, _, err := srv.Apply(decode(t, twoSites)); err != nil {
		t.Fatal(err)
	}
	h := srv.SyncHandler()
	body := `{"gateway":"gw-b","appliedRevision":1,"leases":[{"pool":"client","used":2,"size":510}],"drops":{"denied":3}}`
	if rec := syncRequest(h, "POST", "/v1/report", "100.64.4.77:5000", body); rec.Code != 204 {
		t.Fatalf("report: %d %s", rec.Code, rec.Body)
	}
	st, err := srv.Status()
	if err != nil {
		t.Fatal(err)
	}
	var a, b api.GatewayStatus
	for _, g := range st.Gateways {
		switch g.Name {
		case "gw-a":
			a = g
		case "gw-b":
			b = g
		}
	}
	// The report counts for the caller (gw-a), whatever gateway it claims.
	if a.AppliedRevision != 1 || a.Drops["denied"] != 3 || a.Leases[0].Size != 510 || !a.Connected || !a.LastReport.Equal(now) {
		t.Fatalf("gw-a status %+v", a)
	}
	if b.AppliedRevision != 0 || b.Connected {
		t.Fatalf("gw-b status %+v", b)
	}
	if rec := syncRequest(h, "POST", "/v1/report", "100.64.4.77:5000", "{"); rec.Code != 400 {
		t.Fatalf("bad report: %d", rec.Code)
	}
	big := fmt.Sprintf(`{"drops":{"x":%s1}}`, strings.Repeat("0", MaxBodySize))
	if rec := syncRequest(h, "POST", "/v1/report", "100.64.4.77:5000", big); rec.Code != 413 {
		t.Fatalf("oversized report: %d", rec.Code)
	}
	if rec := syncRequest(h, "POST", "/v1/report", "192.0.2.1:5000", body); rec.Code != 403 {
		t.Fatalf("report from outside: %d", rec.Code)
	}
}
