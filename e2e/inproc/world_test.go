package inproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/spf13/viper"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
	"github.com/egw-project/egw/internal/lantest"
	"github.com/egw-project/egw/internal/membind"
	"github.com/egw-project/egw/internal/pkttest"
	"github.com/egw-project/egw/overlay/pathbind"
)

// The topology of docs/ARCHITECTURE.md ("Topology"): two edge sites whose LANs are both 10.0.0.0/24, and the
// cloud hub between them.
const (
	hubGW, hubSite = "cloud-gw", "cloud"
	hubVPCIDR      = "192.168.9.0/24"
	hubEndpoint    = "10.99.0.1:51820" // the hub's bind on the in-memory underlay

	vpA = "192.168.0.0/24" // edge-a's VP CIDR: VIPs for site A's clients
	vpB = "172.16.5.0/24"  // edge-b's VP CIDR: presence IPs of remote clients at site B

	tcpPort = 8080
	udpPort = 5353
)

var (
	serviceIP = netip.MustParseAddr("10.0.0.10") // at site B
	client1IP = netip.MustParseAddr("10.0.0.20") // at site A, allowed
	client2IP = netip.MustParseAddr("10.0.0.21") // at site A, no policy names it
	// sameIPAtA is a host at site A with the service's address: the LANs overlap.
	sameIPAtA = netip.MustParseAddr("10.0.0.10")
)

// objects is what an operator applies with egwctl (JSON, several objects per file, the
// seed's shapes: eServerName, a ServiceExpose without a name). The gateways' public keys
// are filled in.
const objects = `
{"kind": "ESite", "apiVersion": "v1", "metadata": {"name": "site-a"}}
{"kind": "ESite", "apiVersion": "v1", "metadata": {"name": "site-b"}}
{"kind": "EGateway", "apiVersion": "v1", "metadata": {"name": "edge-a"},
 "ip": "10.99.0.2", "virtualPresenceIPcidr": "192.168.0.0/24", "eSiteName": "site-a", "publicKey": "%s"}
{"kind": "EGateway", "apiVersion": "v1", "metadata": {"name": "edge-b"},
 "ip": "10.99.0.3", "virtualPresenceIPcidr": "172.16.5.0/24", "eSiteName": "site-b", "publicKey": "%s"}
{"kind": "EService", "apiVersion": "v1", "metadata": {"name": "nginx"},
 "port": 8080, "protocol": "TCP", "ip": "10.0.0.10", "domainName": "nginx", "eSiteName": "site-b"}
{"kind": "EService", "apiVersion": "v1", "metadata": {"name": "echo"},
 "port": 5353, "protocol": "UDP", "ip": "10.0.0.10", "domainName": "echo", "eSiteName": "site-b"}
{"kind": "EServer", "apiVersion": "v1", "eServerName": "client1", "ip": "10.0.0.20", "eSiteName": "site-a"}
{"kind": "EServer", "apiVersion": "v1", "eServerName": "client2", "ip": "10.0.0.21", "eSiteName": "site-a"}
{"kind": "EPolicy", "apiVersion": "v1", "metadata": {"name": "only-client1"}, "allowedServers": ["client1"]}
{"kind": "ServiceExpose", "apiVersion": "v1", "eServiceName": "nginx", "dnsName": "nginx.test.com",
 "eSites": ["site-a"], "ePolicys": ["only-client1"]}
{"kind": "ServiceExpose", "apiVersion": "v1", "eServiceName": "echo", "dnsName": "echo.test.com",
 "eSites": ["site-a"], "ePolicys": ["only-client1"]}
`

// revoke is the policy change that allows nobody.
const revoke = `{"kind": "EPolicy", "apiVersion": "v1", "metadata": {"name": "only-client1"}, "allowedServers": []}`

