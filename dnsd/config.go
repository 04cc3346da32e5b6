package dnsd

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/miekg/dns"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTTL             = 5 * time.Second
	DefaultZone            = "egw.local."
	DefaultMaxConcurrent   = 1024
	DefaultMaxTCPConns     = 256
	DefaultUpstreamTimeout = 2 * time.Second
	DefaultTCPIdleTimeout  = 5 * time.Second
	// MaxUDPSize is the largest UDP response we send and the EDNS buffer size we advertise
	// (DNS Flag Day 2020: 1232 bytes avoids IP fragmentation on any sane path).
	MaxUDPSize = 1232
)

// Config configures a Server. The zero value of every field except PolicyAware selects its
// default; use DefaultConfig to start from the recommended settings (PolicyAware on).
type Config struct {
	// Listen are the host:port addresses served on both UDP and TCP (port 53 when omitted).
	// The gateway passes its first VP address here plus any configured ones (see
	// ListenAddrs). Hosts must be IP literals. An address with port 0 gets one free port
	// shared by UDP and TCP.
	Listen []string
	// Upstreams are the resolvers (IP or IP:port, port 53 when omitted) that other names
	// are forwarded to. Empty: other names are REFUSED.
	Upstreams []string
	// SiteNetworks are the client networks of this site. Only clients inside them get
	// names forwarded; when non-empty, a service exposed to the whole site (AllowSite) is
	// answered only to clients inside them.
	SiteNetworks []netip.Prefix
	// PolicyAware: a client no policy allows to use a service gets NXDOMAIN for its names.
	// DefaultConfig turns it on; a bare Config{} has it off.
	PolicyAware bool
	// TTL of every answer and of negative answers (SOA minimum). Default 5 s.
	TTL time.Duration
	// Zone is the zone EService domainNames live under when the snapshot names none
	// (api.Snapshot.DNSZone wins when set). Default "egw.local.".
	Zone string
	// MaxConcurrent bounds the forwarded queries waiting for an upstream (the only
	// queries that wait). Over it a UDP query is dropped and a TCP query gets SERVFAIL;
	// both are counted as dropped. Local names are answered inline and never wait, so a
	// flood of other names cannot starve them. Default 1024.
	MaxConcurrent int
	// MaxTCPConns bounds open TCP connections; connections over it are closed at once and
	// counted as dropped. Default 256.
	MaxTCPConns int
	// UDPWorkers is the number of UDP sockets (SO_REUSEPORT) and reader goroutines per
	// listen address. Default: GOMAXPROCS, at least 2.
	UDPWorkers int
	// FreeBind (Linux) lets Start bind listen addresses the host does not have yet
	// (IP_FREEBIND), so the server can start before vp0 carries the VP address.
	FreeBind bool
	// UpstreamTimeout bounds one exchange with one upstream. Default 2 s.
	UpstreamTimeout time.Duration
	// TCPIdleTimeout closes an idle TCP connection. Default 5 s.
	TCPIdleTimeout time.Duration
}

// DefaultConfig returns the recommended configuration: policy-aware, 5 s TTL, zone
// "egw.local.". Listen, Upstreams and SiteNetworks are left for the caller.
func DefaultConfig() Config {
	return Config{PolicyAware: true, TTL: DefaultTTL, Zone: DefaultZone}
}

// normalize validates c and fills defaults. Errors name the field and the value.
func (c Config) normalize() (Config, []netip.AddrPort, []string, error) {
	if c.TTL < 0 {
		return c, nil, nil, fmt.Errorf("dnsd: config ttl: must not be negative, got %v", c.TTL)
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL > 24*time.Hour {
		return c, nil, nil, fmt.Errorf("dnsd: config ttl: at most 24h, got %v", c.TTL)
	}
	if c.Zone == "" {
		c.Zone = DefaultZone
	}
	zone, err := canonicalName(c.Zone)
	if err != nil {
		return c, nil, nil, fmt.Errorf("dnsd: config zone %q: %w", c.Zone, err)
	}
	c.Zone = zone
	for name, v := range map[string]*int{"maxConcurrent": &c.MaxConcurrent, "maxTCPConns": &c.MaxTCPConns, "udpWorkers": &c.UDPWorkers} {
		if *v < 0 {
			return c, nil, nil, fmt.Errorf("dnsd: config %s: must not be negative, got %d", name, *v)
		}
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxTCPConns == 0 {
		c.MaxTCPConns = DefaultMaxTCPConns
	}
	if c.UDPWorkers == 0 {
		c.UDPWorkers = max(2, runtime.GOMAXPROCS(0))
	}
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	c.SiteNetworks = slices.Clone(c.SiteNetworks)
	for i, p := range c.SiteNetworks {
		if !p.IsValid() {
			return c, nil, nil, fmt.Errorf("dnsd: config siteNetworks[%d]: invalid prefix", i)
		}
		c.SiteNetworks[i] = p.Masked()
	}
	listen := make([]netip.AddrPort, 0, len(c.Listen))
	for i, s := range c.Listen {
		ap, err := parseHostPort(s)
		if err != nil {
			return c, nil, nil, fmt.Errorf("dnsd: config listen[%d] %q: %w", i, s, err)
		}
		listen = append(listen, ap)
	}
	ups := make([]string, 0, len(c.Upstreams))
	for i, s := range c.Upstreams {
		ap, err := parseHostPort(s)
		if err != nil {
			return c, nil, nil, fmt.Errorf("dnsd: config upstreams[%d] %q: %w", i, s, err)
		}
		if ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return c, nil, nil, fmt.Errorf("dnsd: config upstreams[%d] %q: needs a concrete address and port", i, s)
		}
		ups = append(ups, ap.String())
	}
	return c, listen, ups, nil
}

// parseHostPort accepts "ip", "ip:port" and "[ipv6]:port"; the port defaults to 53.
func parseHostPort(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want an IP address with optional :port")
	}
	if a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("IPv6 zones are not supported")
	}
	return netip.AddrPortFrom(a.Unmap(), 53), nil
}

// canonicalName returns name lower-cased and fully qualified, or an error if it is not a
// valid domain name.
func canonicalName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("empty name")
	}
	name = strings.ToLower(dns.Fqdn(name))
	if _, ok := dns.IsDomainName(name); !ok {
		return "", fmt.Errorf("not a valid domain name")
	}
	return name, nil
}

// ListenAddrs returns the addresses a gateway's server listens on: the snapshot's VP
// address (vp0) on port 53 first, then the configured ones not already listed. A nil
// snapshot or one without a VP address gives the configured ones.
func ListenAddrs(snap *api.Snapshot, configured []string) []string {
	var out []string
	seen := map[netip.AddrPort]bool{}
	if snap != nil && snap.VPAddr.IsValid() {
		ap := netip.AddrPortFrom(snap.VPAddr.Unmap(), 53)
		out = append(out, ap.String())
		seen[ap] = true
	}
	for _, s := range configured {
		if ap, err := parseHostPort(s); err == nil && seen[ap] {
			continue
		}
		out = append(out, s)
	}
	return out
}
