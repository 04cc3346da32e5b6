package pathbind

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
)

// Three real wireguard-go devices on loopback UDP (conn.StdNetBind: the production
// socket with its batching), each over a channel TUN: a hub running the relay and two
// edges whose peer sessions with each other go through the hub or direct.

type wgNode struct {
	ov   netip.Addr
	key  wgtypes.Key
	tun  *tuntest.ChannelTUN
	dev  *device.Device
	bind *Bind
	port uint16
}

func hexKey(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }

func startDevice(t *testing.T, ov string, cfg Config) *wgNode {
	t.Helper()
	n := &wgNode{ov: netip.MustParseAddr(ov), key: newKey(t), tun: tuntest.NewChannelTUN()}
	cfg.Self, cfg.PrivateKey = n.ov, n.key
	cfg.Logger = slog.New(slog.DiscardHandler)
	n.bind = New(conn.NewStdNetBind(), cfg)
	n.dev = device.NewDevice(n.tun.TUN(), n.bind, device.NewLogger(device.LogLevelSilent, ""))
	if cfg.Relay == nil {
		n.dev.DisableSomeRoamingForBrokenMobileSemantics()
	}
	if err := n.dev.IpcSet("private_key=" + hexKey(n.key) + "\nlisten_port=0\n"); err != nil {
		t.Fatal(err)
	}
	if err := n.dev.Up(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.dev.Close)
	get, err := n.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.SplitSeq(get, "\n") {
		if v, ok := strings.CutPrefix(l, "listen_port="); ok {
			fmt.Sscan(v, &n.port)
		}
	}
	if n.port == 0 {
		t.Fatal("no listen port")
	}
	return n
}

func (n *wgNode) addr() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.port)
}

// endpoints reads the hub device's peer endpoints, by public key.
func endpoints(t *testing.T, dev *device.Device) map[wgtypes.Key]netip.AddrPort {
	get, err := dev.IpcGet()
	if err != nil {
		t.Error(err)
		return nil
	}
	out := map[wgtypes.Key]netip.AddrPort{}
	var cur wgtypes.Key
	sc := bufio.NewScanner(strings.NewReader(get))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), "=")
		switch k {
		case "public_key":
			b, _ := hex.DecodeString(v)
			copy(cur[:], b)
		case "endpoint":
			if a, err := netip.ParseAddrPort(v); err == nil {
				out[cur] = a
			}
		}
	}
	return out
}

// wgTrio is a hub and two edges, all peers configured, the hub's relay following its
// device's endpoints.
type wgTrio struct {
	relay *Relay
	hub   *wgNode
	a, b  *wgNode
}