// world is the running topology.
type world struct {
	cp                *controlplane.Server
	sw                *membind.Switch
	hub, edgeA, edgeB *gateway.Node
	// lanA has client1, client2 and a host with the service's own address; lanB the service
	// host; lanHub is the cloud site (no hosts).
	lanA, lanB, lanHub      *siteLAN
	client1, client2, local *lantest.Host
	vpA                     *lantest.Host // edge-a's own stack on its VP address (DNS)
	service                 *lantest.Host
	// With sync: the hosts that stand for each gateway's own stack on its overlay IP.
	hubCtl, edgeACtl, edgeBCtl *lantest.Host
	log                        *slog.Logger
	dir                        string // state directories live under it
	keys                       map[string]wgtypes.Key
	cfgs                       map[string]gateway.Config
	// blockDirect drops every datagram between the two edges' underlay addresses (a
	// firewall between the sites; the hub still reaches both).
	blockDirect atomic.Bool
}

// The edges' underlay addresses.
var (
	edgeAUnderlay = netip.MustParseAddr("10.99.0.2")
	edgeBUnderlay = netip.MustParseAddr("10.99.0.3")
)

// edgeUnderlay is an edge's socket on the switch, behind the world's blockDirect rule.
type edgeUnderlay struct {
	*membind.Bind
	w *world
}

func (e *edgeUnderlay) Send(bufs [][]byte, ep conn.Endpoint) error {
	if e.w.blockDirect.Load() {
		if dst := ep.DstIP(); dst == edgeAUnderlay || dst == edgeBUnderlay {
			return nil
		}
	}
	return e.Bind.Send(bufs, ep)
}

// stateDir is a gateway's state directory (key, snapshot cache).
func (w *world) stateDir(gw string) string { return filepath.Join(w.dir, gw) }

// worldOptions select how the world starts.
type worldOptions struct {
	// sync: the edges start from their bootstrap snapshot (as before their first contact with
	// the cloud) and each LAN gets a host on its gateway's overlay IP, for control traffic
	// through the tunnel. Otherwise every node gets its compiled snapshot at once.
	sync bool
	// syncTimeout is the control plane's long-poll timeout (default 30 s).
	syncTimeout time.Duration
	// pathTiming overrides the edges' path timers.
	pathTiming pathbind.Timing
}

// siteLAN is a lantest.LAN whose gateway gets a vp0 of its own (gwTUN) rather than
// GW.TUN(), for two reasons:
//   - lantest.LAN.Close closes GW.TUN() itself, and so does the WireGuard device when the
//     node closes, and tuntest's ChannelTUN panics on a second Close;
//   - lantest hands a host's packet to the gateway with a blocking send, so while no
//     gateway reads (one restarting) the host's network stack hangs in Write. Here one
//     pump per LAN reads GW.Outbound for as long as the LAN lives and hands each packet to
//     the gateway's current vp0, or loses it when there is none, as a real LAN would.
type siteLAN struct {
	*lantest.LAN
	name string
	done chan struct{}
	cur  atomic.Pointer[gwTUN] // the gateway's vp0 while a node runs on it
	// watch, if set, sees every packet the gateway writes to the LAN (a copy).
	watch atomic.Pointer[func([]byte)]
}

func (l *siteLAN) pump() {
	for {
		select {
		case <-l.done:
			return
		case pkt := <-l.GW.Outbound:
			t := l.cur.Load()
			if t == nil {
				continue // no gateway: lost
			}
			select {
			case t.in <- pkt:
			case <-t.closed:
			case <-l.done:
				return
			}
		}
	}
}

// TUN returns a fresh vp0 for a gateway node on this LAN.
func (l *siteLAN) TUN() tun.Device {
	t := &gwTUN{lan: l, name: l.name, ch: l.GW, in: make(chan []byte), closed: make(chan struct{}), events: make(chan tun.Event, 1)}
	t.events <- tun.EventUp
	l.cur.Store(t)
	return t
}

// gwTUN is a gateway's vp0 on a siteLAN. Its Close is its own and idempotent.
type gwTUN struct {
	lan    *siteLAN
	name   string
	ch     *tuntest.ChannelTUN
	in     chan []byte // from the LAN's pump
	closed chan struct{}
	events chan tun.Event
	once   sync.Once
}

func (t *gwTUN) File() *os.File { return nil }

