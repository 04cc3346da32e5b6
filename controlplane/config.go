package controlplane

import (
	"fmt"
	"net/netip"
	"time"
)

// Config is what the control plane needs to know about the cloud gateway it runs in.
// cmd/cloudgateway fills it from its configuration file.
type Config struct {
	// OverlayCIDR is the whole overlay (default 100.64.0.0/10); OverlayPrefixLen the
	// length of the prefix each gateway gets out of it (default 24: 16,384 gateways,
	// each with 126 service and 128 client overlay addresses; see the README's address
	// plan).
	OverlayCIDR      netip.Prefix
	OverlayPrefixLen int

	// HubGateway and HubSite name the cloud's own EGateway and ESite. The hub always gets
	// the first overlay prefix.
	HubGateway string
	HubSite    string

	// Endpoint (host:port) and PublicKey (base64) of the hub's WireGuard, written into
	// edge configurations and edge snapshots when the hub's EGateway object does not
	// carry them.
	Endpoint  string
	PublicKey string

	// SyncPort is the port of the sync server on the hub's overlay IP (default 7443).
	SyncPort int
	// Keepalive is the persistent keepalive written into edge configurations.
	Keepalive time.Duration

	// DNSZone is the zone under which EService domainNames are answered (default
	// "egw.local.").
	DNSZone string
}

// Defaults of Config.
const (
	DefaultOverlayCIDR      = "100.64.0.0/10"
	DefaultOverlayPrefixLen = 24
	DefaultSyncPort         = 7443
	DefaultDNSZone          = "egw.local."
	DefaultKeepalive        = 25 * time.Second
)

// WithDefaults returns c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	if !c.OverlayCIDR.IsValid() {
		c.OverlayCIDR = netip.MustParsePrefix(DefaultOverlayCIDR)
	}
	if c.OverlayPrefixLen == 0 {
		c.OverlayPrefixLen = DefaultOverlayPrefixLen
	}
	if c.SyncPort == 0 {
		c.SyncPort = DefaultSyncPort
	}
	if c.DNSZone == "" {
		c.DNSZone = DefaultDNSZone
	}
	if c.DNSZone[len(c.DNSZone)-1] != '.' {
		c.DNSZone += "."
	}
	if c.Keepalive == 0 {
		c.Keepalive = DefaultKeepalive
	}
	return c
}

// Validate checks c (after WithDefaults).
func (c Config) Validate() error {
	if !c.OverlayCIDR.Addr().Is4() || c.OverlayCIDR != c.OverlayCIDR.Masked() {
		return fmt.Errorf("overlayCIDR %s: want a canonical IPv4 prefix", c.OverlayCIDR)
	}
	if c.OverlayPrefixLen < c.OverlayCIDR.Bits() || c.OverlayPrefixLen > 29 {
		return fmt.Errorf("overlayPrefixLen %d: want %d..29 (inside overlayCIDR %s, with room for services and clients)",
			c.OverlayPrefixLen, c.OverlayCIDR.Bits(), c.OverlayCIDR)
	}
	if c.HubGateway == "" || c.HubSite == "" {
		return fmt.Errorf("the hub's gateway and site names must be set (name, site)")
	}
	if c.SyncPort < 1 || c.SyncPort > 65535 {
		return fmt.Errorf("syncPort %d: want 1-65535", c.SyncPort)
	}
	return nil
}

// HubPrefix is the overlay prefix of the hub: always the first one.
func (c Config) HubPrefix() netip.Prefix {
	return netip.PrefixFrom(c.OverlayCIDR.Addr(), c.OverlayPrefixLen)
}

// HubOverlayIP is the hub's overlay address, where edges reach the sync server.
func (c Config) HubOverlayIP() netip.Addr { return firstAddr(c.HubPrefix()) }
