package controlplane

import (
	"testing"

	"github.com/egw-project/egw/api"
)

const siteA = `{"kind":"ESite","apiVersion":"v1","metadata":{"name":"site-a"}}`

func TestRevisionBumpsOncePerWrite(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	if rev, _ := s.Revision(); rev != 0 {
		t.Fatalf("empty store at revision %d", rev)
	}
	rev1 := mustApply(t, s, siteA+`{"kind":"ESite","metadata":{"name":"site-b"}}`)
	if rev1 != 1 {
		t.Fatalf("first write: revision %d, want 1 (one transaction for the batch)", rev1)
	}
	o, err := s.Get("ESite", "site-a")
	if err != nil {
		t.Fatal(err)
	}
	if m := o.GetMeta(); m.ResourceVersion != 1 || m.CreationRevision != 1 {
		t.Fatalf("resourceVersion %d creationRevision %d, want 1 1", m.ResourceVersion, m.CreationRevision)
	}
	rev2 := mustApply(t, s, `{"kind":"ESite","metadata":{"name":"site-c"}}`)
	if rev2 != 2 {
		t.Fatalf("second write: revision %d, want 2", rev2)
	}
	// site-a did not change: its resourceVersion stays.
	o, _ = s.Get("ESite", "site-a")
	if o.GetMeta().ResourceVersion != 1 {
		t.Fatalf("untouched object's resourceVersion moved to %d", o.GetMeta().ResourceVersion)
	}
	// Identical re-apply: no write, same revision, "unchanged".
	rev3, res, err := s.Apply(decode(t, siteA))
	if err != nil || rev3 != 2 || len(res) != 1 || res[0].Action != "unchanged" {
		t.Fatalf("re-apply: rev %d results %v err %v; want 2 [unchanged]", rev3, res, err)
	}
	// Label change: configured, new resourceVersion, creationRevision kept.
	rev4, res, err := s.Apply(decode(t, `{"kind":"ESite","metadata":{"name":"site-a","labels":{"x":"y"}}}`))
	if err != nil || rev4 != 3 || res[0].Action != "configured" {
		t.Fatalf("change: rev %d results %v err %v", rev4, res, err)
	}
	o, _ = s.Get("ESite", "site-a")
	if m := o.GetMeta(); m.ResourceVersion != 3 || m.CreationRevision != 1 {
		t.Fatalf("after change: resourceVersion %d creationRevision %d, want 3 1", m.ResourceVersion, m.CreationRevision)
	}
	if rev, err := s.Delete("ESite", "site-c"); err != nil || rev != 4 {
		t.Fatalf("delete: rev %d err %v", rev, err)
	}
}

func TestStoreIsDurableAndSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !s.Backend().(*BoltBackend).Durable() {
		t.Fatal("bbolt NoSync is set: commits would not be fsynced")
	}
	mustApply(t, s, siteA)
	s.Close()
	s = openStore(t, dir, testConfig())
	if rev, _ := s.Revision(); rev != 1 {
		t.Fatalf("revision after reopen %d, want 1", rev)
	}
	if _, err := s.Get("ESite", "site-a"); err != nil {
		t.Fatal(err)
	}
}