func newWGTrio(t *testing.T, direct bool, timing Timing) *wgTrio {
	tr := &wgTrio{}
	var refresh func()
	tr.relay = NewRelay(RelayConfig{Refresh: func() { refresh() }})
	tr.hub = startDevice(t, "100.64.0.1", Config{Relay: tr.relay})
	tr.a = startDevice(t, "100.64.4.1", Config{Direct: direct, Timing: timing})
	tr.b = startDevice(t, "100.64.8.1", Config{Direct: direct, Timing: timing})
	refresh = func() {
		eps := endpoints(t, tr.hub.dev)
		tr.relay.SetEndpoints(map[netip.Addr]netip.AddrPort{
			tr.a.ov: eps[tr.a.key.PublicKey()],
			tr.b.ov: eps[tr.b.key.PublicKey()],
		})
	}
	tr.relay.SetLinks([]api.Link{{A: tr.a.ov, B: tr.b.ov}})
	for _, e := range []*wgNode{tr.a, tr.b} {
		if err := tr.hub.dev.IpcSet(fmt.Sprintf("public_key=%s\nallowed_ip=%s/22\n", hexKey(e.key.PublicKey()), e.ov)); err != nil {
			t.Fatal(err)
		}
	}
	// Sessions with the hub first (as at a gateway's start), so the hub knows both edges'
	// endpoints before they send each other anything.
	for _, e := range []*wgNode{tr.a, tr.b} {
		if err := e.bind.SetHubs([]netip.AddrPort{tr.hub.addr()}); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=100.64.0.0/22\npersistent_keepalive_interval=1\n", hexKey(tr.hub.key.PublicKey()), tr.hub.addr())
		if err := e.dev.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "hub sessions", func() bool {
		eps := endpoints(t, tr.hub.dev)
		return eps[tr.a.key.PublicKey()].IsValid() && eps[tr.b.key.PublicKey()].IsValid()
	})
	refresh()
	for _, pair := range [][2]*wgNode{{tr.a, tr.b}, {tr.b, tr.a}} {
		me, other := pair[0], pair[1]
		if err := me.bind.SetPeers([]Peer{{Name: "peer", OverlayIP: other.ov, PublicKey: other.key.PublicKey(), Candidates: []netip.AddrPort{other.addr()}}}); err != nil {
			t.Fatal(err)
		}
		cfg := fmt.Sprintf("public_key=%s\nendpoint=%s\nallowed_ip=%s/22\n", hexKey(other.key.PublicKey()), PeerEndpoint(other.ov), other.ov)
		if err := me.dev.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

// ping sends an ICMP echo from a's TUN to b's overlay IP and waits for it at b's TUN.
func (tr *wgTrio) ping(t *testing.T, d time.Duration) {
	t.Helper()
	pkt := tuntest.Ping(tr.b.ov, tr.a.ov)
	deadline := time.After(d)
	resend := time.NewTicker(200 * time.Millisecond)
	defer resend.Stop()
	tr.a.tun.Outbound <- pkt
	for {
		select {
		case got := <-tr.b.tun.Inbound:
			if bytes.Equal(got, pkt) {
				return
			}
		case <-resend.C:
			select {
			case tr.a.tun.Outbound <- pkt:
			default:
			}
		case <-deadline:
			t.Fatalf("no ping through within %v (relay %+v, a %+v, b %+v)", d, tr.relay.Stats(), tr.a.bind.Stats(), tr.b.bind.Stats())
		}
	}
}

func TestWireGuardThroughRelay(t *testing.T) {
	tr := newWGTrio(t, false, Timing{})
	tr.ping(t, 10*time.Second)
	if f := tr.relay.Stats().Forwarded; f < 3 { // initiation, response, the ping
		t.Fatalf("relay forwarded %d datagrams", f)
	}
	if p := tr.a.bind.Paths(); len(p) != 1 || p[0].Mode != "relayed" || p[0].Endpoint != tr.hub.addr().String() {
		t.Fatalf("paths %+v", p)
	}
	// `wg show` prints the hub's address for the relayed peer.
	get, _ := tr.a.dev.IpcGet()
	if !strings.Contains(get, "endpoint="+tr.hub.addr().String()) {
		t.Fatalf("UAPI get does not show the relay endpoint:\n%s", get)
	}
}

func TestWireGuardGoesDirect(t *testing.T) {
	tr := newWGTrio(t, true, Timing{Tick: 20 * time.Millisecond, RoundSpacing: 50 * time.Millisecond})
	waitFor(t, "direct paths", func() bool {
		pa, pb := tr.a.bind.Paths(), tr.b.bind.Paths()
		return pa[0].Mode == "direct" && pb[0].Mode == "direct"
	})
	tr.ping(t, 10*time.Second)
	fwd := tr.relay.Stats().Forwarded
	for range 20 {
		tr.ping(t, 5*time.Second)
	}
	if f := tr.relay.Stats().Forwarded; f != fwd {
		t.Fatalf("relay forwarded %d datagrams while the path was direct", f-fwd)
	}
	get, _ := tr.a.dev.IpcGet()
	if !strings.Contains(get, "endpoint="+tr.b.addr().String()) {
		t.Fatalf("UAPI get does not show the direct endpoint:\n%s", get)
	}
}
