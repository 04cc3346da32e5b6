package controlplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// The contract suite: what every Backend, and the Store on it, must do. Each case runs
// on bbolt and on etcd (in-process, see testEtcdURL).

// backendCase opens a fresh backend; replica opens another handle on the same data (a
// second cloud gateway process), or is nil where the backend is one process's (bbolt).
type backendCase struct {
	name    string
	open    func(t *testing.T) Backend
	replica func(t *testing.T, first Backend) Backend
}

func backendCases() []backendCase {
	return []backendCase{
		{name: "bbolt", open: func(t *testing.T) Backend {
			b, err := OpenBolt(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		}},
		{name: "etcd", open: func(t *testing.T) Backend {
			return openEtcd(t, testEtcdURL(t), testPrefix(t))
		}, replica: func(t *testing.T, first Backend) Backend {
			return openEtcd(t, testEtcdURL(t), first.(*EtcdBackend).Prefix())
		}},
	}
}

func forEachBackend(t *testing.T, fn func(t *testing.T, c backendCase)) {
	for _, c := range backendCases() {
		t.Run(c.name, func(t *testing.T) { fn(t, c) })
	}
}

func listBucket(t *testing.T, b Backend, bucket string) string {
	t.Helper()
	var out []string
	err := b.View(func(tx Tx) error {
		return tx.ForEach(bucket, func(k string, v []byte) error {
			out = append(out, k+"="+string(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

func TestBackendContractReadWrite(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b := c.open(t)
		err := b.Update(func(tx Tx) error {
			for _, k := range []string{"b", "a", "c/d"} {
				if err := tx.Put(bucketObjects, k, []byte("v"+k)); err != nil {
					return err
				}
			}
			return tx.Put(bucketMeta, "m", []byte("meta"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := listBucket(t, b, bucketObjects); got != "a=va b=vb c/d=vc/d" {
			t.Fatalf("objects: %q", got)
		}
		if got := listBucket(t, b, bucketMeta); got != "m=meta" {
			t.Fatalf("meta: %q", got)
		}
		// Inside one transaction, reads see its own writes.
		err = b.Update(func(tx Tx) error {
			if err := tx.Delete(bucketObjects, "a"); err != nil {
				return err
			}
			if err := tx.Put(bucketObjects, "b", []byte("new")); err != nil {
				return err
			}
			if err := tx.Put(bucketObjects, "e", []byte("ve")); err != nil {
				return err
			}
			if v := tx.Get(bucketObjects, "a"); v != nil {
				return fmt.Errorf("deleted key reads %q", v)
			}
			if v := string(tx.Get(bucketObjects, "b")); v != "new" {
				return fmt.Errorf("written key reads %q", v)
			}
			var keys []string
			tx.ForEach(bucketObjects, func(k string, _ []byte) error { keys = append(keys, k); return nil })
			if got := strings.Join(keys, " "); got != "b c/d e" {
				return fmt.Errorf("ForEach in the transaction: %q", got)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if got := listBucket(t, b, bucketObjects); got != "b=new c/d=vc/d e=ve" {
			t.Fatalf("after update: %q", got)
		}
		// A View cannot write; a missing key reads nil.
		err = b.View(func(tx Tx) error {
			if tx.Get(bucketObjects, "missing") != nil {
				return errors.New("missing key is not nil")
			}
			if tx.Put(bucketObjects, "x", []byte("y")) == nil {
				return errors.New("Put in a View succeeded")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestBackendContractFailedUpdateWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		b := c.open(t)
		boom := errors.New("boom")
		err := b.Update(func(tx Tx) error {
			tx.Put(bucketObjects, "a", []byte("1"))
			tx.Put(bucketMeta, "m", []byte("2"))
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		if got := listBucket(t, b, bucketObjects) + listBucket(t, b, bucketMeta); got != "" {
			t.Fatalf("a failed Update wrote %q", got)
		}
	})
}

// TestBackendContractSerializable: concurrent read-modify-write transactions lose no
// update — on etcd from two processes' worth of backends (replicas) at once. Each
// transaction also appends to a bucket at the index it counted by iterating it, so a
// phantom (a key another transaction added after this one iterated) shows as a lost key.
func TestBackendContractSerializable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		first := c.open(t)
		bs := []Backend{first, first}
		if c.replica != nil {
			bs[1] = c.replica(t, first)
		}
		const workers, each = 4, 15
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				b := bs[w%2]
				for range each {
					err := b.Update(func(tx Tx) error {
						var n uint64
						if v := tx.Get(bucketMeta, "counter"); len(v) == 8 {
							n = binary.BigEndian.Uint64(v)
						}
						var nb [8]byte
						binary.BigEndian.PutUint64(nb[:], n+1)
						if err := tx.Put(bucketMeta, "counter", nb[:]); err != nil {
							return err
						}
						items := 0
						tx.ForEach(bucketObjects, func(string, []byte) error { items++; return nil })
						return tx.Put(bucketObjects, fmt.Sprintf("item-%04d", items), []byte(fmt.Sprint(w)))
					})
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var n uint64
		items := 0
		first.View(func(tx Tx) error {
			n = binary.BigEndian.Uint64(tx.Get(bucketMeta, "counter"))
			return tx.ForEach(bucketObjects, func(string, []byte) error { items++; return nil })
		})
		if n != workers*each || items != workers*each {
			t.Fatalf("counter %d, items %d; want %d each (a lost update or a phantom)", n, items, workers*each)
		}
		if eb, ok := first.(*EtcdBackend); ok {
			t.Logf("etcd: %d transactions run again after losing a race", eb.Conflicts()+bs[1].(*EtcdBackend).Conflicts())
		}
	})
}

// TestBackendContractWatch: a Watcher reports writes made through another handle. bbolt is
// not a Watcher: one process owns the file, so no one else writes.
func TestBackendContractWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		first := c.open(t)
		w, ok := first.(Watcher)
		if c.replica == nil {
			if ok {
				t.Fatal("a single-process backend implements Watcher")
			}
			return
		}
		if !ok {
			t.Fatal("a shared backend does not implement Watcher")
		}
		revs := make(chan int64, 16)
		w.Watch(t.Context(), func(rev int64) { revs <- rev })
		other := c.replica(t, first)
		if err := other.Update(func(tx Tx) error { return tx.Put(bucketObjects, "x", []byte("1")) }); err != nil {
			t.Fatal(err)
		}
		select {
		case rev := <-revs:
			if rev <= 0 {
				t.Fatalf("revision %d", rev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no notification of another handle's write")
		}
		if got := listBucket(t, first, bucketObjects); got != "x=1" {
			t.Fatalf("after the notification: %q", got)
		}
	})
}

// storeCase returns two Stores on one store: replicas on etcd, one Store twice on bbolt.
func storeCase(t *testing.T, c backendCase) (*Store, *Store) {
	b := c.open(t)
	a := NewStore(b, testConfig())
	if c.replica == nil {
		return a, a
	}
	return a, NewStore(c.replica(t, b), testConfig())
}

func TestStoreContractCRUD(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		s, other := storeCase(t, c)
		if rev, err := s.Revision(); err != nil || rev != 0 {
			t.Fatalf("empty store: revision %d, %v", rev, err)
		}
		site, _ := api.New(api.KindESite)
		site.GetMeta().Name = "site-a"
		o, err := s.Create(site)
		if err != nil {
			t.Fatal(err)
		}
		if m := o.GetMeta(); m.ResourceVersion != 1 || m.CreationRevision != 1 {
			t.Fatalf("created at rv %d cr %d", m.ResourceVersion, m.CreationRevision)
		}
		if _, err := other.Create(site); !IsConflict(err) {
			t.Fatalf("second create: %v", err)
		}
		// Update through the other replica with the resourceVersion read.
		upd := api.DeepCopy(o)
		upd.GetMeta().Labels = map[string]string{"tier": "1"}
		o2, err := other.Update(upd, 1)
		if err != nil {
			t.Fatal(err)
		}
		if o2.GetMeta().ResourceVersion != 2 {
			t.Fatalf("updated at rv %d", o2.GetMeta().ResourceVersion)
		}
		// A stale resourceVersion is a conflict, on Update and on Apply.
		upd.GetMeta().Labels = map[string]string{"tier": "2"}
		if _, err := s.Update(upd, 1); !IsConflict(err) {
			t.Fatalf("stale update: %v", err)
		}
		upd.GetMeta().ResourceVersion = 1
		if _, _, err := s.Apply([]api.Object{upd}); !IsConflict(err) {
			t.Fatalf("stale apply: %v", err)
		}
		// Re-applying what is stored does not move the revision.
		rev, res, err := s.Apply([]api.Object{o2})
		if err != nil || rev != 2 || res[0].Action != "unchanged" {
			t.Fatalf("unchanged apply: rev %d %v %v", rev, res, err)
		}
		mustApply(t, other, `{"kind":"ESite","metadata":{"name":"site-b"}}`)
		items, rev, err := s.List(api.KindESite)
		if err != nil || rev != 3 || len(items) != 2 || items[0].GetMeta().Name != "site-a" || items[1].GetMeta().Name != "site-b" {
			t.Fatalf("list: rev %d %d items, %v", rev, len(items), err)
		}
		if rev, err := s.Delete(api.KindESite, "site-b"); err != nil || rev != 4 {
			t.Fatalf("delete: rev %d %v", rev, err)
		}
		if _, err := other.Get(api.KindESite, "site-b"); !IsNotFound(err) {
			t.Fatalf("get of the deleted: %v", err)
		}
		if _, err := other.Delete(api.KindESite, "site-b"); !IsNotFound(err) {
			t.Fatalf("second delete: %v", err)
		}
		if rev, _ := other.Revision(); rev != 4 {
			t.Fatalf("revision %d after 4 writes and 3 refused or idle ones", rev)
		}
		ida, err := s.ID()
		if err != nil {
			t.Fatal(err)
		}
		if idb, _ := other.ID(); idb != ida {
			t.Fatalf("store IDs %s and %s", ida, idb)
		}
	})
}

func TestStoreContractApplyAllOrNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		s, other := storeCase(t, c)
		mustApply(t, s, twoSites)
		before, _ := s.Load()
		// The last object is invalid (a second gateway for site-a): nothing of the batch is stored.
		_, _, err := other.Apply(decode(t, `
{"kind":"ESite","metadata":{"name":"site-c"}}
{"kind":"EGateway","metadata":{"name":"gw-c"},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"site-c"}
{"kind":"EGateway","metadata":{"name":"gw-a2"},"virtualPresenceIPcidr":"192.168.1.0/24","eSiteName":"site-a"}`))
		if codeOf(err) != CodeInvalid {
			t.Fatalf("err = %v", err)
		}
		after, _ := s.Load()
		if after.Revision != before.Revision || len(after.Objects) != len(before.Objects) || !after.IPAM.equal(before.IPAM) {
			t.Fatalf("a refused apply changed the store: revision %d -> %d, %d -> %d objects", before.Revision, after.Revision, len(before.Objects), len(after.Objects))
		}
	})
}

// TestStoreContractWatch: a Server sees writes made through another replica (Follow) and
// wakes the long polls of the gateways they concern; on bbolt, through its own writes.
func TestStoreContractWatch(t *testing.T) {
	forEachBackend(t, func(t *testing.T, c backendCase) {
		s, other := storeCase(t, c)
		srv, err := NewServer(s, Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv.Follow(t.Context())
		mustApply(t, srv, twoSites)
		snap, ok := srv.Snapshot("gw-a")
		if !ok {
			t.Fatal("no snapshot of gw-a")
		}
		got := make(chan *api.Snapshot, 1)
		go func() {
			s, err := srv.Watch(t.Context(), "gw-a", snap.Revision)
			if err == nil {
				got <- s
			}
		}()
		time.Sleep(20 * time.Millisecond)
		writer := Backend(nil)
		if c.replica != nil {
			writer = other.Backend()
		}
		policy := `{"kind":"EPolicy","metadata":{"name":"p1"},"allowedServers":["c1","c2"]}
{"kind":"EServer","metadata":{"name":"c2"},"ip":"10.0.0.21","eSiteName":"site-a"}`
		if writer != nil {
			mustApply(t, other, policy) // another replica
		} else {
			mustApply(t, srv, policy)
		}
		select {
		case s := <-got:
			if s.Revision <= snap.Revision {
				t.Fatalf("woken with revision %d, had %d", s.Revision, snap.Revision)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the long poll was not woken by the write")
		}
	})
}

// TestStoreReplicasAllocateWithoutCollisions: two replicas on one etcd apply gateways,
// services and exposures at the same time; every overlay prefix, service address and VIP
// is allocated once.
func TestStoreReplicasAllocateWithoutCollisions(t *testing.T) {
	url := testEtcdURL(t)
	p := testPrefix(t)
	cfg := testConfig()
	r1 := openEtcdStore(t, url, p, cfg)
	r2 := openEtcdStore(t, url, p, cfg)
	mustApply(t, r1, `{"kind":"ESite","metadata":{"name":"consumer"}}
{"kind":"EGateway","metadata":{"name":"gw-consumer"},"virtualPresenceIPcidr":"192.168.50.0/24","eSiteName":"consumer"}
{"kind":"EServer","metadata":{"name":"c1"},"ip":"10.9.0.20","eSiteName":"consumer"}
{"kind":"EPolicy","metadata":{"name":"p"},"allowedServers":["c1"]}`)
	const each = 8
	var wg sync.WaitGroup
	errs := make(chan error, 2*each)
	for ri, r := range []*Store{r1, r2} {
		wg.Go(func() {
			for i := range each {
				n := fmt.Sprintf("r%d-%d", ri, i)
				objs, err := api.Decode("test", []byte(fmt.Sprintf(`
{"kind":"ESite","metadata":{"name":"s-%[1]s"}}
{"kind":"EGateway","metadata":{"name":"gw-%[1]s"},"virtualPresenceIPcidr":"192.168.60.0/24","eSiteName":"s-%[1]s"}
{"kind":"EService","metadata":{"name":"svc-%[1]s"},"protocol":"TCP","port":80,"ip":"10.0.0.10","eSiteName":"s-%[1]s"}
{"kind":"ServiceExpose","metadata":{"name":"svc-%[1]s"},"eServiceName":"svc-%[1]s","dnsName":"svc-%[1]s.example.com","eSites":["consumer"],"ePolicys":["p"]}`, n)))
				if err != nil {
					errs <- err
					return
				}
				if _, _, err := r.Apply(objs); err != nil {
					errs <- fmt.Errorf("replica %d: %w", ri, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st1, err := r1.Load()
	if err != nil {
		t.Fatal(err)
	}
	st2, err := r2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if st1.Revision != st2.Revision || !st1.IPAM.equal(st2.IPAM) {
		t.Fatalf("replicas disagree: revision %d vs %d", st1.Revision, st2.Revision)
	}
	prefixes := map[netip.Prefix]string{}
	for gw, pf := range st1.IPAM.Gateways {
		if prev, dup := prefixes[pf]; dup {
			t.Fatalf("overlay prefix %s given to %s and %s", pf, prev, gw)
		}
		prefixes[pf] = gw
	}
	if len(prefixes) != 2*each+1 {
		t.Fatalf("%d overlay prefixes, want %d", len(prefixes), 2*each+1)
	}
	ovs := map[netip.Addr]string{}
	for svc, sa := range st1.IPAM.Services {
		if prev, dup := ovs[sa.Addr]; dup {
			t.Fatalf("overlay address %s given to %s and %s", sa.Addr, prev, svc)
		}
		ovs[sa.Addr] = svc
	}
	vips := map[string]string{}
	for _, o := range st1.List(api.KindVirtualPresence) {
		vp := o.(*api.VirtualPresence)
		if vp.Metadata.Labels[LabelManaged] != "true" {
			continue
		}
		if prev, dup := vips[vp.VirtualIP]; dup {
			t.Fatalf("VIP %s given to %s and %s", vp.VirtualIP, prev, vp.Metadata.Name)
		}
		vips[vp.VirtualIP] = vp.Metadata.Name
	}
	if len(ovs) != 2*each || len(vips) != 2*each {
		t.Fatalf("%d service addresses and %d VIPs, want %d each", len(ovs), len(vips), 2*each)
	}
	t.Logf("%d writes from two replicas: %d transactions run again after losing a race",
		2*each, r1.Backend().(*EtcdBackend).Conflicts()+r2.Backend().(*EtcdBackend).Conflicts())
}
