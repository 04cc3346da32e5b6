package overlay

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/overlay/pathbind"
)

// PathsConfig configures the path choice under WireGuard (docs/ARCHITECTURE.md, "Paths
// between gateways").
type PathsConfig struct {
	// Direct enables direct paths to path peers (config paths.direct). Off: everything
	// to them goes through a hub's relay.
	Direct bool
	// Hub makes this the hub: its bind relays ciphertext between linked gateways, and its
	// peers (every other gateway) keep WireGuard's roaming.
	Hub bool
	// Relay tunes the hub's relay (rate limit per sender).
	Relay pathbind.RelayConfig
	// Timing overrides the path timers (tests).
	Timing pathbind.Timing
}

const (
	relayRefresh = time.Second // how often the hub re-reads its peers' endpoints
	// relayFresh is how recent a handshake must be for its endpoint to count as the
	// gateway's authenticated endpoint: WireGuard rejects a session older than 180 s.
	relayFresh = 180 * time.Second
)

// newBind wraps the UDP bind with the path choice (and, on the hub, the relay).
func (o *Overlay) newBind(inner conn.Bind) (*pathbind.Bind, *pathbind.Relay) {
	cfg := o.cfg
	var relay *pathbind.Relay
	if cfg.Paths.Hub {
		rc := cfg.Paths.Relay
		rc.Refresh = o.RefreshRelay
		relay = pathbind.NewRelay(rc)
	}
	b := pathbind.New(inner, pathbind.Config{
		Self:       cfg.Address.OverlayIP,
		PrivateKey: cfg.PrivateKey,
		Direct:     cfg.Paths.Direct && !cfg.Paths.Hub,
		Relay:      relay,
		Timing:     cfg.Paths.Timing,
		Logger:     o.log,
	})
	return b, relay
}

// Bind returns the path-choosing bind (for its Stats).
func (o *Overlay) Bind() *pathbind.Bind { return o.bind }

// Paths returns how this gateway reaches each path peer now.
func (o *Overlay) Paths() []api.PathStatus { return o.bind.Paths() }

// DirectEndpoints returns the proven direct endpoint of each path peer on a direct path,
// by overlay IP.
func (o *Overlay) DirectEndpoints() map[netip.Addr]netip.AddrPort { return o.bind.DirectEndpoints() }

// RelayStats returns the hub relay's counters (false on an edge).
func (o *Overlay) RelayStats() (pathbind.RelayStats, bool) {
	if o.relay == nil {
		return pathbind.RelayStats{}, false
	}
	return o.relay.Stats(), true
}

// SetLinks sets the pairs of gateways the hub relays between (Snapshot.Links). A no-op on
// an edge.
func (o *Overlay) SetLinks(links []api.Link) {
	if o.relay != nil {
		o.relay.SetLinks(links)
	}
}

// ObservedEndpoints returns, by peer name, the endpoint of every peer with a session fresh
// enough for the relay (the hub's view of its edges' public endpoints); nil on an edge.
func (o *Overlay) ObservedEndpoints() map[string]netip.AddrPort {
	if m := o.observed.Load(); m != nil {
		return maps.Clone(*m)
	}
	return nil
}

// RefreshRelay re-reads the device's peers and gives the relay each gateway's
// authenticated endpoint: the endpoint of its WireGuard session, if the last handshake is
// recent. The hub runs it every second, and the relay asks for it when a datagram's
// source does not match (a NAT rebinding).
func (o *Overlay) RefreshRelay() {
	if o.relay == nil {
		return
	}
	stats, err := o.PeerStats()
	if err != nil {
		return
	}
	now := o.cfg.Now()
	o.mu.Lock()
	byIP := make(map[netip.Addr]netip.AddrPort, len(stats))
	byName := make(map[string]netip.AddrPort, len(stats))
	for _, s := range stats {
		p := o.peers[s.PublicKey]
		if p == nil || !p.overlayIP.IsValid() || !s.Endpoint.IsValid() || s.Endpoint.Port() == 0 ||
			s.LastHandshake.IsZero() || now.Sub(s.LastHandshake) > relayFresh {
			continue
		}
		byIP[p.overlayIP] = s.Endpoint
		byName[p.name] = s.Endpoint
	}
	o.mu.Unlock()
	o.relay.SetEndpoints(byIP)
	o.observed.Store(&byName)
}

// setHubs tells the bind where the hubs are: the resolved endpoints of the hub peers
// among peers. Must hold o.mu.
func (o *Overlay) setHubs(peers map[wgtypes.Key]*peer) {
	if o.cfg.Paths.Hub {
		return
	}
	var hubs []netip.AddrPort
	var preferred netip.AddrPort
	for _, p := range peers {
		if p.hub && p.resolved.IsValid() {
			hubs = append(hubs, p.resolved)
			if p.overlayIP.IsValid() && p.overlayIP == o.preferredHub {
				preferred = p.resolved
			}
		}
	}
	// One preferred hub, not the map's order: the one PreferHub named (the hub the edge
	// syncs from, so alive), then by address.
	slices.SortFunc(hubs, func(a, b netip.AddrPort) int {
		switch {
		case a == preferred && b != preferred:
			return -1
		case b == preferred && a != preferred:
			return 1
		}
		return a.Compare(b)
	})
	if err := o.bind.SetHubs(hubs); err != nil {
		o.log.Warn("overlay: hubs not set for the relay", "err", err)
	}
}

// PreferHub makes the hub whose overlay address is ip the one the edge's relayed packets go
// to (any hub relays; the edge names the one it syncs from, which answers). A no-op on the
// hub.
func (o *Overlay) PreferHub(ip netip.Addr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.preferredHub == ip {
		return
	}
	o.preferredHub = ip
	o.setHubs(o.peers)
}
