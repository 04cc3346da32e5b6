package inproc

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egw-project/egw/gateway"
)

// TestEdgeRestartsFromCache restarts both edge gateways with no control plane to ask
// (docs/ARCHITECTURE.md, "Control plane and edge sync": on start an edge applies its
// cached snapshot before the cloud answers): each new node applies the snapshot its
// predecessor cached in its state directory, and comes back at a new underlay address (as
// after a NAT rebinding), which the hub learns from the authenticated handshake. Traffic flows again without anything from the cloud.
func TestEdgeRestartsFromCache(t *testing.T) {
	w := newWorld(t, worldOptions{})
	vipNginx := netip.AddrPortFrom(w.vip(t, "nginx"), tcpPort)
	vipEcho := netip.AddrPortFrom(w.vip(t, "echo"), udpPort)
	tcpServer(t, w.service, tcpPort)
	udpServer(t, w.service, udpPort)

	check := func(t *testing.T, when string) {
		t.Helper()
		c, _, err := dialTCP(w.client1, vipNginx, dialTimeout)
		if err != nil {
			w.dumpStats(t)
			t.Fatalf("%s: client1 → nginx: %v", when, err)
		}
		defer c.Close()
		if err := exchange(c, when, answerTimeout); err != nil {
			t.Fatalf("%s: client1 ↔ nginx: %v", when, err)
		}
		if err := udpAsk(w.client1, vipEcho, when, answerTimeout); err != nil {
			t.Fatalf("%s: client1 ↔ echo: %v", when, err)
		}
	}
	check(t, "before the restarts")

	for i, e := range []struct {
		name     string
		node     **gateway.Node
		lan      *siteLAN
		underlay string
	}{
		{"edge-b", &w.edgeB, w.lanB, "10.99.0.33"},
		{"edge-a", &w.edgeA, w.lanA, "10.99.0.22"},
	} {
		old := *e.node
		rev := old.Applied().Revision
		if err := old.Close(); err != nil {
			t.Fatalf("closing %s: %v", e.name, err)
		}
		if err := udpAsk(w.client1, vipEcho, "down", silence); err == nil {
			t.Fatalf("an answer through %s while it is down", e.name)
		}

		restarted := time.Now()
		key, created, err := gateway.LoadOrCreateKey(w.cfgs[e.name].PrivateKeyFile)
		if err != nil || created || key != w.keys[e.name] {
			t.Fatalf("%s's key after restart: created %v, same %v, %v", e.name, created, key == w.keys[e.name], err)
		}
		n := w.node(t, w.cfgs[e.name], true, gateway.NodeOptions{Key: key, DNSListen: []string{"127.0.0.1:0"}, TUN: e.lan.TUN(),
			Bind: w.sw.Bind(netip.MustParseAddr(e.underlay))})
		cached, err := gateway.NewSnapshotCache(w.cfgs[e.name].StateDir).Load()
		if err != nil || cached == nil {
			t.Fatalf("%s's snapshot cache: %v, %v", e.name, cached, err)
		}
		if cached.Revision != rev || cached.Gateway != e.name {
			t.Fatalf("%s's cache holds %s revision %d, want revision %d", e.name, cached.Gateway, cached.Revision, rev)
		}
		if err := n.Apply(cached); err != nil {
			t.Fatalf("%s applies its cached snapshot: %v", e.name, err)
		}
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
		*e.node = n
		// The hub sees the new session from the new address.
		deadline := time.Now().Add(10 * time.Second)
		for {
			stats, err := w.hub.Overlay().PeerStats()
			if err != nil {
				t.Fatal(err)
			}
			ok := false
			for _, s := range stats {
				if s.PublicKey == w.keys[e.name].PublicKey() && s.LastHandshake.After(restarted.Add(-time.Second)) &&
					s.Endpoint.Addr() == netip.MustParseAddr(e.underlay) {
					ok = true
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the hub has no new session with %s at %s: %+v", e.name, e.underlay, stats)
			}
			time.Sleep(20 * time.Millisecond)
		}
		check(t, "after restart "+string(rune('1'+i)))
	}
}
