// Package gateway is the EGW node agent shared by edgegateway and cloudgateway: it owns the
// node's typed configuration, its WireGuard key file, the on-disk snapshot cache, the sync
// client that long-polls the cloud through the tunnel, and Node, which applies each snapshot
// atomically to the NAT engine, the overlay device and the DNS server and reports status.
package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/egw-project/egw/api"
)

// Config is a gateway node's configuration: api.NodeConfig, the one schema of
// edgegateway.yaml (the cloud's file adds its own keys on top; docs/ARCHITECTURE.md). viper
// fills it in cmd/. The section types are api's too.
type (
	Config         = api.NodeConfig
	CloudConfig    = api.NodeCloudConfig
	CloudHubConfig = api.NodeHubConfig
	TUNConfig      = api.NodeTUNConfig
	DNSConfig      = api.NodeDNSConfig
	MetricsConfig  = api.NodeMetricsConfig
	NATConfig      = api.NodeNATConfig
	PathsConfig    = api.NodePathsConfig
)

// Defaults are the values every key takes when neither file, env nor flag sets it
// (api.DefaultNodeConfig as viper keys). cmd/ registers them with viper so that `EGW_*`
// overrides work for every key.
func Defaults() map[string]any { return api.ConfigMap(api.DefaultNodeConfig()) }

// Parsed is Config with its addresses parsed and checked.
type Parsed struct {
	Config
	OverlayCIDRP   netip.Prefix
	OverlayPrefixP netip.Prefix
	OverlayIPA     netip.Addr
	VPCIDRP        netip.Prefix
	VPAddr         netip.Addr
	CloudOverlay   netip.Addr
	// Hubs are the bootstrap list's hubs (cloud.hubs) as peers.
	Hubs         []api.Peer
	SiteNetworks []netip.Prefix
}

