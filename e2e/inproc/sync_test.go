package inproc

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
	"github.com/egw-project/egw/internal/lantest"
)

// TestSyncThroughTunnel runs the real edge sync (docs/ARCHITECTURE.md, "Control plane and edge sync"): the edges start from their
// bootstrap snapshot, long-poll the control plane's sync server on the hub's overlay IP
// through WireGuard with their own overlay IP as source, apply what comes and report back;
// the hub follows its snapshot in-process. A policy change then reaches every gateway and is
// enforced without anything applied by hand, and granting again restores the service.
func TestSyncThroughTunnel(t *testing.T) {
	const syncTimeout = 3 * time.Second
	w := newWorld(t, worldOptions{sync: true, syncTimeout: syncTimeout})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("sync loops still running 10 s after cancel")
		}
	})

	// The sync server, on the hub's overlay IP (cloudgateway's serveSync).
	hubSync := netip.AddrPortFrom(w.cp.Config().HubOverlayIP(), uint16(w.cp.Config().SyncPort))
	ln, err := w.hubCtl.Net.ListenTCPAddrPort(hubSync)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: w.cp.SyncHandler(), ReadHeaderTimeout: 5 * time.Second}
	wg.Add(1)
	go func() { defer wg.Done(); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	// The hub follows its own snapshot in-process and reports to the control plane.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rev := w.hub.Applied().Revision
		w.cp.Report(hubGW, w.hub.Report())
		for {
			snap, err := w.cp.Watch(ctx, hubGW, rev)
			if err != nil {
				return
			}
			if err := w.hub.Apply(snap); err != nil {
				t.Errorf("hub: apply revision %d: %v", snap.Revision, err)
				return
			}
			rev = snap.Revision
			w.cp.Report(hubGW, w.hub.Report())
		}
	}()

	// The hub's WireGuard peer statistics feed /v1/status (cloudgateway installs the same).
	w.cp.SetPeerStats(func() map[string]controlplane.PeerStats {
		stats, err := w.hub.Overlay().PeerStats()
		if err != nil {
			return nil
		}
		names := map[string]string{}
		for _, p := range w.hub.Applied().Peers {
			names[p.PublicKey] = p.Name
		}
		out := map[string]controlplane.PeerStats{}
		for _, s := range stats {
			if n, ok := names[s.PublicKey.String()]; ok {
				out[n] = controlplane.PeerStats{Connected: !s.LastHandshake.IsZero(), LastHandshake: s.LastHandshake,
					RxBytes: s.RxBytes, TxBytes: s.TxBytes}
			}
		}
		return out
	})

	// Each edge's sync client dials from its own stack on its overlay IP.
	latency := map[string]*lastDuration{}
	for _, e := range []struct {
		name string
		n    *gateway.Node
		ctl  *lantest.Host
	}{{"edge-a", w.edgeA, w.edgeACtl}, {"edge-b", w.edgeB, w.edgeBCtl}} {
		c := gateway.NewSyncClient(hubSync, e.ctl.Addr, w.log.With("gw", e.name, "component", "sync"))
		ctl := e.ctl
		c.HTTP.Transport = &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				ap, err := netip.ParseAddrPort(addr)
				if err != nil {
					return nil, err
				}
				return ctl.Net.DialContextTCPAddrPort(ctx, ap)
			},
		}
		c.HTTP.Timeout = 10 * time.Second
		c.MinBackoff, c.MaxBackoff = 50*time.Millisecond, 500*time.Millisecond
		c.ReportEvery = 200 * time.Millisecond
		n := e.n
		c.Apply = n.Apply
		c.Report = func() any { return n.Report() }
		latency[e.name] = &lastDuration{}
		c.Latency = latency[e.name].set
		wg.Add(1)
		go func() { defer wg.Done(); c.Run(ctx, n.Applied().Revision) }()
	}

	// converged waits until every gateway applied its latest snapshot and the control plane
	// has the edges' reports of it; it returns how long that took.
	converged := func(t *testing.T, what string) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(15 * time.Second)
		for {
			st, err := w.cp.Status()
			if err != nil {
				t.Fatal(err)
			}
			ok := true
			for _, g := range st.Gateways {
				if g.Name != hubGW && (!g.Connected || g.RxBytes == 0) {
					ok = false // the hub has a live session with every edge
				}
				n := map[string]*gateway.Node{hubGW: w.hub, "edge-a": w.edgeA, "edge-b": w.edgeB}[g.Name]
				if n.Applied().Revision != g.LatestRevision || g.AppliedRevision != g.LatestRevision {
					ok = false
				}
			}
			if ok {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: gateways did not converge in 15 s: %+v", what, st.Gateways)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("first sync", func(t *testing.T) {
		if w.edgeA.Applied().Revision != 0 || len(w.edgeA.Applied().VIPs) != 0 {
			t.Fatalf("edge-a starts from %d / %d VIPs, want its bootstrap snapshot", w.edgeA.Applied().Revision, len(w.edgeA.Applied().VIPs))
		}
		d := converged(t, "first sync")
		t.Logf("edges synced through the tunnel in %v (edge-a poll %v, edge-b poll %v)", d, latency["edge-a"].get(), latency["edge-b"].get())
		// The edge cached what it applied (0600), for a start while the cloud is down.
		for _, e := range []struct {
			name string
			n    *gateway.Node
		}{{"edge-a", w.edgeA}, {"edge-b", w.edgeB}} {
			cached, err := gateway.NewSnapshotCache(w.stateDir(e.name)).Load()
			if err != nil || cached == nil || cached.Revision != e.n.Applied().Revision {
				t.Errorf("%s's snapshot cache: %v, %v; want revision %d", e.name, cached, err, e.n.Applied().Revision)
			}
		}
		// The sync requests came in with the edges' overlay IPs as source and were
		// identified by them (nothing else grants a snapshot).
		if _, ok := w.cp.GatewayByAddr(w.edgeACtl.Addr); !ok {
			t.Errorf("control plane does not know %s", w.edgeACtl.Addr)
		}
	})

	vipNginx := netip.AddrPortFrom(w.vip(t, "nginx"), tcpPort)
	tcpServer(t, w.service, tcpPort)

	var conn net.Conn
	t.Run("traffic after sync", func(t *testing.T) {
		c, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
		if err != nil {
			t.Fatalf("client1 → nginx after sync: %v", err)
		}
		conn = c
		t.Cleanup(func() { c.Close() })
		if err := exchange(c, "synced", answerTimeout); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("revoke through sync", func(t *testing.T) {
		if conn == nil {
			t.Skip("no connection")
		}
		start := time.Now()
		w.apply(t, revoke)
		converged(t, "revoke")
		t.Logf("policy change applied at all three gateways %v after the write", time.Since(start))
		if err := exchange(conn, "after", silence); err == nil {
			t.Error("the open connection still passes after revocation")
		}
		if c, took, err := dialTCP(w.client1, vipNginx, 10*time.Second); err == nil {
			c.Close()
			t.Error("client1 connected after revocation")
		} else if took > fastFail || isTimeout(err) {
			t.Errorf("client1's dial after revocation: %v after %v; want a fast failure", err, took)
		}
		if d := drops(w.edgeA, "denied-client"); d == 0 {
			t.Errorf("edge-a counted no denied-client drop: %v", w.edgeA.Report().Drops)
		}
		// The edges' reports reach /v1/status with their drops (the sync client reports every
		// ReportEvery, 200 ms here, beside its long poll).
		statusDrops := func() uint64 {
			st, err := w.cp.Status()
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range st.Gateways {
				if g.Name == "edge-a" {
					return g.Drops["denied-client"]
				}
			}
			return 0
		}
		before := statusDrops()
		if c, _, err := dialTCP(w.client2, vipNginx, 10*time.Second); err == nil {
			c.Close()
			t.Fatal("client2 connected")
		}
		dropped := time.Now()
		for statusDrops() <= before {
			if time.Since(dropped) > 2*time.Second {
				t.Fatalf("/v1/status shows no new denied-client drop of edge-a %v after it happened", time.Since(dropped))
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Logf("a drop at edge-a showed in /v1/status after %v (ReportEvery 200ms, long poll %v)", time.Since(dropped), syncTimeout)
	})

	t.Run("grant again", func(t *testing.T) {
		w.apply(t, `{"kind": "EPolicy", "apiVersion": "v1", "metadata": {"name": "only-client1"}, "allowedServers": ["client1"]}`)
		converged(t, "grant")
		c, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
		if err != nil {
			t.Fatalf("client1 → nginx after granting again: %v", err)
		}
		defer c.Close()
		if err := exchange(c, "again", answerTimeout); err != nil {
			t.Fatal(err)
		}
	})
}

// lastDuration holds the last value a callback observed.
type lastDuration struct {
	mu sync.Mutex
	d  time.Duration
}

func (l *lastDuration) set(d time.Duration) { l.mu.Lock(); l.d = d; l.mu.Unlock() }
func (l *lastDuration) get() time.Duration  { l.mu.Lock(); defer l.mu.Unlock(); return l.d }
