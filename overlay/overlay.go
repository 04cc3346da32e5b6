package overlay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/overlay/pathbind"
)

// Defaults.
const (
	DefaultKeepalive      = 25 * time.Second // edges' persistent keepalive toward the hub
	DefaultReresolveAfter = 2 * time.Minute  // re-resolve a DNS endpoint after this long without a handshake
	reresolveCheck        = 15 * time.Second // how often the re-resolve check runs
	resolveTimeout        = 5 * time.Second
)

// Addressing is what vp0 carries (docs/ARCHITECTURE.md, "Addressing").
type Addressing struct {
	VPCIDR      netip.Prefix // the gateway's VP CIDR: routed to vp0
	VPAddr      netip.Addr   // the gateway's VP address (first of VPCIDR), on vp0
	OverlayCIDR netip.Prefix // the whole overlay: routed to vp0 with source OverlayIP
	OverlayIP   netip.Addr   // the gateway's overlay address, on vp0 as a /32
	// Routes are extra prefixes routed to vp0 with source OverlayIP (normally none: the
	// overlay CIDR route covers every gateway's prefix).
	Routes []netip.Prefix
}

func (a Addressing) validate() error {
	if !a.VPCIDR.IsValid() || !a.VPCIDR.Addr().Is4() {
		return fmt.Errorf("overlay: vpCIDR %v: must be an IPv4 prefix", a.VPCIDR)
	}
	if !a.VPCIDR.Contains(a.VPAddr) {
		return fmt.Errorf("overlay: vpAddr %v: not inside vpCIDR %v", a.VPAddr, a.VPCIDR)
	}
	if !a.OverlayCIDR.IsValid() || !a.OverlayCIDR.Addr().Is4() {
		return fmt.Errorf("overlay: overlayCIDR %v: must be an IPv4 prefix", a.OverlayCIDR)
	}
	if !a.OverlayCIDR.Contains(a.OverlayIP) {
		return fmt.Errorf("overlay: overlayIP %v: not inside overlayCIDR %v", a.OverlayIP, a.OverlayCIDR)
	}
	if a.VPCIDR.Overlaps(a.OverlayCIDR) {
		return fmt.Errorf("overlay: vpCIDR %v overlaps overlayCIDR %v", a.VPCIDR, a.OverlayCIDR)
	}
	for _, r := range a.Routes {
		if !r.IsValid() || !r.Addr().Is4() {
			return fmt.Errorf("overlay: route %v: must be an IPv4 prefix", r)
		}
	}
	return nil
}

// Config configures an Overlay.
type Config struct {
	TUN        TUNConfig
	PrivateKey wgtypes.Key
	ListenPort int // WireGuard UDP port; 0 picks one
	Address    Addressing
	// UAPI serves /var/run/wireguard/<tun name>.sock so `wg show` and wgctrl read the
	// live device. On by default in New; tests may turn it off.
	NoUAPI bool
	// ReresolveAfter: a peer whose endpoint is a DNS name is re-resolved when it has had
	// no handshake for this long (DefaultReresolveAfter when 0).
	ReresolveAfter time.Duration
	// Now and LookupHost are injected for tests (time.Now, net.DefaultResolver when nil).
	Now        func() time.Time
	LookupHost func(ctx context.Context, host string) ([]netip.Addr, error)
	// Paths configures the path choice under WireGuard (see paths.go).
	Paths PathsConfig
}

// Overlay is one gateway's WireGuard device over its vp0 TUN.
type Overlay struct {
	cfg    Config
	log    *slog.Logger
	wrap   *Wrapper
	dev    *device.Device
	name   string
	uapi   net.Listener
	link   *linkConfig // nil when the TUN is not a kernel interface we configured
	stopc  chan struct{}
	wg     sync.WaitGroup
	closed sync.Once

	mu    sync.Mutex            // guards peers and the IpcSet sequence
	peers map[wgtypes.Key]*peer // what SetPeers last applied
	// preferredHub is the overlay address of the hub relayed packets go to first
	// (PreferHub).
	preferredHub netip.Addr

	bind     *pathbind.Bind
	relay    *pathbind.Relay // the hub's; nil on an edge
	observed atomic.Pointer[map[string]netip.AddrPort]
}

// peer is the applied state of one WireGuard peer.
type peer struct {
	name       string
	allowed    []netip.Prefix
	endpoint   string         // as configured: host:port, "" for none
	resolved   netip.AddrPort // what was last set on the device
	isName     bool           // endpoint host is a DNS name
	keepalive  time.Duration
	resolvedAt time.Time // last resolution attempt (DNS endpoints)
	overlayIP  netip.Addr
	hub        bool // a hub: relays for the path peers
	path       bool // a path peer: reached direct or through a hub's relay (pathbind)
}

// New creates the TUN cfg.TUN describes, addresses it, and starts a WireGuard device on
// it with the default UDP bind under the path choice (pathbind). tr (nil: DropAll) translates packets. Needs CAP_NET_ADMIN.
func New(cfg Config, tr Translator, logger *slog.Logger) (*Overlay, error) {
	if err := cfg.TUN.validate(); err != nil {
		return nil, err
	}
	if err := cfg.Address.validate(); err != nil {
		return nil, err
	}
	dev, err := OpenTUN(cfg.TUN)
	if err != nil {
		return nil, err
	}
	name, err := dev.Name()
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("overlay: TUN name: %w", err)
	}
	link := &linkConfig{name: name, mtu: cfg.TUN.MTU, run: runIP, sysctl: os.WriteFile}
	if err := link.apply(cfg.Address); err != nil {
		dev.Close()
		return nil, err
	}
	o, err := start(cfg, tr, dev, conn.NewDefaultBind(), logger)
	if err != nil {
		return nil, err // start closed dev, which removed the interface with its addresses and routes
	}
	o.link = link
	return o, nil
}