// Parse checks c and returns it with addresses parsed. Every error names the key at fault.
// edge says whether the cloud section is required.
func Parse(c Config, edge bool) (*Parsed, error) {
	p := &Parsed{Config: c}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	prefix := func(key, v string, required bool) netip.Prefix {
		if v == "" {
			if required {
				bad(key, "is required")
			}
			return netip.Prefix{}
		}
		pf, err := netip.ParsePrefix(v)
		if err != nil || !pf.Addr().Is4() {
			bad(key, "%q is not an IPv4 CIDR", v)
			return netip.Prefix{}
		}
		if pf.Masked() != pf {
			bad(key, "%q is not canonical (did you mean %s?)", v, pf.Masked())
		}
		return pf
	}
	addr := func(key, v string, required bool) netip.Addr {
		if v == "" {
			if required {
				bad(key, "is required")
			}
			return netip.Addr{}
		}
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			bad(key, "%q is not an IPv4 address", v)
			return netip.Addr{}
		}
		return a
	}
	if c.Name == "" {
		bad("name", "is required")
	}
	if c.Site == "" {
		bad("site", "is required")
	}
	if c.StateDir == "" {
		bad("stateDir", "is required")
	}
	if c.PrivateKeyFile == "" {
		p.PrivateKeyFile = filepath.Join(c.StateDir, "private.key")
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		bad("listenPort", "must be 0-65535, got %d", c.ListenPort)
	}
	p.OverlayCIDRP = prefix("overlayCIDR", c.OverlayCIDR, true)
	p.OverlayPrefixP = prefix("overlayPrefix", c.OverlayPrefix, edge)
	p.OverlayIPA = addr("overlayIP", c.OverlayIP, false)
	p.VPCIDRP = prefix("vpCIDR", c.VPCIDR, true)
	if p.VPCIDRP.IsValid() {
		p.VPAddr = p.VPCIDRP.Addr().Next()
	}
	if p.OverlayPrefixP.IsValid() {
		if !p.OverlayIPA.IsValid() {
			p.OverlayIPA = p.OverlayPrefixP.Addr().Next()
		} else if !p.OverlayPrefixP.Contains(p.OverlayIPA) {
			bad("overlayIP", "%s is not inside overlayPrefix %s", p.OverlayIPA, p.OverlayPrefixP)
		}
		if p.OverlayCIDRP.IsValid() && !(p.OverlayCIDRP.Contains(p.OverlayPrefixP.Addr()) && p.OverlayPrefixP.Bits() >= p.OverlayCIDRP.Bits()) {
			bad("overlayPrefix", "%s is not inside overlayCIDR %s", p.OverlayPrefixP, p.OverlayCIDRP)
		}
	}
	if p.VPCIDRP.IsValid() && p.OverlayCIDRP.IsValid() {
		if err := api.CheckVPCIDR(p.VPCIDRP, p.OverlayCIDRP); err != nil {
			bad("vpCIDR", "%v", err)
		}
	}
	p.CloudOverlay = addr("cloud.overlayIP", c.Cloud.OverlayIP, edge)
	if edge {
		if c.Cloud.Endpoint == "" {
			bad("cloud.endpoint", "is required (host:port of the cloud gateway)")
		} else if _, port, ok := strings.Cut(c.Cloud.Endpoint, ":"); !ok || port == "" {
			bad("cloud.endpoint", "%q must be host:port", c.Cloud.Endpoint)
		}
		if c.Cloud.PublicKey == "" {
			bad("cloud.publicKey", "is required")
		}
	}
	for i, h := range c.Cloud.Hubs {
		f := fmt.Sprintf("cloud.hubs[%d]", i)
		ip, err := netip.ParseAddr(h.OverlayIP)
		switch {
		case err != nil || !ip.Is4():
			bad(f+".overlayIP", "%q is not an IPv4 address", h.OverlayIP)
		case p.OverlayCIDRP.IsValid() && !p.OverlayCIDRP.Contains(ip):
			bad(f+".overlayIP", "%s is not inside overlayCIDR %s", ip, p.OverlayCIDRP)
		}
		if _, port, ok := strings.Cut(h.Endpoint, ":"); !ok || port == "" {
			bad(f+".endpoint", "%q must be host:port", h.Endpoint)
		}
		if err := api.CheckPublicKey(h.PublicKey); err != nil {
			bad(f+".publicKey", "%v", err)
		}
		if err == nil && ip.Is4() {
			p.Hubs = append(p.Hubs, api.Peer{Name: h.Name, Site: "", PublicKey: h.PublicKey, Endpoint: h.Endpoint,
				OverlayIP: ip, AllowedIPs: []netip.Prefix{netip.PrefixFrom(ip, 32)}, Hub: true})
		}
	}
	if c.Cloud.SyncPort <= 0 || c.Cloud.SyncPort > 65535 {
		bad("cloud.syncPort", "must be 1-65535, got %d", c.Cloud.SyncPort)
	}
	if c.TUN.Name == "" {
		bad("tun.name", "is required")
	}
	if c.TUN.MTU < 576 || c.TUN.MTU > 9000 {
		bad("tun.mtu", "must be 576-9000, got %d", c.TUN.MTU)
	}
	switch c.TUN.Driver {
	case "wgtun", "water":
	default:
		bad("tun.driver", "must be wgtun or water, got %q", c.TUN.Driver)
	}
	for i, s := range c.DNS.SiteNetworks {
		if pf := prefix(fmt.Sprintf("dns.siteNetworks[%d]", i), s, true); pf.IsValid() {
			p.SiteNetworks = append(p.SiteNetworks, pf)
		}
	}
	if c.DNS.TTL < 0 {
		bad("dns.ttl", "must not be negative")
	}
	if c.NAT.LeaseIdle <= 0 {
		bad("nat.leaseIdle", "must be positive")
	}
	if c.NAT.LeaseQuiet < 0 {
		bad("nat.leaseQuiet", "must not be negative")
	}
	if c.Paths.RelayRate < 0 {
		bad("paths.relayRate", "must not be negative")
	}
	if c.Paths.RelayBurst < 0 {
		bad("paths.relayBurst", "must not be negative")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return p, nil
}

// UAPISocketDir is where wireguard-go puts a device's UAPI socket (NAME.sock), for every
// network namespace of the host alike.
const UAPISocketDir = "/var/run/wireguard"

// CheckDeviceFree refuses a tun.name already in use: by a network device of this namespace,
// or by a running WireGuard device anywhere on the host (its UAPI socket answers), which is
// what several gateways on one host in different namespaces run into. A stale socket
// (nobody answers) is no conflict: wireguard-go replaces it.
func CheckDeviceFree(name, socketDir string) error {
	if _, err := net.InterfaceByName(name); err == nil {
		return fmt.Errorf("tun.name: a network device %q already exists in this network namespace (another gateway?); give this gateway its own tun.name", name)
	}
	sock := filepath.Join(socketDir, name+".sock")
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("tun.name: WireGuard device %q is already running on this host (its UAPI socket %s answers; gateways in other network namespaces share that directory); give this gateway its own tun.name", name, sock)
	}
	return nil
}
