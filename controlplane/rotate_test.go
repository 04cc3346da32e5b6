package controlplane

import (
	"strings"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func TestKeyRotation(t *testing.T) {
	w := newJoinWorld(t)
	mustApply(t, w.srv, `{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"`+keyA+`"}`)
	h := w.srv.SyncHandler()
	const edgeA = "100.64.4.1:40000"
	snap := decodeJSON[api.Snapshot](t, syncRequest(h, "GET", "/v1/sync?since=0", edgeA, ""))
	// Without a request, a new key is refused.
	if rec := syncRequest(h, "POST", "/v1/rotate", edgeA, `{"publicKey":"`+keyC+`","nonce":"1"}`); rec.Code != 409 {
		t.Fatalf("unrequested rotation: %d %s", rec.Code, rec.Body)
	}
	// A waiting poll learns of the request at once.
	done := make(chan string, 1)
	go func() {
		rec := syncRequest(h, "GET", "/v1/sync?since="+itoa(snap.Revision), edgeA, "")
		done <- rec.Header().Get(HeaderRotate)
	}()
	for w.srv.waitingPolls("gw-a") == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := w.srv.RequestKeyRotation("gw-a"); err != nil {
		t.Fatal(err)
	}
	var nonce string
	select {
	case nonce = <-done:
	case <-time.After(time.Second):
		t.Fatal("the waiting poll was not answered")
	}
	if nonce == "" {
		t.Fatal("no rotation header")
	}
	if rec := syncRequest(h, "POST", "/v1/rotate", edgeA, `{"publicKey":"`+keyC+`","nonce":"other"}`); rec.Code != 409 {
		t.Fatalf("wrong nonce: %d", rec.Code)
	}
	if rec := syncRequest(h, "POST", "/v1/rotate", edgeA, `{"publicKey":"`+keyA+`","nonce":"`+nonce+`"}`); rec.Code != 409 {
		t.Fatalf("the key in use: %d", rec.Code)
	}
	rec := syncRequest(h, "POST", "/v1/rotate", edgeA, `{"publicKey":"`+keyC+`","nonce":"`+nonce+`"}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "switchAfter") {
		t.Fatalf("rotation: %d %s", rec.Code, rec.Body)
	}
	if w.key(t, "gw-a") != keyC {
		t.Fatal("the key was not replaced")
	}
	if hub, _ := w.srv.Snapshot("cloud-gw"); !hasPeerKey(hub, keyC) || hasPeerKey(hub, keyA) {
		t.Fatal("the hub's snapshot does not have exactly the new key")
	}
	o, _ := w.srv.Store().Get(api.KindEGateway, "gw-a")
	if a := o.GetMeta().Annotations; a[AnnotationKeyRotated] == "" || a[AnnotationRotateRequested] != "" {
		t.Fatalf("annotations %v", a)
	}
	// The old key is revoked; the rotation header is gone; the gateway still syncs.
	_, _, err := w.srv.Apply(decode(t, `{"kind":"EGateway","metadata":{"name":"gw-a"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-a","publicKey":"`+keyA+`"}`))
	wantErr(t, err, CodeInvalid, "EGateway/gw-a", "publicKey", "revoked")
	rec = syncRequest(h, "GET", "/v1/sync?since=0", edgeA, "")
	if rec.Code != 200 || rec.Header().Get(HeaderRotate) != "" {
		t.Fatalf("sync after the rotation: %d %q", rec.Code, rec.Header().Get(HeaderRotate))
	}
	if _, err := w.srv.RequestKeyRotation("gw-c"); !IsConflict(err) {
		t.Fatalf("rotation of a gateway without a key: %v", err)
	}
}
