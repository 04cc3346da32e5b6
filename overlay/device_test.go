package overlay

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/membind"
	"github.com/egw-project/egw/internal/testclock"
	"github.com/egw-project/egw/nat"
)

// forward is a fake engine that passes everything: site → overlay, and overlay → site
// when the destination is inside `mine` (else back to the overlay, which the Wrapper
// refuses: nothing decrypted is forwarded between peers).
type forward struct{ mine netip.Prefix }

func (f forward) FromSite(pkt, reply []byte) nat.Result { return nat.Result{Action: nat.ToOverlay} }
func (f forward) FromOverlay(pkt, reply []byte) nat.Result {
	if len(pkt) >= 20 && f.mine.IsValid() && !f.mine.Contains(dstOf(pkt)) {
		return nat.Result{Action: nat.ToOverlay}
	}
	return nat.Result{Action: nat.ToSite}
}

var (
	overlayCIDR = netip.MustParsePrefix("100.64.0.0/10")
	hubPrefix   = netip.MustParsePrefix("100.64.0.0/22")
	aPrefix     = netip.MustParsePrefix("100.64.4.0/22")
	bPrefix     = netip.MustParsePrefix("100.64.8.0/22")
)

type node struct {
	*Overlay
	tun  *tuntest.ChannelTUN
	key  wgtypes.Key
	addr string // underlay ip:port
}

func (n *node) peer(name string, allowed ...netip.Prefix) api.Peer {
	return api.Peer{Name: name, PublicKey: n.key.PublicKey().String(), AllowedIPs: allowed}
}

