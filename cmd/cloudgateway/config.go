package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/egw-project/egw/controlplane"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DefaultConfigFile is read when --config is not given (a missing default file is fine).
const DefaultConfigFile = "/etc/egw/cloudgateway.yaml"

// Config is /etc/egw/cloudgateway.yaml (docs/ARCHITECTURE.md): the node keys shared with
// the edge gateway plus the cloud's own. Every key is also EGW_<KEY> (upper case, "_" for
// ".") and the flags --state-dir, --api-socket and --dataplane override theirs.
type Config struct {
	Name           string `mapstructure:"name"`
	Site           string `mapstructure:"site"`
	StateDir       string `mapstructure:"stateDir"`
	PrivateKeyFile string `mapstructure:"privateKeyFile"`
	ListenPort     int    `mapstructure:"listenPort"`
	VPCIDR         string `mapstructure:"vpCIDR"`

	Tun     TunConfig     `mapstructure:"tun"`
	DNS     DNSConfig     `mapstructure:"dns"`
	Metrics MetricsConfig `mapstructure:"metrics"`
	NAT     NATConfig     `mapstructure:"nat"`

	Endpoint         string `mapstructure:"endpoint"`
	OverlayCIDR      string `mapstructure:"overlayCIDR"`
	OverlayPrefixLen int    `mapstructure:"overlayPrefixLen"`
	APISocket        string `mapstructure:"apiSocket"`
	APIListen        string `mapstructure:"apiListen"`
	APITokenFile     string `mapstructure:"apiTokenFile"`
	SyncPort         int    `mapstructure:"syncPort"`
	Dataplane        bool   `mapstructure:"dataplane"`
}

// TunConfig is the tun section (used by the data plane).
type TunConfig struct {
	Name   string `mapstructure:"name"`
	MTU    int    `mapstructure:"mtu"`
	Driver string `mapstructure:"driver"`
}

// DNSConfig is the dns section (used by the data plane).
type DNSConfig struct {
	Enabled      bool          `mapstructure:"enabled"`
	Listen       []string      `mapstructure:"listen"`
	Upstreams    []string      `mapstructure:"upstreams"`
	SiteNetworks []string      `mapstructure:"siteNetworks"`
	PolicyAware  bool          `mapstructure:"policyAware"`
	TTL          time.Duration `mapstructure:"ttl"`
	Zone         string        `mapstructure:"zone"`
}

// MetricsConfig is the metrics section.
type MetricsConfig struct {
	Listen string `mapstructure:"listen"`
}

// NATConfig is the nat section (used by the data plane).
type NATConfig struct {
	RejectDenied bool          `mapstructure:"rejectDenied"`
	LeaseIdle    time.Duration `mapstructure:"leaseIdle"`
	LeaseQuiet   time.Duration `mapstructure:"leaseQuiet"`
}

// defaults work for the demo.
var defaults = map[string]any{
	"name":             "cloud-gw",
	"site":             "cloud",
	"stateDir":         "/var/lib/egw",
	"privateKeyFile":   "",
	"listenPort":       51820,
	"vpCIDR":           "192.168.9.0/24",
	"tun.name":         "vp0",
	"tun.mtu":          1420,
	"tun.driver":       "wgtun",
	"dns.enabled":      true,
	"dns.listen":       []string{},
	"dns.upstreams":    []string{},
	"dns.siteNetworks": []string{},
	"dns.policyAware":  true,
	"dns.ttl":          "5s",
	"dns.zone":         controlplane.DefaultDNSZone,
	"metrics.listen":   "127.0.0.1:9469",
	"nat.rejectDenied": true,
	"nat.leaseIdle":    "5m",
	"nat.leaseQuiet":   "2m",
	"endpoint":         "",
	"overlayCIDR":      controlplane.DefaultOverlayCIDR,
	"overlayPrefixLen": controlplane.DefaultOverlayPrefixLen,
	"apiSocket":        controlplane.DefaultAPISocket,
	"apiListen":        "",
	"apiTokenFile":     "",
	"syncPort":         controlplane.DefaultSyncPort,
	"dataplane":        true,
}

// loadConfig reads the configuration: defaults < file < EGW_* environment < flags.
func loadConfig(flags *pflag.FlagSet) (*Config, string, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("EGW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, flag := range map[string]string{"stateDir": "state-dir", "apiSocket": "api-socket", "dataplane": "dataplane"} {
		if f := flags.Lookup(flag); f != nil && f.Changed {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, "", err
			}
		}
	}
	file, _ := flags.GetString("config")
	explicit := file != ""
	if !explicit {
		file = DefaultConfigFile
	}
	v.SetConfigFile(file)
	v.SetConfigType("yaml")
	used := file
	if err := v.ReadInConfig(); err != nil {
		if explicit || !errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("config %s: %w", file, err)
		}
		used = ""
	}
	c := &Config{}
	if err := v.Unmarshal(c); err != nil {
		return nil, "", fmt.Errorf("config %s: %w", file, err)
	}
	if c.PrivateKeyFile == "" {
		c.PrivateKeyFile = c.StateDir + "/private.key"
	}
	return c, used, nil
}

// controlplaneConfig is the part of c the control plane needs.
func (c *Config) controlplaneConfig() (controlplane.Config, error) {
	overlay, err := netip.ParsePrefix(c.OverlayCIDR)
	if err != nil {
		return controlplane.Config{}, fmt.Errorf("overlayCIDR %q: %v", c.OverlayCIDR, err)
	}
	cfg := controlplane.Config{
		OverlayCIDR: overlay, OverlayPrefixLen: c.OverlayPrefixLen,
		HubGateway: c.Name, HubSite: c.Site, Endpoint: c.Endpoint,
		SyncPort: c.SyncPort, DNSZone: c.DNS.Zone,
	}.WithDefaults()
	return cfg, cfg.Validate()
}
