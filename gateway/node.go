package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/dnsd"
	"github.com/egw-project/egw/nat"
	"github.com/egw-project/egw/overlay"
	"github.com/egw-project/egw/overlay/pathbind"
	"github.com/prometheus/client_golang/prometheus"
)

// NodeOptions are what differs between an edge, the hub and a test.
type NodeOptions struct {
	Hub bool        // the cloud gateway: peers come from snapshots, relays between edges
	Key wgtypes.Key // WireGuard private key
	// TUN and Bind replace the real vp0 and UDP socket (tests: tuntest.ChannelTUN,
	// conn/bindtest). With TUN set, no interface is configured and no UAPI socket served.
	TUN  tun.Device
	Bind conn.Bind
	// DNSListen replaces the DNS listen addresses (tests: 127.0.0.1:0). Empty: the VP
	// address on port 53 plus dns.listen.
	DNSListen []string
	// NoCache disables the on-disk snapshot cache (the hub's snapshots come from its store).
	NoCache bool
	// Metrics are served beside the node's own (the cloud gateway's control plane).
	Metrics []prometheus.Collector
	// PathTiming overrides the path timers (tests).
	PathTiming pathbind.Timing
}

// Node is one running gateway: the NAT engine, the overlay device and the DNS server, fed
// by snapshots. Apply may be called from any goroutine; applies are serialised.
type Node struct {
	cfg    *Parsed
	opts   NodeOptions
	log    *slog.Logger
	engine *nat.Engine
	ov     *overlay.Overlay
	dns    *dnsd.Server
	cache  *SnapshotCache

	applyMu sync.Mutex // serialises Apply; never taken on the packet path
	applied atomic.Pointer[api.Snapshot]
	cloud   atomic.Pointer[CloudConfig] // an edge's hub peer (reloadable)

	// seedEndpoints are the hub's cached edge endpoints, used until the first Apply.
	seedEndpoints map[string]string
	seeded        bool
	// pathEndpoints are an edge's last proven direct endpoints, by peer overlay IP (from
	// the previous run, then saved as they change): tried first, so direct paths come
	// back after a restart with every hub gone. Nil on the hub and without a cache.
	pathEndpoints map[netip.Addr]netip.AddrPort

	syncLatency atomic.Int64 // last sync latency, ns
	loops       sync.WaitGroup
	stop        chan struct{}
	stopOnce    sync.Once
}