func TestStaleUpdateIsConflict(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, siteA)
	mustApply(t, s, `{"kind":"ESite","metadata":{"name":"site-a","labels":{"v":"2"}}}`) // now at 2
	o := decode(t, `{"kind":"ESite","metadata":{"name":"site-a","labels":{"v":"3"}}}`)[0]
	_, err := s.Update(o, 1)
	wantErr(t, err, CodeConflict, "ESite/site-a", "metadata.resourceVersion", "is 1 but the stored object is at 2")
	if !IsConflict(err) {
		t.Fatal("IsConflict false")
	}
	// Apply with a stale resourceVersion is refused too.
	o.GetMeta().ResourceVersion = 1
	_, _, err = s.Apply([]api.Object{o})
	wantErr(t, err, CodeConflict, "ESite/site-a", "metadata.resourceVersion", "changed since you read it")
	if rev, _ := s.Revision(); rev != 2 {
		t.Fatalf("revision %d after refused writes, want 2", rev)
	}
	got, _ := s.Get("ESite", "site-a")
	if got.GetMeta().Labels["v"] != "2" {
		t.Fatal("a refused update was stored")
	}
	// The right resourceVersion is accepted.
	if _, err := s.Update(o, 2); err != nil {
		t.Fatal(err)
	}
	// Create of an existing object, update and delete of an absent one.
	_, err = s.Create(decode(t, siteA)[0])
	wantErr(t, err, CodeConflict, "ESite/site-a", "", "already exists")
	_, err = s.Update(decode(t, `{"kind":"ESite","metadata":{"name":"nope"}}`)[0], 0)
	wantErr(t, err, CodeNotFound, "ESite/nope", "", "not found")
	_, err = s.Delete("ESite", "nope")
	wantErr(t, err, CodeNotFound, "ESite/nope", "", "not found")
}

func TestBatchIsAllOrNothing(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, siteA)
	cases := []struct {
		name               string
		text               string
		code               ErrorCode
		object, field, msg string
	}{
		{"invalid object", siteA + `{"kind":"ESite","metadata":{"name":"site-b"}}
			{"kind":"EService","metadata":{"name":"svc"},"protocol":"TCP","port":0,"ip":"10.0.0.1","eSiteName":"site-a"}`,
			CodeInvalid, "EService/svc", "port", ""},
		{"cross-object rule", `{"kind":"ESite","metadata":{"name":"site-b"}}
			{"kind":"EGateway","metadata":{"name":"gw"},"virtualPresenceIPcidr":"100.64.0.0/16","eSiteName":"site-b"}`,
			CodeInvalid, "EGateway/gw", "virtualPresenceIPcidr", "overlaps the overlay CIDR 100.64.0.0/10"},
		{"duplicate in request", `{"kind":"ESite","metadata":{"name":"site-b"}}{"kind":"ESite","metadata":{"name":"site-b"}}`,
			CodeBadRequest, "ESite/site-b", "", "appears twice"},
		{"stale member", `{"kind":"ESite","metadata":{"name":"site-b"}}{"kind":"ESite","metadata":{"name":"site-a","resourceVersion":"7","labels":{"a":"b"}}}`,
			CodeConflict, "ESite/site-a", "metadata.resourceVersion", "is 7"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := s.Apply(decode(t, c.text))
			wantErr(t, err, c.code, c.object, c.field, c.msg)
			if rev, _ := s.Revision(); rev != 1 {
				t.Fatalf("revision %d after a refused batch, want 1", rev)
			}
			if _, err := s.Get("ESite", "site-b"); !IsNotFound(err) {
				t.Fatalf("site-b of a refused batch was stored (err %v)", err)
			}
		})
	}
	// DeleteAll: one absent object refuses all.
	_, _, err := s.DeleteAll([]Ref{{"ESite", "site-a"}, {"ESite", "absent"}})
	wantErr(t, err, CodeNotFound, "ESite/absent", "", "not found")
	if _, err := s.Get("ESite", "site-a"); err != nil {
		t.Fatal("a refused batch delete removed site-a")
	}
}

func TestManagedVirtualPresenceIsProtected(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, twoSites)
	vps, _, _ := s.List("VirtualPresence")
	if len(vps) != 1 {
		t.Fatalf("want 1 managed VirtualPresence, got %d", len(vps))
	}
	name := vps[0].GetMeta().Name
	_, err := s.Delete("VirtualPresence", name)
	wantErr(t, err, CodeInvalid, "VirtualPresence/"+name, "metadata.labels", `is managed by ServiceExpose "web" and cannot be deleted by hand`)
	vp := vps[0].(*api.VirtualPresence)
	vp.VirtualIP = "192.168.0.99"
	_, err = s.Update(vp, 0)
	wantErr(t, err, CodeInvalid, "VirtualPresence/"+name, "metadata.labels", "cannot be changed by hand")
}