func (t *gwTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-t.closed:
		return 0, os.ErrClosed
	case pkt := <-t.in:
		sizes[0] = copy(bufs[0][offset:], pkt)
		tap(t.name+" from-site", pkt)
		return 1, nil
	}
}

func (t *gwTUN) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		pkt := append([]byte(nil), b[offset:]...)
		tap(t.name+" to-site", pkt)
		if f := t.lan.watch.Load(); f != nil {
			(*f)(pkt)
		}
		select {
		case <-t.closed:
			return i, os.ErrClosed
		case t.ch.Inbound <- pkt:
		}
	}
	return len(bufs), nil
}

func (t *gwTUN) MTU() (int, error)        { return tuntest.DefaultMTU, nil }
func (t *gwTUN) Name() (string, error)    { return "vp0", nil }
func (t *gwTUN) Events() <-chan tun.Event { return t.events }
func (t *gwTUN) BatchSize() int           { return 1 }
func (t *gwTUN) Close() error {
	t.once.Do(func() {
		t.lan.cur.CompareAndSwap(t, nil)
		close(t.closed)
		close(t.events)
	})
	return nil
}

func newLAN(t *testing.T, name string, hosts ...netip.Addr) (*siteLAN, []*lantest.Host) {
	t.Helper()
	l := &siteLAN{LAN: lantest.New(), name: name, done: make(chan struct{})}
	go l.pump()
	t.Cleanup(func() {
		close(l.done)
		l.Close()
	})
	var hs []*lantest.Host
	for _, a := range hosts {
		h, err := l.AddHost(a)
		if err != nil {
			t.Fatalf("LAN host %s: %v", a, err)
		}
		hs = append(hs, h)
	}
	return l, hs
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("EGW_E2E_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newWorld builds the control plane, the three LANs and the three nodes, applies every
// node's snapshot and waits until both edges have a WireGuard session with the hub.
func newWorld(t *testing.T, opts worldOptions) *world {
	t.Helper()
	w := &world{sw: membind.NewSwitch(), log: testLogger(t)}
	dir := t.TempDir()
	w.dir = dir
	keys := map[string]wgtypes.Key{}
	w.keys = keys
	// Every gateway generates its key on first start (0600 file in its state dir); the
	// operator registers the public key.
	for _, n := range []string{hubGW, "edge-a", "edge-b"} {
		k, created, err := gateway.LoadOrCreateKey(filepath.Join(w.stateDir(n), "private.key"))
		if err != nil || !created {
			t.Fatalf("key of %s: created %v, %v", n, created, err)
		}
		keys[n] = k
	}

	// Control plane, as cloudgateway sets it up, then the operator's objects.
	cpcfg := controlplane.Config{HubGateway: hubGW, HubSite: hubSite, Endpoint: hubEndpoint,
		PublicKey: keys[hubGW].PublicKey().String()}.WithDefaults()
	if err := cpcfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store, err := controlplane.Open(filepath.Join(dir, "cloud"), cpcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	w.cp, err = controlplane.NewServer(store, controlplane.Options{Logger: w.log, SyncTimeout: opts.syncTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cp.EnsureHub(hubVPCIDR, keys[hubGW].PublicKey().String(), hubEndpoint); err != nil {
		t.Fatalf("EnsureHub: %v", err)
	}
	w.apply(t, fmt.Sprintf(objects, keys["edge-a"].PublicKey(), keys["edge-b"].PublicKey()))

	// Sites. Both edge LANs are 10.0.0.0/24.
	cfgA := w.edgeConfig(t, "edge-a", w.stateDir("edge-a"))
	cfgB := w.edgeConfig(t, "edge-b", w.stateDir("edge-b"))
	w.cfgs = map[string]gateway.Config{"edge-a": cfgA, "edge-b": cfgB}
	// Site A also has a host on edge-a's VP address: the gateway's own stack, where the
	// site's DNS queries go (on a real vp0 the kernel holds that address).
	vpAddrA := netip.MustParsePrefix(cfgA.VPCIDR).Addr().Next()
	hostsA, hostsB, hostsHub := []netip.Addr{client1IP, client2IP, sameIPAtA, vpAddrA}, []netip.Addr{serviceIP}, []netip.Addr{}
	if opts.sync {
		hostsA = append(hostsA, netip.MustParseAddr(cfgA.OverlayIP))
		hostsB = append(hostsB, netip.MustParseAddr(cfgB.OverlayIP))
		hostsHub = append(hostsHub, cpcfg.HubOverlayIP())
	}
	var hs []*lantest.Host
	w.lanA, hs = newLAN(t, "A", hostsA...)
	w.client1, w.client2, w.local, w.vpA = hs[0], hs[1], hs[2], hs[3]
	if opts.sync {
		w.edgeACtl = hs[4]
	}
	w.lanB, hs = newLAN(t, "B", hostsB...)
	w.service = hs[0]
	if opts.sync {
		w.edgeBCtl = hs[1]
	}
	w.lanHub, hs = newLAN(t, "hub", hostsHub...)
	if opts.sync {
		w.hubCtl = hs[0]
	}

	// Nodes. The hub's configuration is cloudgateway's; the edges' come from the control
	// plane's edge configuration (egwctl gateway add prints it), with the test's state dir.
	hubCfg := gateway.Config{
		Name: hubGW, Site: hubSite, StateDir: w.stateDir(hubGW), ListenPort: 51820,
		OverlayCIDR: cpcfg.OverlayCIDR.String(), OverlayPrefix: cpcfg.HubPrefix().String(),
		OverlayIP: cpcfg.HubOverlayIP().String(), VPCIDR: hubVPCIDR,
		Cloud: gateway.CloudConfig{OverlayIP: cpcfg.HubOverlayIP().String(), SyncPort: cpcfg.SyncPort},
		TUN:   gateway.TUNConfig{Name: "vp0", MTU: 1420, Driver: "wgtun"},
		NAT:   gateway.NATConfig{RejectDenied: true, LeaseIdle: 5 * time.Minute, LeaseQuiet: 2 * time.Minute},
	}
	w.hub = w.node(t, hubCfg, false, gateway.NodeOptions{Hub: true, Key: keys[hubGW], NoCache: true,
		TUN: w.lanHub.TUN(), Bind: w.sw.Bind(netip.MustParseAddrPort(hubEndpoint).Addr())})
	w.edgeA = w.node(t, cfgA, true,
		gateway.NodeOptions{Key: keys["edge-a"], DNSListen: []string{"127.0.0.1:0"}, TUN: w.lanA.TUN(), PathTiming: opts.pathTiming,
			Bind: &edgeUnderlay{Bind: w.sw.Bind(edgeAUnderlay), w: w}})
	w.edgeB = w.node(t, cfgB, true,
		gateway.NodeOptions{Key: keys["edge-b"], DNSListen: []string{"127.0.0.1:0"}, TUN: w.lanB.TUN(), PathTiming: opts.pathTiming,
			Bind: &edgeUnderlay{Bind: w.sw.Bind(edgeBUnderlay), w: w}})

	w.applySnapshots(t, w.hub)
	if opts.sync {
		for _, n := range []*gateway.Node{w.edgeA, w.edgeB} {
			if err := n.Apply(n.Bootstrap()); err != nil {
				t.Fatalf("bootstrap %s: %v", w.name(n), err)
			}
		}
	} else {
		w.applySnapshots(t, w.edgeA, w.edgeB)
	}
	for _, n := range []*gateway.Node{w.hub, w.edgeA, w.edgeB} {
		if err := n.Start(); err != nil {
			t.Fatalf("start %s: %v", w.name(n), err)
		}
	}
	w.waitHandshakes(t)
	w.serveDNS(t, w.vpA, w.edgeA)
	return w
}

// serveDNS answers DNS on h:53 (UDP) with n's DNS server, as its vp0 address would.
func (w *world) serveDNS(t *testing.T, h *lantest.Host, n *gateway.Node) {
	t.Helper()
	pc, err := h.Net.ListenUDPAddrPort(netip.AddrPortFrom(h.Addr, 53))
	if err != nil {
		t.Fatalf("DNS on %s: %v", h.Addr, err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: n.DNS()}
	done := make(chan struct{})
	go func() { defer close(done); srv.ActivateAndServe() }()
	t.Cleanup(func() {
		srv.Shutdown()
		pc.Close()
		<-done
	})
}

// lookup asks the DNS server at server, from h, for name's A records.
func lookup(h *lantest.Host, server netip.Addr, name string, d time.Duration) (*dns.Msg, error) {
	q := new(dns.Msg).SetQuestion(name, dns.TypeA)
	b, err := q.Pack()
	if err != nil {
		return nil, err
	}
	c, err := h.Net.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(server, 53))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write(b); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf[:n]); err != nil {
		return nil, err
	}
	if m.Id != q.Id {
		return nil, fmt.Errorf("answer id %d, query id %d", m.Id, q.Id)
	}
	return m, nil
}

// edgeConfig loads the edge configuration the control plane prints for name (what
// `egwctl gateway add` writes to /etc/egw/edgegateway.yaml) the way cmd/edgegateway does:
// viper with gateway.Defaults, the file, and the state directory overridden (--state-dir).
func (w *world) edgeConfig(t *testing.T, name, stateDir string) gateway.Config {
	t.Helper()
	ec, err := w.cp.EdgeConfig(name)
	if err != nil {
		t.Fatalf("edge config of %s: %v", name, err)
	}
	file, err := ec.YAML()
	if err != nil {
		t.Fatalf("edge config of %s: %v", name, err)
	}
	v := viper.New()
	for k, d := range gateway.Defaults() {
		v.SetDefault(k, d)
	}
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(file)); err != nil {
		t.Fatalf("edge config of %s:\n%s\n%v", name, file, err)
	}
	v.Set("stateDir", stateDir)
	v.Set("privateKeyFile", filepath.Join(stateDir, "private.key"))
	var c gateway.Config
	if err := v.Unmarshal(&c); err != nil {
		t.Fatalf("edge config of %s:\n%s\n%v", name, file, err)
	}
	return c
}

func (w *world) node(t *testing.T, c gateway.Config, edge bool, opts gateway.NodeOptions) *gateway.Node {
	t.Helper()
	p, err := gateway.Parse(c, edge)
	if err != nil {
		t.Fatalf("config of %s: %v", c.Name, err)
	}
	n, err := gateway.NewNode(p, opts, w.log.With("gw", c.Name))
	if err != nil {
		t.Fatalf("node %s: %v", c.Name, err)
	}
	t.Cleanup(func() {
		done := make(chan error, 1)
		go func() { done <- n.Close() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("close %s: %v", c.Name, err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("close %s: still closing after 10s", c.Name)
		}
	})
	return n
}

// apply decodes text as egwctl apply does and applies it through the control plane.
func (w *world) apply(t *testing.T, text string) int64 {
	t.Helper()
	objs, err := api.Decode("objects", []byte(text))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	rev, _, err := w.cp.Apply(objs)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	return rev
}

// snapshot returns the latest compiled snapshot of a gateway.
func (w *world) snapshot(t *testing.T, gw string) *api.Snapshot {
	t.Helper()
	s, ok := w.cp.Snapshot(gw)
	if !ok {
		t.Fatalf("no snapshot for %s", gw)
	}
	return s
}

// applySnapshots hands each node its latest compiled snapshot, as the sync would.
func (w *world) applySnapshots(t *testing.T, nodes ...*gateway.Node) {
	t.Helper()
	for _, n := range nodes {
		name := w.name(n)
		if err := n.Apply(w.snapshot(t, name)); err != nil {
			t.Fatalf("apply snapshot to %s: %v", name, err)
		}
	}
}

func (w *world) name(n *gateway.Node) string {
	switch n {
	case w.hub:
		return hubGW
	case w.edgeA:
		return "edge-a"
	case w.edgeB:
		return "edge-b"
	}
	return "?"
}

// waitHandshakes waits until the hub has a session with both edges (their persistent
// keepalive starts the handshake as soon as the hub peer is set).
func (w *world) waitHandshakes(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stats, err := w.hub.Overlay().PeerStats()
		if err != nil {
			t.Fatalf("hub peer stats: %v", err)
		}
		n := 0
		for _, s := range stats {
			if !s.LastHandshake.IsZero() {
				n++
			}
		}
		// ... and its relay knows both edges' endpoints (re-read from the device as soon
		// as a handshake arrives from a new address).
		if n == 2 && len(w.hub.Overlay().ObservedEndpoints()) == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub has %d of 2 edge sessions after 10s: %+v (underlay lost %d)", n, stats, w.sw.Lost())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// vip returns the VIP at site A of a service, from edge-a's snapshot.
func (w *world) vip(t *testing.T, service string) netip.Addr {
	t.Helper()
	for _, v := range w.snapshot(t, "edge-a").VIPs {
		if v.Service == service {
			return v.VIP
		}
	}
	t.Fatalf("edge-a's snapshot has no VIP for %s", service)
	return netip.Addr{}
}

// drops returns a node's drop counter for reason (from Node.Report, as the cloud sees it).
func drops(n *gateway.Node, reason string) uint64 { return n.Report().Drops[reason] }

// tcpServer accepts on addr, echoes every connection and reports each peer address.
func tcpServer(t *testing.T, h *lantest.Host, port uint16) <-chan netip.AddrPort {
	t.Helper()
	ln, err := h.Net.ListenTCPAddrPort(netip.AddrPortFrom(h.Addr, port))
	if err != nil {
		t.Fatalf("listen %s:%d: %v", h.Addr, port, err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan netip.AddrPort, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			select {
			case peers <- ap:
			default:
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return peers
}

// udpServer echoes every datagram to its sender and reports each sender; stop closes it.
func udpServer(t *testing.T, h *lantest.Host, port uint16) (peers <-chan netip.AddrPort, stop func()) {
	t.Helper()
	pc, err := h.Net.ListenUDPAddrPort(netip.AddrPortFrom(h.Addr, port))
	if err != nil {
		t.Fatalf("listen udp %s:%d: %v", h.Addr, port, err)
	}
	t.Cleanup(func() { pc.Close() })
	ch := make(chan netip.AddrPort, 64)
	go func() {
		peers := ch
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(from.String())
			select {
			case peers <- ap:
			default:
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	return ch, func() { pc.Close() }
}

// exchange writes msg on c and reads it back within d.
func exchange(c net.Conn, msg string, d time.Duration) error {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("read %q, want %q", buf, msg)
	}
	return nil
}

// dialTCP dials addr from h within d, returning how long the attempt took.
func dialTCP(h *lantest.Host, addr netip.AddrPort, d time.Duration) (net.Conn, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	c, err := h.Net.DialContextTCPAddrPort(ctx, addr)
	if err != nil {
		return nil, time.Since(start), err
	}
	return c, time.Since(start), nil
}

// udpAsk sends msg from h to addr and waits d for the echo.
func udpAsk(h *lantest.Host, addr netip.AddrPort, msg string, d time.Duration) error {
	c, err := h.Net.DialUDPAddrPort(netip.AddrPort{}, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	return exchange(c, msg, d)
}

// inUpperHalf says whether a lies in the upper half of p (the presence-IP pool).
func inUpperHalf(p netip.Prefix, a netip.Addr) bool {
	upper := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	return p.Contains(a) && !upper.Contains(a)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) ||
		strings.Contains(fmt.Sprint(err), "timed out")
}

// ping sends one ICMP echo request from h to dst and waits d for the matching reply.
//
// netstack's PingConn.ReadFrom waits for a readability event that it registers only when
// called, and the endpoint signals only when its receive queue turns non-empty: a reply
// that is queued before ReadFrom waits is never read. So the reader is waiting before the
// request goes out.
func ping(h *lantest.Host, dst netip.Addr, seq uint16, d time.Duration) error {
	pc, err := h.Net.DialPingAddr(h.Addr, dst)
	if err != nil {
		return err
	}
	defer pc.Close()
	payload := []byte("egw-ping")
	req := append([]byte{8, 0, 0, 0, 0, 0, byte(seq >> 8), byte(seq)}, payload...)
	pc.SetReadDeadline(time.Now().Add(d))
	res := make(chan error, 1)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				res <- err
				return
			}
			if n >= 8 && buf[0] == 0 && buf[6] == byte(seq>>8) && buf[7] == byte(seq) && string(buf[8:n]) == string(payload) {
				if a := from.(*netstack.PingAddr).Addr(); a != dst {
					res <- &wrongSource{from: a, want: dst}
				} else {
					res <- nil
				}
				return
			}
		}
	}()
	time.Sleep(5 * time.Millisecond) // let the reader register for the readability event
	if _, err := pc.Write(req); err != nil {
		return err // the reader ends at the deadline
	}
	return <-res
}

// wrongSource is an echo reply that came from another address than the one pinged.
type wrongSource struct{ from, want netip.Addr }

func (e *wrongSource) Error() string {
	return fmt.Sprintf("echo reply from %s, want %s", e.from, e.want)
}

// checkICMPError checks that pkt is an ICMP error (typ, code) from src to dst whose
// embedded packet is the UDP datagram inSrc → inDst, and that its checksums verify.
func checkICMPError(pkt []byte, src, dst netip.Addr, typ, code byte, inSrc, inDst netip.AddrPort) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return fmt.Errorf("not IPv4: % x", pkt)
	}
	ihl := int(pkt[0]&15) * 4
	if len(pkt) < ihl+8+20+8 {
		return fmt.Errorf("too short for an ICMP error with an embedded header: %d bytes", len(pkt))
	}
	if s, d := netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])); s != src || d != dst {
		return fmt.Errorf("outer %s → %s, want %s → %s", s, d, src, dst)
	}
	if pkttest.Sum(pkt[:ihl], 0) != 0xffff {
		return fmt.Errorf("outer IP header checksum does not verify")
	}
	icmp := pkt[ihl:]
	if icmp[0] != typ || icmp[1] != code {
		return fmt.Errorf("ICMP type %d code %d, want %d/%d", icmp[0], icmp[1], typ, code)
	}
	if pkttest.Sum(icmp, 0) != 0xffff {
		return fmt.Errorf("ICMP checksum does not verify")
	}
	in := icmp[8:]
	inIHL := int(in[0]&15) * 4
	if len(in) < inIHL+8 {
		return fmt.Errorf("embedded packet too short")
	}
	if pkttest.Sum(in[:inIHL], 0) != 0xffff {
		return fmt.Errorf("embedded IP header checksum does not verify")
	}
	s := netip.AddrPortFrom(netip.AddrFrom4([4]byte(in[12:16])), uint16(in[inIHL])<<8|uint16(in[inIHL+1]))
	d := netip.AddrPortFrom(netip.AddrFrom4([4]byte(in[16:20])), uint16(in[inIHL+2])<<8|uint16(in[inIHL+3]))
	if in[9] != 17 || s != inSrc || d != inDst {
		return fmt.Errorf("embedded proto %d %s → %s, want UDP %s → %s", in[9], s, d, inSrc, inDst)
	}
	return nil
}

// dumpStats logs every node's seam counters and drops (for a failing step).
func (w *world) dumpStats(t *testing.T) {
	t.Helper()
	for _, n := range []*gateway.Node{w.edgeA, w.hub, w.edgeB} {
		t.Logf("%s: %+v", w.name(n), n.Overlay().Wrapper().Stats())
		t.Logf("%s: bind %+v, paths %+v", w.name(n), n.Overlay().Bind().Stats(), n.Overlay().Paths())
		if rs, ok := n.Overlay().RelayStats(); ok {
			t.Logf("%s: relay %+v", w.name(n), rs)
		}
	}
	t.Logf("underlay lost %d datagrams", w.sw.Lost())
}
