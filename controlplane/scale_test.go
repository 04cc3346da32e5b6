package controlplane

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/egw-project/egw/api"
)

// TestDefaultAddressPlan: the default overlay holds 16,384 gateway prefixes (the hub's
// included), each with 126 service and 127 client addresses.
func TestDefaultAddressPlan(t *testing.T) {
	cfg := Config{HubGateway: "h", HubSite: "s"}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if n := prefixCount(cfg); n < 16384 {
		t.Fatalf("the default plan holds %d gateways", n)
	}
	p, _ := subPrefix(cfg.OverlayCIDR, cfg.OverlayPrefixLen, 16383)
	if p.String() != "100.127.255.0/24" {
		t.Fatalf("last prefix %s", p)
	}
	lo, hi, _ := lowerHalf(p)
	if hi-lo+1 != 126 {
		t.Fatalf("%d service addresses", hi-lo+1)
	}
}

// TestGatewayAddWhenFull: with no overlay prefix left, creating a gateway (egwctl gateway
// add) fails with 507 and stores nothing, while apply stores it with Allocated=False; a
// freed prefix goes to the gateway that waited for one.
func TestGatewayAddWhenFull(t *testing.T) {
	cfg := testConfig()
	cfg.OverlayCIDR, cfg.OverlayPrefixLen = netip.MustParsePrefix("100.64.0.0/22"), 24 // 4 prefixes: hub + 3
	srv := newServer(t, t.TempDir(), cfg, Options{})
	if err := srv.EnsureHub("192.168.9.0/24", "", ""); err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	gw := func(name string) string {
		return fmt.Sprintf(`{"kind":"EGateway","metadata":{"name":%q},"virtualPresenceIPcidr":"192.168.0.0/24","eSiteName":"s-%s"}`, name, name)
	}
	for _, n := range []string{"a", "b", "c"} {
		if rec := do(t, h, "POST", "/v1/egateways", gw(n)); rec.Code != 201 {
			t.Fatalf("create %s: %d %s", n, rec.Code, rec.Body)
		}
	}
	rev, _ := srv.Store().Revision()
	rec := do(t, h, "POST", "/v1/egateways", gw("d"))
	if rec.Code != 507 || !strings.Contains(rec.Body.String(), "no overlay prefix left") || !strings.Contains(rec.Body.String(), "nothing was stored") {
		t.Fatalf("create on a full plan: %d %s", rec.Code, rec.Body)
	}
	if r2, _ := srv.Store().Revision(); r2 != rev {
		t.Fatalf("a refused create moved the revision %d -> %d", rev, r2)
	}
	if _, err := srv.Store().Get(api.KindEGateway, "d"); !IsNotFound(err) {
		t.Fatalf("refused gateway stored: %v", err)
	}
	// Apply keeps it, without a prefix.
	if rec := do(t, h, "POST", "/v1/apply", "["+gw("d")+"]"); rec.Code != 200 {
		t.Fatalf("apply: %d %s", rec.Code, rec.Body)
	}
	cond := func(name string) api.Condition {
		var g api.EGateway
		json.Unmarshal(do(t, h, "GET", "/v1/egateways/"+name, nil).Body.Bytes(), &g)
		for _, c := range g.Status.Conditions {
			if c.Type == CondAllocated {
				return c
			}
		}
		return api.Condition{}
	}
	if c := cond("d"); c.Status != "False" || c.Reason != "Exhausted" {
		t.Fatalf("d: %+v", c)
	}
	if _, ok := srv.Snapshot("d"); ok {
		t.Fatal("a gateway without a prefix has a snapshot")
	}
	// Deleting b frees its prefix, which d takes.
	bPrefix := mustSnap(t, srv, "b").OverlayPrefix
	if rec := do(t, h, "DELETE", "/v1/egateways/b", nil); rec.Code != 200 {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if c := cond("d"); c.Status != "True" {
		t.Fatalf("d after b went: %+v", c)
	}
	if s := mustSnap(t, srv, "d"); s.OverlayPrefix != bPrefix {
		t.Fatalf("d got %s, want b's %s", s.OverlayPrefix, bPrefix)
	}
}

// TestListPages: a list read page by page gives every object once, in name order, even
// when objects are created and deleted between pages; a bad token is refused.
func TestListPages(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	var objs []string
	for i := range 23 {
		objs = append(objs, fmt.Sprintf(`{"kind":"ESite","metadata":{"name":"s%02d"}}`, i))
	}
	if rec := do(t, h, "POST", "/v1/apply", "["+strings.Join(objs, ",")+"]"); rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	var names []string
	cont := ""
	for page := 0; ; page++ {
		path := "/v1/esites?limit=5"
		if cont != "" {
			path += "&continue=" + cont
		}
		rec := do(t, h, "GET", path, nil)
		var l struct {
			Metadata struct{ Continue, ResourceVersion string }
			Items    []api.ESite
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.Items) > 5 || l.Metadata.ResourceVersion == "" {
			t.Fatalf("page %d: %d %s", page, rec.Code, rec.Body)
		}
		for _, s := range l.Items {
			names = append(names, s.Metadata.Name)
		}
		if page == 1 {
			// s00 (already listed) goes, s99 (still ahead) comes: the rest is unaffected.
			if _, err := srv.Delete(api.KindESite, "s00"); err != nil {
				t.Fatal(err)
			}
			mustApply(t, srv, `{"kind":"ESite","metadata":{"name":"s99"}}`)
		}
		if l.Metadata.Continue == "" {
			break
		}
		cont = l.Metadata.Continue
	}
	want := []string{}
	for i := range 23 {
		want = append(want, fmt.Sprintf("s%02d", i))
	}
	want = append(want, "s99")
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("pages gave %v", names)
	}
	for _, bad := range []string{"limit=-1", "limit=x", "limit=5&continue=garbage", "limit=5&continue=" + encodeContinue(api.KindEService, "x")} {
		if rec := do(t, h, "GET", "/v1/esites?"+bad, nil); rec.Code != 400 {
			t.Errorf("%s: %d %s", bad, rec.Code, rec.Body)
		}
	}
	// Without limit: everything, no continue.
	var all struct {
		Metadata struct{ Continue string }
		Items    []api.ESite
	}
	json.Unmarshal(do(t, h, "GET", "/v1/esites", nil).Body.Bytes(), &all)
	if len(all.Items) != 23 || all.Metadata.Continue != "" {
		t.Fatalf("unpaged list: %d items, continue %q", len(all.Items), all.Metadata.Continue)
	}
}