// NewNode builds the data plane of a gateway: engine, overlay device (vp0 + WireGuard) and
// DNS server. Nothing passes until the first Apply; Start begins serving DNS.
func NewNode(cfg *Parsed, opts NodeOptions, log *slog.Logger) (*Node, error) {
	reject, reset := cfg.NAT.RejectDenied, cfg.NAT.ResetRevoked
	n := &Node{cfg: cfg, opts: opts, log: log, stop: make(chan struct{})}
	cc := cfg.Cloud
	n.cloud.Store(&cc)
	ncfg := nat.Config{
		MTU:               cfg.TUN.MTU,
		RejectDenied:      &reject,
		ResetRevoked:      &reset,
		ClientLeaseIdle:   cfg.NAT.LeaseIdle,
		PresenceLeaseIdle: cfg.NAT.LeaseIdle,
		LeaseQuiet:        cfg.NAT.LeaseQuiet,
	}
	// The gateway's own overlay IP carries only control traffic: an edge's with the cloud,
	// the hub's on its sync port.
	if opts.Hub {
		ncfg.ControlPort = uint16(cfg.Cloud.SyncPort)
	} else {
		ncfg.ControlPeer = cfg.CloudOverlay
	}
	n.engine = nat.NewEngine(ncfg)
	if !opts.NoCache {
		n.cache = NewSnapshotCache(cfg.StateDir)
	}
	if opts.Hub && opts.TUN == nil {
		eps, err := loadEndpoints(cfg.StateDir)
		if err != nil {
			log.Warn("ignoring unreadable peer endpoint cache", "err", err)
		}
		n.seedEndpoints = eps
	}
	ocfg := overlay.Config{
		TUN:        overlay.TUNConfig{Name: cfg.TUN.Name, MTU: cfg.TUN.MTU, Driver: cfg.TUN.Driver},
		PrivateKey: opts.Key,
		ListenPort: cfg.ListenPort,
		Address: overlay.Addressing{
			VPCIDR: cfg.VPCIDRP, VPAddr: cfg.VPAddr,
			OverlayCIDR: cfg.OverlayCIDRP, OverlayIP: cfg.OverlayIPA,
		},
		Paths: overlay.PathsConfig{
			Direct: cfg.Paths.Direct, Hub: opts.Hub, Timing: opts.PathTiming,
			Relay: pathbind.RelayConfig{Rate: cfg.Paths.RelayRate, Burst: cfg.Paths.RelayBurst},
		},
	}
	if !opts.Hub && !opts.NoCache {
		eps, err := loadPathEndpoints(cfg.StateDir)
		if err != nil {
			log.Warn("ignoring unreadable path endpoint cache", "err", err)
		}
		n.pathEndpoints = eps
	}
	var err error
	if opts.TUN == nil {
		if err := CheckDeviceFree(cfg.TUN.Name, UAPISocketDir); err != nil {
			return nil, err
		}
		// The gateway routes between its LAN and vp0: the kernel must forward IPv4.
		if err := enableForwarding(); err != nil {
			return nil, err
		}
		// Site hosts must not be able to send with the gateway's overlay IP as source;
		// the kernel refuses such packets unless accept_local is on.
		if b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/accept_local"); err == nil && len(b) > 0 && b[0] != '0' {
			log.Warn("net.ipv4.conf.all.accept_local is on: site hosts could spoof this gateway's overlay IP; set it to 0")
		}
	}
	if opts.TUN != nil {
		ocfg.NoUAPI = true
		n.ov, err = overlay.NewWithDevice(ocfg, n.engine, opts.TUN, opts.Bind, log)
	} else {
		n.ov, err = overlay.New(ocfg, n.engine, log)
	}
	if err != nil {
		return nil, err
	}
	if cfg.DNS.Enabled {
		listen := opts.DNSListen
		if len(listen) == 0 {
			listen = append([]string{netip.AddrPortFrom(cfg.VPAddr, 53).String()}, cfg.DNS.Listen...)
		}
		n.dns, err = dnsd.New(dnsd.Config{
			Listen:       listen,
			Upstreams:    cfg.DNS.Upstreams,
			SiteNetworks: cfg.SiteNetworks,
			PolicyAware:  cfg.DNS.PolicyAware,
			TTL:          cfg.DNS.TTL,
			Zone:         cfg.DNS.Zone,
		}, log)
		if err != nil {
			n.ov.Close()
			return nil, err
		}
	}
	return n, nil
}

// Start serves DNS and runs the lease sweeper. Call it after the first Apply so that the
// first answers already come from a zone.
func (n *Node) Start() error {
	if n.dns != nil {
		if err := n.dns.Start(); err != nil {
			return err
		}
	}
	if n.seedEndpoints != nil {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			n.saveEndpointsLoop(15 * time.Second)
		}()
	}
	if n.pathEndpoints != nil {
		n.loops.Add(1)
		go func() {
			defer n.loops.Done()
			n.savePathEndpointsLoop(5 * time.Second)
		}()
	}
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-t.C:
				n.engine.Sweep()
			}
		}
	}()
	return nil
}

// Bootstrap is the snapshot an edge applies before it has ever heard from the cloud: its own
// addresses and nothing else, so the only traffic that passes is its control traffic.
func (n *Node) Bootstrap() *api.Snapshot {
	c := n.cfg
	return &api.Snapshot{
		Gateway: c.Name, Site: c.Site, Hub: n.opts.Hub,
		OverlayCIDR: c.OverlayCIDRP, OverlayPrefix: c.OverlayPrefixP, OverlayIP: c.OverlayIPA,
		CloudOverlayIP: c.CloudOverlay, VPCIDR: c.VPCIDRP, VPAddr: c.VPAddr,
		DNSZone: c.DNS.Zone,
	}
}

