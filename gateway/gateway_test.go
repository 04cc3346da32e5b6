package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

func validEdgeConfig(dir string) Config {
	return Config{
		Name: "edge-a", Site: "site-a", StateDir: dir,
		OverlayCIDR: "100.64.0.0/10", OverlayPrefix: "100.64.4.0/22", VPCIDR: "192.168.0.0/24",
		Cloud: CloudConfig{Endpoint: "10.99.0.1:51820", PublicKey: "x", OverlayIP: "100.64.0.1", SyncPort: 7443},
		TUN:   TUNConfig{Name: "vp0", MTU: 1420, Driver: "wgtun"},
		NAT:   NATConfig{LeaseIdle: time.Minute},
	}
}

func TestParseConfig(t *testing.T) {
	p, err := Parse(validEdgeConfig(t.TempDir()), true)
	if err != nil {
		t.Fatal(err)
	}
	if p.OverlayIPA != netip.MustParseAddr("100.64.4.1") || p.VPAddr != netip.MustParseAddr("192.168.0.1") {
		t.Fatalf("derived addresses: overlay %v vp %v", p.OverlayIPA, p.VPAddr)
	}
	if !strings.HasSuffix(p.PrivateKeyFile, "private.key") {
		t.Fatalf("default key file %q", p.PrivateKeyFile)
	}
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Name = "" }, "name: is required"},
		{func(c *Config) { c.VPCIDR = "192.168.0.1/24" }, "vpCIDR: \"192.168.0.1/24\" is not canonical (did you mean 192.168.0.0/24?)"},
		{func(c *Config) { c.VPCIDR = "100.64.8.0/24" }, "vpCIDR: VP CIDR 100.64.8.0/24 overlaps the overlay CIDR 100.64.0.0/10"},
		{func(c *Config) { c.VPCIDR = "10.0.0.0/8" }, "vpCIDR: VP CIDR 10.0.0.0/8 is too large"},
		{func(c *Config) { c.OverlayIP = "100.64.9.1" }, "overlayIP: 100.64.9.1 is not inside overlayPrefix 100.64.4.0/22"},
		{func(c *Config) { c.OverlayPrefix = "10.0.0.0/22" }, "overlayPrefix: 10.0.0.0/22 is not inside overlayCIDR 100.64.0.0/10"},
		{func(c *Config) { c.Cloud.Endpoint = "cloud" }, "cloud.endpoint: \"cloud\" must be host:port"},
		{func(c *Config) { c.TUN.Driver = "tap" }, "tun.driver: must be wgtun or water, got \"tap\""},
		{func(c *Config) { c.TUN.MTU = 100 }, "tun.mtu: must be 576-9000, got 100"},
		{func(c *Config) { c.DNS.SiteNetworks = []string{"10.0.0.0/33"} }, "dns.siteNetworks[0]: \"10.0.0.0/33\" is not an IPv4 CIDR"},
		{func(c *Config) { c.ListenPort = 70000 }, "listenPort: must be 0-65535, got 70000"},
	}
	for _, tc := range cases {
		c := validEdgeConfig(t.TempDir())
		tc.mut(&c)
		_, err := Parse(c, true)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error %q, got %v", tc.want, err)
		}
	}
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "private.key")
	k1, created, err := LoadOrCreateKey(path)
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v err %v", st.Mode().Perm(), err)
	}
	k2, created, err := LoadOrCreateKey(path)
	if err != nil || created || k1 != k2 {
		t.Fatalf("reload: created %v err %v same %v", created, err, k1 == k2)
	}
	os.Chmod(path, 0o644)
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key accepted: %v", err)
	}
	os.WriteFile(path, []byte("nonsense"), 0o600)
	os.Chmod(path, 0o600)
	if _, _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("bad key: %v", err)
	}
}

func TestSnapshotCache(t *testing.T) {
	c := NewSnapshotCache(t.TempDir())
	if s, err := c.Load(); s != nil || err != nil {
		t.Fatalf("empty cache: %v %v", s, err)
	}
	in := &api.Snapshot{Revision: 7, Gateway: "edge-a", VPCIDR: netip.MustParsePrefix("192.168.0.0/24"),
		VIPs: []api.VIP{{VIP: netip.MustParseAddr("192.168.0.10"), Service: "nginx", Port: 8080, Protocol: "TCP"}}}
	if err := c.Save(in); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(c.Path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("cache mode %v", st.Mode().Perm())
	}
	out, err := c.Load()
	if err != nil || out.Revision != 7 || out.VIPs[0].VIP != in.VIPs[0].VIP || out.VPCIDR != in.VPCIDR {
		t.Fatalf("round trip: %+v %v", out, err)
	}
	os.WriteFile(c.Path, []byte("{"), 0o600)
	if _, err := c.Load(); err == nil || !strings.Contains(err.Error(), c.Path) {
		t.Fatalf("corrupt cache: %v", err)
	}
}