// TestLegacyIPAMBlobMoved: a store whose allocations are the single blob of older versions
// is read as it is, and the next write stores them one key each and removes the blob.
func TestLegacyIPAMBlobMoved(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir, testConfig())
	mustApply(t, s, twoSites)
	want, _ := s.Load()
	// Rewrite it as an older version stored it: the blob, no per-key entries, managed
	// VirtualPresences as JSON objects.
	err := s.Backend().Update(func(tx Tx) error {
		blob, _ := json.Marshal(want.IPAM)
		if err := tx.Put(bucketMeta, keyIPAM, blob); err != nil {
			return err
		}
		var keys []string
		tx.ForEach(bucketIPAM, func(k string, _ []byte) error { keys = append(keys, k); return nil })
		for _, k := range keys {
			tx.Delete(bucketIPAM, k)
		}
		var vps []string
		tx.ForEach(bucketVIPs, func(k string, _ []byte) error { vps = append(vps, k); return nil })
		for _, n := range vps {
			data, _ := encodeStored(want.Objects[api.KindVirtualPresence+"/"+n])
			tx.Put(bucketObjects, api.KindVirtualPresence+"/"+n, data)
			tx.Delete(bucketVIPs, n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, dir, testConfig())
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if !got.IPAM.equal(want.IPAM) || len(got.Objects) != len(want.Objects) {
		t.Fatalf("legacy store read as %+v, %d objects", got.IPAM, len(got.Objects))
	}
	mustApply(t, s, `{"kind":"ESite","metadata":{"name":"site-z"}}`)
	s.Backend().View(func(tx Tx) error {
		if tx.Get(bucketMeta, keyIPAM) != nil {
			t.Error("the blob is still there")
		}
		if v := tx.Get(bucketIPAM, "g/gw-a"); string(v) != want.IPAM.Gateways["gw-a"].String() {
			t.Errorf("g/gw-a = %q", v)
		}
		return nil
	})
	s.Close()
	s = openStore(t, dir, testConfig())
	if again, _ := s.Load(); !again.IPAM.equal(want.IPAM) {
		t.Fatalf("after the move: %+v", again.IPAM)
	}
}

func TestSiteGateway(t *testing.T) {
	s := openStore(t, t.TempDir(), testConfig())
	mustApply(t, s, twoSites+`{"kind":"ESite","metadata":{"name":"empty"}}`)
	for _, c := range []struct {
		site   string
		gw     string
		exists bool
	}{{"site-a", "gw-a", true}, {"empty", "", true}, {"nowhere", "", false}} {
		g, exists, err := s.SiteGateway(c.site)
		name := ""
		if g != nil {
			name = g.Metadata.Name
		}
		if err != nil || exists != c.exists || name != c.gw {
			t.Errorf("%s: %q %v %v", c.site, name, exists, err)
		}
	}
}