// Apply makes s the gateway's configuration: the WireGuard peers, the engine's tables (one
// atomic swap), the DNS zone, and the on-disk cache. Every part is prepared (checked and
// built) before any is installed, so a snapshot that is refused — for another gateway, older
// than the applied one, or refused by any part — changes nothing.
func (n *Node) Apply(s *api.Snapshot) error {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	if s.Gateway != n.cfg.Name {
		return fmt.Errorf("snapshot is for gateway %q, this is %q", s.Gateway, n.cfg.Name)
	}
	if cur := n.applied.Load(); cur != nil && s.Revision < cur.Revision {
		if s.StoreID == cur.StoreID || s.StoreID == "" {
			return fmt.Errorf("snapshot revision %d is older than the applied %d", s.Revision, cur.Revision)
		}
		n.log.Warn("the control plane's store changed (reset or restored); following it", "storeID", s.StoreID, "revision", s.Revision, "previousStoreID", cur.StoreID, "previousRevision", cur.Revision)
	}
	// Addresses the device was built with cannot change under it.
	if s.OverlayIP.IsValid() && s.OverlayIP != n.cfg.OverlayIPA {
		return fmt.Errorf("snapshot gives overlay IP %s but this gateway runs with %s: update overlayIP in the config and restart", s.OverlayIP, n.cfg.OverlayIPA)
	}
	if s.VPCIDR.IsValid() && s.VPCIDR != n.cfg.VPCIDRP {
		return fmt.Errorf("snapshot gives VP CIDR %s but this gateway runs with %s: update vpCIDR in the config and restart", s.VPCIDR, n.cfg.VPCIDRP)
	}
	// Prepare every part, then install: a snapshot any part refuses changes nothing.
	peers, err := n.ov.PreparePeers(n.peersFor(s), n.keepalive())
	if err != nil {
		return fmt.Errorf("overlay peers: %w", err)
	}
	tables, err := n.engine.Prepare(s)
	if err != nil {
		return fmt.Errorf("nat: %w", err)
	}
	// (The DNS zone is built from s by Update, which refuses nothing: a bad entry is
	// skipped and logged.) Only the device can still refuse, so the peers go first.
	if err := n.ov.InstallPeers(peers); err != nil {
		return fmt.Errorf("overlay peers: %w", err)
	}
	n.ov.SetLinks(s.Links)
	n.engine.Install(tables)
	if len(s.Peers) > 0 {
		n.seeded = true
	}
	if n.dns != nil {
		n.dns.Update(s)
	}
	if n.cache != nil && s.Revision > 0 {
		if err := n.cache.Save(s); err != nil {
			n.log.Warn("snapshot cache not written", "err", err)
		}
	}
	n.applied.Store(s)
	n.log.Info("snapshot applied", "revision", s.Revision, "vips", len(s.VIPs), "hosted", len(s.Hosted), "peers", len(s.Peers))
	return nil
}

// keepalive is the persistent keepalive of every peer. Edges keep their NAT mapping toward
// the hub open. The hub keeps one too: with a cached endpoint, turning it on makes
// wireguard-go start a handshake at once, so a restarted hub re-establishes its sessions
// without waiting for the edges to time theirs out.
func (n *Node) keepalive() time.Duration {
	if n.opts.Hub {
		return overlay.DefaultKeepalive
	}
	if k := n.cloud.Load().Keepalive; k > 0 {
		return k
	}
	return overlay.DefaultKeepalive
}

// peersFor returns the WireGuard peers for s. The hub takes them from the snapshot (edges
// not yet registered with a key are skipped; until the first snapshot is applied, the
// endpoints cached by the previous run seed them). An edge's hub peer comes from its own
// config, so that it can always reach the cloud whatever a snapshot says; its other peers
// are the snapshot's linked gateways (path peers), each with its last proven direct
// endpoint first among its candidates.
func (n *Node) peersFor(s *api.Snapshot) []api.Peer {
	if n.opts.Hub {
		out := make([]api.Peer, 0, len(s.Peers))
		for _, p := range s.Peers {
			if p.PublicKey == "" {
				continue
			}
			if ep, ok := n.seedEndpoints[p.PublicKey]; ok && p.Endpoint == "" && !n.seeded {
				p.Endpoint = ep
			}
			out = append(out, p)
		}
		return out
	}
	cc := n.cloud.Load()
	out := []api.Peer{{
		Name: "cloud", PublicKey: cc.PublicKey, Endpoint: cc.Endpoint,
		AllowedIPs: []netip.Prefix{n.cfg.OverlayCIDRP}, OverlayIP: n.cfg.CloudOverlay, Hub: true,
	}}
	for _, p := range s.Peers {
		if p.Hub || p.PublicKey == "" || p.PublicKey == cc.PublicKey || !p.OverlayIP.IsValid() {
			continue
		}
		if ep, ok := n.pathEndpoints[p.OverlayIP]; ok && !slices.Contains(p.Candidates, ep) {
			p.Candidates = append([]netip.AddrPort{ep}, p.Candidates...)
		}
		p.Endpoint = ""
		out = append(out, p)
	}
	hubs := n.otherHubs(s, cc.PublicKey)
	// The edge's overlay IP may sync with every hub, not only the configured one.
	ips := make([]netip.Addr, len(hubs))
	for i, h := range hubs {
		ips[i] = h.OverlayIP
	}
	n.engine.SetControlPeers(ips)
	return append(out, hubs...)
}