// newNode starts an Overlay over a channel TUN and a membind bind at underlay ip:51820.
func newNode(t *testing.T, mn *membind.Switch, ip string, tr Translator, local netip.Addr, mutate ...func(*Config)) *node {
	t.Helper()
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ct := tuntest.NewChannelTUN()
	cfg := Config{
		TUN:        TUNConfig{Name: "vp0", MTU: 1420},
		PrivateKey: key,
		ListenPort: 51820,
		Address:    Addressing{OverlayIP: local},
		NoUAPI:     true,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	o, err := NewWithDevice(cfg, tr, ct.TUN(), mn.Bind(netip.MustParseAddr(ip)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return &node{Overlay: o, tun: ct, key: key, addr: ip + ":51820"}
}

// send injects a packet at n's site side and waits for it at dst's site side.
func send(t *testing.T, from, to *node, src, dst netip.Addr, payload string) []byte {
	t.Helper()
	p := udp4(src, dst, payload)
	deadline := time.After(10 * time.Second)
	select {
	case from.tun.Outbound <- p:
	case <-deadline:
		t.Fatalf("%s: site packet not taken", payload)
	}
	for {
		select {
		case got := <-to.tun.Inbound:
			if payloadOf(got) == payload {
				return got
			}
		case <-deadline:
			t.Fatalf("%s: %v -> %v did not arrive", payload, src, dst)
		}
	}
}

// wrapperStats returns n's Wrapper counters once ready holds, or after 10 s. The Wrapper
// counts a TUN write when the write returns, and the test's channel TUN hands the packet
// to the test before that: send can return before the packet is counted.
func wrapperStats(t *testing.T, n *node, ready func(WrapperStats) bool) WrapperStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws := n.Wrapper().Stats()
		if ready(ws) || time.Now().After(deadline) {
			return ws
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTwoGateways: an edge and the hub exchange packets through their Wrappers.
func TestTwoGateways(t *testing.T) {
	mn := membind.NewSwitch()
	hub := newNode(t, mn, "127.0.0.1", forward{}, netip.MustParseAddr("100.64.0.1"))
	a := newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"))
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint = hub.addr
	// The hub first: the edge's first handshake goes out as soon as it has its peer.
	if err := hub.SetPeers([]api.Peer{a.peer("a", aPrefix)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPeers([]api.Peer{hp}, DefaultKeepalive); err != nil {
		t.Fatal(err)
	}
	c, s := netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.0.10")
	send(t, a, hub, c, s, "a->hub")
	send(t, hub, a, s, c, "hub->a")

	st, err := a.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 1 || st[0].PublicKey != hub.key.PublicKey() || st[0].TxBytes == 0 || st[0].RxBytes == 0 ||
		st[0].LastHandshake.IsZero() || st[0].Endpoint.String() != hub.addr || st[0].Keepalive != DefaultKeepalive ||
		len(st[0].AllowedIPs) != 1 || st[0].AllowedIPs[0] != overlayCIDR {
		t.Fatalf("edge's PeerStats: %+v", st)
	}
	if ws := wrapperStats(t, a, func(ws WrapperStats) bool { return ws.FromSitePackets > 0 && ws.ToSitePackets > 0 }); ws.FromSitePackets == 0 || ws.ToSitePackets == 0 {
		t.Errorf("wrapper stats %+v", ws)
	}
	if port, err := hub.ListenPort(); err != nil || port != 51820 {
		t.Errorf("ListenPort = %d, %v", port, err)
	}
}

// TestHubForwardsNoDecryptedPackets: edges whose only peer is the hub send each other
// packets on their hub sessions. The hub decrypts them, but even a Translator that asks
// to send them on cannot make its Wrapper forward them: they are dropped and counted
// (edges reach each other on their own sessions; the hub relays only ciphertext).
func TestHubForwardsNoDecryptedPackets(t *testing.T) {
	mn := membind.NewSwitch()
	hubIP, aIP, bIP := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.4.1"), netip.MustParseAddr("100.64.8.1")
	hub := newNode(t, mn, "127.0.0.1", forward{mine: hubPrefix}, hubIP)
	a := newNode(t, mn, "127.0.0.2", forward{}, aIP)
	b := newNode(t, mn, "127.0.0.3", forward{}, bIP)
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint = hub.addr
	if err := hub.SetPeers([]api.Peer{a.peer("a", aPrefix), b.peer("b", bPrefix)}, 0); err != nil {
		t.Fatal(err)
	}
	for _, e := range []*node{a, b} {
		if err := e.SetPeers([]api.Peer{hp}, DefaultKeepalive); err != nil {
			t.Fatal(err)
		}
	}
	// Both sessions work: each edge reaches the hub.
	send(t, a, hub, netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.0.10"), "a->hub")
	send(t, b, hub, netip.MustParseAddr("100.64.8.200"), netip.MustParseAddr("100.64.0.10"), "b->hub")
	ca, sb := netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.8.10")
	const n = 20
	for i := range n {
		select {
		case a.tun.Outbound <- udp4(ca, sb, fmt.Sprintf("a->b %d", i)):
		case <-time.After(10 * time.Second):
			t.Fatal("site packet not taken")
		}
	}
	for i := 0; hub.Wrapper().Stats().Drops[DropOverlayToOverlay] < n; i++ {
		if i > 1000 {
			t.Fatalf("hub stats: %+v", hub.Wrapper().Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st := wrapperStats(t, hub, func(st WrapperStats) bool { return st.ToSitePackets >= 2 }); st.Drops[DropOverlayToOverlay] != n || st.QueuedReplies != 0 || st.ToSitePackets != 2 {
		t.Errorf("hub stats: %+v", st)
	}
	select {
	case p := <-b.tun.Inbound:
		t.Fatalf("edge b got %q through the hub", payloadOf(p))
	default:
	}
}

// TestSetPeersDiff: SetPeers adds, updates and removes peers without touching unchanged
// ones (their session and handshake stay).
func TestSetPeersDiff(t *testing.T) {
	mn := membind.NewSwitch()
	hub := newNode(t, mn, "127.0.0.1", forward{}, netip.MustParseAddr("100.64.0.1"))
	a := newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"))
	b := newNode(t, mn, "127.0.0.3", forward{}, netip.MustParseAddr("100.64.8.1"))
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint = hub.addr
	pa := a.peer("a", aPrefix)
	if err := hub.SetPeers([]api.Peer{pa}, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPeers([]api.Peer{hp}, DefaultKeepalive); err != nil {
		t.Fatal(err)
	}
	ca, s := netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.0.10")
	send(t, a, hub, ca, s, "first")
	before := hubPeer(t, hub, a.key.PublicKey())

	// Add b, keep a unchanged (different order, duplicate prefix): a's session stays.
	pb := b.peer("b", bPrefix)
	pa2 := pa
	pa2.AllowedIPs = []netip.Prefix{aPrefix, aPrefix}
	if err := hub.SetPeers([]api.Peer{pb, pa2, {Name: "unregistered"}}, 0); err != nil {
		t.Fatal(err)
	}
	send(t, a, hub, ca, s, "second")
	after := hubPeer(t, hub, a.key.PublicKey())
	if !after.LastHandshake.Equal(before.LastHandshake) || after.RxBytes <= before.RxBytes {
		t.Errorf("unchanged peer disturbed: before %+v after %+v", before, after)
	}
	if got := hubPeer(t, hub, b.key.PublicKey()); len(got.AllowedIPs) != 1 || got.AllowedIPs[0] != bPrefix {
		t.Errorf("b: %+v", got)
	}

	// Change b's allowed IPs, then remove b.
	pb.AllowedIPs = []netip.Prefix{bPrefix, netip.MustParsePrefix("100.64.12.0/22")}
	if err := hub.SetPeers([]api.Peer{pa, pb}, 0); err != nil {
		t.Fatal(err)
	}
	if got := hubPeer(t, hub, b.key.PublicKey()); len(got.AllowedIPs) != 2 {
		t.Errorf("b after update: %+v", got)
	}
	if err := hub.SetPeers([]api.Peer{pa}, 0); err != nil {
		t.Fatal(err)
	}
	st, _ := hub.PeerStats()
	if len(st) != 1 || st[0].PublicKey != a.key.PublicKey() {
		t.Errorf("after removing b: %+v", st)
	}
	send(t, a, hub, ca, s, "third")
}

func hubPeer(t *testing.T, n *node, k wgtypes.Key) PeerStat {
	t.Helper()
	st, err := n.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range st {
		if p.PublicKey == k {
			return p
		}
	}
	t.Fatalf("peer %s not on the device", k)
	return PeerStat{}
}

func TestSetPeersRejects(t *testing.T) {
	mn := membind.NewSwitch()
	n := newNode(t, mn, "127.0.0.1", nil, netip.Addr{})
	other, _ := wgtypes.GeneratePrivateKey()
	ok := api.Peer{Name: "ok", PublicKey: other.PublicKey().String(), AllowedIPs: []netip.Prefix{aPrefix}}
	for _, tc := range []struct {
		name      string
		peers     []api.Peer
		keepalive time.Duration
		want      string
	}{
		{"bad key", []api.Peer{{Name: "x", PublicKey: "not-base64"}}, 0, "peers[0] (x): publicKey"},
		{"duplicate key", []api.Peer{ok, ok}, 0, "used by two peers"},
		{"own key", []api.Peer{{Name: "me", PublicKey: n.key.PublicKey().String()}}, 0, "this device's own"},
		{"endpoint without port", []api.Peer{{Name: "e", PublicKey: ok.PublicKey, Endpoint: "10.0.0.1"}}, 0, "endpoint"},
		{"endpoint port 0", []api.Peer{{Name: "e", PublicKey: ok.PublicKey, Endpoint: "10.0.0.1:0"}}, 0, "bad port"},
		{"invalid prefix", []api.Peer{{Name: "p", PublicKey: ok.PublicKey, AllowedIPs: []netip.Prefix{{}}}}, 0, "allowedIPs[0]"},
		{"negative keepalive", []api.Peer{ok}, -time.Second, "keepalive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := n.SetPeers(tc.peers, tc.keepalive)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if st, _ := n.PeerStats(); len(st) != 0 {
				t.Fatalf("rejected SetPeers changed the device: %+v", st)
			}
		})
	}
}

// A testclock.Clock and fakeDNS drive Reresolve.

type fakeDNS struct {
	mu      sync.Mutex
	answer  map[string]string
	queries int
}

func (d *fakeDNS) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.queries++
	a, ok := d.answer[host]
	if !ok {
		return nil, fmt.Errorf("%s: no such host", host)
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

func (d *fakeDNS) set(host, a string) { d.mu.Lock(); d.answer[host] = a; d.mu.Unlock() }

// TestReresolve: the hub's endpoint is a DNS name whose address changes; once handshakes
// have failed for ReresolveAfter, the edge resolves it again and reaches the hub.
func TestReresolve(t *testing.T) {
	mn := membind.NewSwitch()
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	dns := &fakeDNS{answer: map[string]string{"hub.example": "127.0.0.9"}} // nobody there
	hub := newNode(t, mn, "127.0.0.1", forward{}, netip.MustParseAddr("100.64.0.1"))
	a := newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"), func(c *Config) {
		c.Now, c.LookupHost = clock.Now, dns.lookup
	})
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint = "hub.example:51820"
	if err := hub.SetPeers([]api.Peer{a.peer("a", aPrefix)}, 0); err != nil {
		t.Fatal(err)
	}
	if err := a.SetPeers([]api.Peer{hp}, DefaultKeepalive); err != nil {
		t.Fatal(err)
	}
	if p := hubPeer(t, a, hub.key.PublicKey()); p.Endpoint.String() != "127.0.0.9:51820" {
		t.Fatalf("endpoint %v", p.Endpoint)
	}
	// SetPeers again with the same config does not resolve again.
	if err := a.SetPeers([]api.Peer{hp}, DefaultKeepalive); err != nil || dns.queries != 1 {
		t.Fatalf("SetPeers again: %v, %d queries", err, dns.queries)
	}
	dns.set("hub.example", "127.0.0.1")
	clock.Add(time.Minute)
	if err := a.Reresolve(); err != nil || dns.queries != 1 {
		t.Fatalf("re-resolved too early: %v, %d queries", err, dns.queries)
	}
	clock.Add(2 * time.Minute)
	if err := a.Reresolve(); err != nil || dns.queries != 2 {
		t.Fatalf("Reresolve: %v, %d queries", err, dns.queries)
	}
	if p := hubPeer(t, a, hub.key.PublicKey()); p.Endpoint.String() != "127.0.0.1:51820" {
		t.Fatalf("endpoint after re-resolve %v", p.Endpoint)
	}
	send(t, a, hub, netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.0.10"), "after re-resolve")
	// Quiet for long enough: resolved again (same answer, nothing changes); with a fresh
	// handshake: not resolved.
	clock.Set(time.Now())
	clock.Add(3 * time.Minute)
	if err := a.Reresolve(); err != nil {
		t.Fatal(err)
	}
	clock.Set(time.Now())
	if err := a.Reresolve(); err != nil || dns.queries != 3 {
		t.Fatalf("queries = %d after a fresh handshake, want 3", dns.queries)
	}
}

// TestReresolveAfterDNSFailure: a name that did not resolve when the peer was set is
// retried at every check until it does.
func TestReresolveAfterDNSFailure(t *testing.T) {
	mn := membind.NewSwitch()
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	dns := &fakeDNS{answer: map[string]string{}}
	hub := newNode(t, mn, "127.0.0.1", forward{}, netip.MustParseAddr("100.64.0.1"))
	a := newNode(t, mn, "127.0.0.2", forward{}, netip.MustParseAddr("100.64.4.1"), func(c *Config) {
		c.Now, c.LookupHost = clock.Now, dns.lookup
	})
	if err := hub.SetPeers([]api.Peer{a.peer("a", aPrefix)}, 0); err != nil {
		t.Fatal(err)
	}
	hp := hub.peer("hub", overlayCIDR)
	hp.Endpoint = "hub.example:51820"
	if err := a.SetPeers([]api.Peer{hp}, DefaultKeepalive); err != nil {
		t.Fatalf("SetPeers with an unresolvable name: %v", err)
	}
	if p := hubPeer(t, a, hub.key.PublicKey()); p.Endpoint.IsValid() {
		t.Fatalf("endpoint %v before DNS answers", p.Endpoint)
	}
	clock.Add(time.Second)
	if err := a.Reresolve(); err != nil || dns.queries != 2 {
		t.Fatalf("retry: %v, %d queries", err, dns.queries)
	}
	dns.set("hub.example", "127.0.0.1")
	clock.Add(15 * time.Second)
	if err := a.Reresolve(); err != nil {
		t.Fatal(err)
	}
	send(t, a, hub, netip.MustParseAddr("100.64.4.200"), netip.MustParseAddr("100.64.0.10"), "after DNS recovered")
}

func TestParsePeerStats(t *testing.T) {
	k1, _ := wgtypes.GeneratePrivateKey()
	k2, _ := wgtypes.GeneratePrivateKey()
	in := fmt.Sprintf("private_key=%s\nlisten_port=51820\npublic_key=%s\nendpoint=192.0.2.1:51820\n"+
		"last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n"+
		"persistent_keepalive_interval=25\nallowed_ip=100.64.0.0/10\npublic_key=%s\nlast_handshake_time_sec=0\n"+
		"last_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\nerrno=0\n",
		hexKey(k1), hexKey(k1.PublicKey()), hexKey(k2.PublicKey()))
	got, err := parsePeerStats(in)
	if err != nil {
		t.Fatal(err)
	}
	want0 := PeerStat{PublicKey: k1.PublicKey(), Endpoint: netip.MustParseAddrPort("192.0.2.1:51820"),
		LastHandshake: time.Unix(1700000000, 5), TxBytes: 10, RxBytes: 20, Keepalive: 25 * time.Second,
		AllowedIPs: []netip.Prefix{overlayCIDR}}
	if len(got) != 2 || fmt.Sprint(got[0]) != fmt.Sprint(want0) || got[1].PublicKey != k2.PublicKey() || !got[1].LastHandshake.IsZero() {
		t.Fatalf("got %+v", got)
	}
	for _, bad := range []string{
		"public_key=zz\n",
		"public_key=" + hexKey(k1) + "\nrx_bytes=-1\n",
		"public_key=" + hexKey(k1) + "\nendpoint=nope\n",
		"garbage\n",
	} {
		if _, err := parsePeerStats(bad); err == nil || !strings.Contains(err.Error(), "line") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func FuzzParsePeerStats(f *testing.F) {
	f.Add("public_key=" + strings.Repeat("ab", 32) + "\nendpoint=1.2.3.4:5\nrx_bytes=1\nallowed_ip=1.0.0.0/8\n")
	f.Add("listen_port=1\nerrno=0\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := parsePeerStats(s)
		if err != nil && st != nil {
			t.Fatal("stats with an error")
		}
	})
}