func TestSyncClient(t *testing.T) {
	var mu sync.Mutex
	var sinces []string
	reports := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.URL.Path {
		case "/v1/sync":
			since := r.URL.Query().Get("since")
			sinces = append(sinces, since)
			switch since {
			case "3":
				w.Write([]byte(`{"revision":5,"gateway":"edge-a"}`))
			case "5":
				http.Error(w, "boom", http.StatusInternalServerError) // retried after backoff
			default:
				w.WriteHeader(http.StatusNoContent)
			}
		case "/v1/report":
			io.Copy(io.Discard, r.Body)
			reports++
		}
	}))
	defer srv.Close()
	c := NewSyncClient(netip.AddrPort{}, netip.Addr{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.BaseURL = srv.URL
	c.MinBackoff, c.MaxBackoff = time.Millisecond, 2*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	applied := make(chan int64, 4)
	c.Apply = func(s *api.Snapshot) error { applied <- s.Revision; return nil }
	c.Report = func() any { return map[string]int64{"appliedRevision": 5} }
	done := make(chan struct{})
	go func() { c.Run(ctx, 3); close(done) }()
	select {
	case rev := <-applied:
		if rev != 5 {
			t.Fatalf("applied %d", rev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot applied")
	}
	// Wait until the client has retried after the server error at least twice.
	for i := 0; i < 500; i++ {
		mu.Lock()
		n := 0
		for _, s := range sinces {
			if s == "5" {
				n++
			}
		}
		mu.Unlock()
		if n >= 2 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if sinces[0] != "3" || reports == 0 {
		t.Fatalf("polls %v reports %d", sinces, reports)
	}
}

// TestSyncClientMovesToAnotherHub: the client syncs from the first hub; when that hub stops
// answering (its requests hang, as through a tunnel to a dead peer), the client moves to the
// next hub within DeadAfter plus a Heartbeat and applies its snapshot; reports follow.
func TestSyncClientMovesToAnotherHub(t *testing.T) {
	var dead atomic.Bool
	hang := make(chan struct{})
	var aPolls, bReports atomic.Int64
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dead.Load() {
			select { // a dead hub: nothing comes back
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		switch r.URL.Path {
		case "/v1/ping":
			w.WriteHeader(http.StatusNoContent)
		case "/v1/sync":
			aPolls.Add(1)
			select { // a long poll with nothing new
			case <-hang:
			case <-r.Context().Done():
			}
		default:
			io.Copy(io.Discard, r.Body)
		}
	}))
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/sync":
			if r.URL.Query().Get("since") == "7" {
				w.Write([]byte(`{"revision":8,"gateway":"edge-a"}`))
				return
			}
			select {
			case <-hang:
			case <-r.Context().Done():
			}
		case "/v1/report":
			io.Copy(io.Discard, r.Body)
			bReports.Add(1)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer func() { close(hang); a.Close(); b.Close() }()
	c := NewSyncClient(netip.AddrPort{}, netip.Addr{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.Hubs = func() []string { return []string{a.URL, b.URL} }
	c.Heartbeat, c.DeadAfter = 20*time.Millisecond, 150*time.Millisecond
	c.ReportEvery = 20 * time.Millisecond
	applied := make(chan int64, 4)
	c.Apply = func(s *api.Snapshot) error { applied <- s.Revision; return nil }
	c.Report = func() any { return map[string]int64{"appliedRevision": 8} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, 7); close(done) }()
	defer func() { cancel(); <-done }()

	// It syncs from a, which answers pings: it stays there.
	deadline := time.Now().Add(5 * time.Second)
	for aPolls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(4 * c.DeadAfter)
	if c.Current() != a.URL || len(applied) != 0 {
		t.Fatalf("left a live hub: current %s, %d applied", c.Current(), len(applied))
	}
	dead.Store(true)
	t0 := time.Now()
	select {
	case rev := <-applied:
		if rev != 8 {
			t.Fatalf("applied %d", rev)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the client did not move to the live hub within 5 s")
	}
	moved := time.Since(t0)
	if c.Current() != b.URL {
		t.Fatalf("current %s, want %s", c.Current(), b.URL)
	}
	for bReports.Load() == 0 && time.Since(t0) < 5*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	if bReports.Load() == 0 {
		t.Fatal("no report reached the new hub")
	}
	t.Logf("moved to the live hub %v after the first stopped answering (DeadAfter %v, Heartbeat %v)", moved.Round(time.Millisecond), c.DeadAfter, c.Heartbeat)
}

// TestHubOrder: the order is a permutation, stable for a gateway, and spreads gateways.
func TestHubOrder(t *testing.T) {
	hubs := []string{"http://100.64.0.1:8443", "http://100.64.0.126:8443", "http://100.64.0.125:8443"}
	first := map[string]int{}
	for i := range 300 {
		gw := fmt.Sprintf("edge-%d", i)
		o := HubOrder(gw, hubs)
		if len(o) != 3 || !slices.Equal(slices.Sorted(slices.Values(o)), slices.Sorted(slices.Values(hubs))) {
			t.Fatalf("%s: %v", gw, o)
		}
		if !slices.Equal(o, HubOrder(gw, []string{hubs[2], hubs[0], hubs[1]})) {
			t.Fatalf("%s: the order depends on the list's order", gw)
		}
		first[o[0]]++
	}
	for _, h := range hubs {
		if first[h] < 60 {
			t.Fatalf("first choices %v: not spread", first)
		}
	}
}