// otherHubs returns the hubs of s other than the configured one (cloud gateway replicas):
// a session to each, for its overlay address alone (sync), so the edge can move its sync to
// any of them (SyncClient.Hubs).
func (n *Node) otherHubs(s *api.Snapshot, cloudKey string) []api.Peer {
	var out []api.Peer
	seen := map[string]bool{}
	// The snapshot's hubs, then the bootstrap list's (cloud.hubs) that it does not list.
	for _, p := range append(slices.Clone(s.Peers), n.cfg.Hubs...) {
		if !p.Hub || p.PublicKey == "" || p.PublicKey == cloudKey || !p.OverlayIP.IsValid() || p.OverlayIP == n.cfg.CloudOverlay ||
			seen[p.PublicKey] || seen[p.OverlayIP.String()] {
			continue
		}
		seen[p.PublicKey], seen[p.OverlayIP.String()] = true, true
		p.AllowedIPs = []netip.Prefix{netip.PrefixFrom(p.OverlayIP, 32)}
		out = append(out, p)
	}
	return out
}

// PreferSyncHub makes the hub at sync URL base the one relayed packets go to first: the
// edge syncs from it, so it answers (any hub relays).
func (n *Node) PreferSyncHub(base string) {
	u, err := url.Parse(base)
	if err != nil {
		return
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return
	}
	n.log.Info("syncing from hub", "overlayIP", ip)
	n.ov.PreferHub(ip)
}

// SyncHubs returns the sync URLs of every hub the edge knows, in the order it tries them
// (HubOrder): the configured one and the other hubs of its snapshot.
func (n *Node) SyncHubs() []string {
	port := strconv.Itoa(n.cfg.Cloud.SyncPort)
	urls := []string{"http://" + net.JoinHostPort(n.cfg.CloudOverlay.String(), port)}
	if s := n.applied.Load(); s != nil {
		for _, p := range n.otherHubs(s, n.cloud.Load().PublicKey) {
			urls = append(urls, "http://"+net.JoinHostPort(p.OverlayIP.String(), port))
		}
	}
	return HubOrder(n.cfg.Name, urls)
}

// SetCloud replaces the edge's hub peer settings (SIGHUP) and re-applies the peers.
func (n *Node) SetCloud(c CloudConfig) error {
	n.cloud.Store(&c)
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	s := n.applied.Load()
	if s == nil {
		s = n.Bootstrap()
	}
	return n.ov.SetPeers(n.peersFor(s), n.keepalive())
}

// Applied returns the applied snapshot (nil before the first Apply).
func (n *Node) Applied() *api.Snapshot { return n.applied.Load() }

// Engine, Overlay and DNS expose the parts for status and metrics.
func (n *Node) Engine() *nat.Engine         { return n.engine }
func (n *Node) Overlay() *overlay.Overlay   { return n.ov }
func (n *Node) DNS() *dnsd.Server           { return n.dns }
func (n *Node) PublicKey() wgtypes.Key      { return n.opts.Key.PublicKey() }
func (n *Node) observeSync(d time.Duration) { n.syncLatency.Store(int64(d)) }

// Close stops DNS and the sweeper and removes the device (TUN, addresses, routes).
func (n *Node) Close() error {
	n.stopOnce.Do(func() { close(n.stop) })
	n.loops.Wait() // the endpoint cache's last save reads the live device
	var errs []error
	if n.dns != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		errs = append(errs, n.dns.Shutdown(ctx))
		cancel()
	}
	errs = append(errs, n.ov.Close())
	return errors.Join(errs...)
}

const ipForward = "/proc/sys/net/ipv4/ip_forward"

// enableForwarding turns on IPv4 forwarding in the gateway's network namespace if it is off.
func enableForwarding() error {
	b, err := os.ReadFile(ipForward)
	if err == nil && len(b) > 0 && b[0] == '1' {
		return nil
	}
	if err := os.WriteFile(ipForward, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enabling IPv4 forwarding (%s): %w (a gateway running as a service cannot: set net.ipv4.ip_forward = 1 in /etc/sysctl.d, as scripts/install.sh does)", ipForward, err)
	}
	return nil
}