// NewWithDevice starts a WireGuard device over an existing tun.Device and conn.Bind (for
// example tuntest.ChannelTUN and internal/membind), the bind under the path choice. It configures no interface
// addresses; cfg.TUN and cfg.Address are used only for the name and the local overlay IP.
func NewWithDevice(cfg Config, tr Translator, dev tun.Device, bind conn.Bind, logger *slog.Logger) (*Overlay, error) {
	return start(cfg, tr, dev, bind, logger)
}

func start(cfg Config, tr Translator, tdev tun.Device, bind conn.Bind, logger *slog.Logger) (*Overlay, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ListenPort < 0 || cfg.ListenPort > 65535 {
		tdev.Close()
		return nil, fmt.Errorf("overlay: listenPort %d: must be 0-65535", cfg.ListenPort)
	}
	if cfg.ReresolveAfter <= 0 {
		cfg.ReresolveAfter = DefaultReresolveAfter
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LookupHost == nil {
		cfg.LookupHost = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
		}
	}
	name, err := tdev.Name()
	if err != nil || name == "" {
		name = cfg.TUN.Name
	}
	w := NewWrapper(tdev, tr, logger)
	w.now = cfg.Now
	o := &Overlay{
		cfg:   cfg,
		log:   logger.With("dev", name),
		wrap:  w,
		name:  name,
		stopc: make(chan struct{}),
		peers: map[wgtypes.Key]*peer{},
	}
	o.bind, o.relay = o.newBind(bind)
	o.dev = device.NewDevice(w, o.bind, wgLogger(o.log))
	if !cfg.Paths.Hub {
		// A path peer's endpoint is its identity in the bind; a packet from an unexpected
		// address must never replace it (the hub peer's is configured too).
		o.dev.DisableSomeRoamingForBrokenMobileSemantics()
	}
	if err := o.dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", hexKey(cfg.PrivateKey), cfg.ListenPort)); err != nil {
		o.dev.Close()
		return nil, fmt.Errorf("overlay: configure device %s: %w", name, err)
	}
	if err := o.dev.Up(); err != nil {
		o.dev.Close()
		return nil, fmt.Errorf("overlay: bring up device %s: %w", name, err)
	}
	if !cfg.NoUAPI {
		if err := o.serveUAPI(); err != nil {
			o.dev.Close()
			return nil, err
		}
	}
	o.wg.Add(1)
	go o.maintain()
	return o, nil
}

func (o *Overlay) serveUAPI() error {
	f, err := ipc.UAPIOpen(o.name)
	if err != nil {
		return fmt.Errorf("overlay: open UAPI socket for %s: %w", o.name, err)
	}
	l, err := ipc.UAPIListen(o.name, f)
	if err != nil {
		f.Close()
		return fmt.Errorf("overlay: listen on UAPI socket for %s: %w", o.name, err)
	}
	o.uapi = l
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go o.dev.IpcHandle(c)
		}
	}()
	return nil
}

// Name returns the TUN interface name.
func (o *Overlay) Name() string { return o.name }

// PublicKey returns the device's public key.
func (o *Overlay) PublicKey() wgtypes.Key { return o.cfg.PrivateKey.PublicKey() }

// Wrapper returns the NAT seam (for its Stats).
func (o *Overlay) Wrapper() *Wrapper { return o.wrap }

// ListenPort returns the UDP port WireGuard listens on.
func (o *Overlay) ListenPort() (int, error) {
	s, err := o.dev.IpcGet()
	if err != nil {
		return 0, err
	}
	return parseListenPort(s)
}

// Close stops the device, closes the TUN (removing the interface and with it its
// addresses and routes) and the UAPI socket. It is idempotent.
func (o *Overlay) Close() error {
	o.closed.Do(func() {
		close(o.stopc)
		if o.uapi != nil {
			o.uapi.Close()
		}
		o.dev.Close() // closes the bind and the Wrapper, hence the TUN
		o.wg.Wait()
	})
	return nil
}

// Done is closed when the device has stopped (Close, or a fatal TUN error).
func (o *Overlay) Done() <-chan struct{} { return o.dev.Wait() }

// maintain re-resolves DNS endpoints of peers that have gone quiet and, on the hub,
// refreshes the relay's table of authenticated endpoints every second.
func (o *Overlay) maintain() {
	defer o.wg.Done()
	t := time.NewTicker(reresolveCheck)
	defer t.Stop()
	var relayTick <-chan time.Time
	if o.relay != nil {
		rt := time.NewTicker(relayRefresh)
		defer rt.Stop()
		relayTick = rt.C
	}
	for {
		select {
		case <-o.stopc:
			return
		case <-o.dev.Wait():
			return
		case <-relayTick:
			o.RefreshRelay()
		case <-t.C:
			if err := o.Reresolve(); err != nil {
				o.log.Warn("overlay: re-resolve endpoints", "err", err)
			}
		}
	}
}
