package main

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/egw-project/egw/controlplane"
	"github.com/egw-project/egw/gateway"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// DefaultConfigFile is read when --config is not given (a missing default file is fine).
const DefaultConfigFile = "/etc/egw/cloudgateway.yaml"

// Config is /etc/egw/cloudgateway.yaml (docs/ARCHITECTURE.md): the node keys shared with
// the edge gateway (the embedded gateway.Config: name, site, stateDir, privateKeyFile,
// listenPort, overlayCIDR, vpCIDR, tun, dns, metrics, nat) plus the cloud's own. The hub's
// overlayPrefix, overlayIP and cloud section come from the control plane, not from the file.
// Every key is also EGW_<KEY> (upper case, "_" for ".") and the flags --state-dir,
// --api-socket, --dataplane, --store-backend and --etcd-endpoints override theirs. Keys
// tagged reload:"live" apply on SIGHUP; the others need a restart (api.RestartKeys).
type Config struct {
	gateway.Config `mapstructure:",squash"`

	Endpoint         string `mapstructure:"endpoint" reload:"live"`
	OverlayPrefixLen int    `mapstructure:"overlayPrefixLen"`
	APISocket        string `mapstructure:"apiSocket"`
	APIListen        string `mapstructure:"apiListen"`
	APITokenFile     string `mapstructure:"apiTokenFile" reload:"live"`
	APITLSCert       string `mapstructure:"apiTLSCert"` // with APITLSKey (0600): the TCP API serves TLS
	APITLSKey        string `mapstructure:"apiTLSKey"`
	SyncPort         int    `mapstructure:"syncPort"`
	// APIMaxConns and APIMaxConnsPerAddr cap the TCP API's open connections, in all and
	// per client address (controlplane.DefaultServeLimits).
	APIMaxConns        int  `mapstructure:"apiMaxConns"`
	APIMaxConnsPerAddr int  `mapstructure:"apiMaxConnsPerAddr"`
	Dataplane          bool `mapstructure:"dataplane"`
	// EnrollListen is where the enrollment listener (HTTPS, join tokens) listens ("": off);
	// EnrollAddress is the host:port join tokens carry (default: endpoint's host, its port).
	EnrollListen  string `mapstructure:"enrollListen"`
	EnrollAddress string `mapstructure:"enrollAddress"`
	Store         Store  `mapstructure:"store"`
	// HubName is this replica's name as a hub ("": name). Replicas on one store share name
	// and site; the one whose hubName is name runs the cloud site's gateway, each other
	// sets a hubName of its own (README "Running several cloud gateways").
	HubName string `mapstructure:"hubName"`

	// rotateStoreID is the --new-store-id flag (a one-off action, so not a config key).
	rotateStoreID bool
}

// Store is the store section: the backend of the control plane's store (bbolt: the file
// <stateDir>/egw.db; etcd: shared by every cloud gateway replica on the same prefix).
type Store struct {
	Backend string `mapstructure:"backend"`
	Etcd    struct {
		Endpoints []string `mapstructure:"endpoints"`
		Prefix    string   `mapstructure:"prefix"`
		TLS       struct {
			CA   string `mapstructure:"ca"`
			Cert string `mapstructure:"cert"`
			Key  string `mapstructure:"key"`
		} `mapstructure:"tls"`
		DialTimeout time.Duration `mapstructure:"dialTimeout"`
	} `mapstructure:"etcd"`
}

// defaults are gateway.Defaults with the cloud's own values (they work for the demo) and
// without the edge-only cloud section.
func defaults() map[string]any {
	d := gateway.Defaults()
	for k := range d {
		if strings.HasPrefix(k, "cloud.") {
			delete(d, k)
		}
	}
	maps.Copy(d, map[string]any{
		"name":               "cloud-gw",
		"site":               "cloud",
		"privateKeyFile":     "",
		"listenPort":         51820,
		"vpCIDR":             "192.168.9.0/24",
		"dns.listen":         []string{},
		"dns.upstreams":      []string{},
		"dns.siteNetworks":   []string{},
		"dns.zone":           controlplane.DefaultDNSZone,
		"endpoint":           "",
		"overlayCIDR":        controlplane.DefaultOverlayCIDR,
		"overlayPrefixLen":   controlplane.DefaultOverlayPrefixLen,
		"apiSocket":          controlplane.DefaultAPISocket,
		"apiListen":          "",
		"apiTokenFile":       "",
		"apiTLSCert":         "",
		"apiTLSKey":          "",
		"syncPort":           controlplane.DefaultSyncPort,
		"apiMaxConns":        controlplane.DefaultServeLimits.MaxConns,
		"apiMaxConnsPerAddr": controlplane.DefaultServeLimits.MaxConnsPerAddr,
		"dataplane":          true,
		"enrollListen":       ":7444",
		"enrollAddress":      "",
		"hubName":            "",

		"store.backend":          controlplane.BackendBolt,
		"store.etcd.endpoints":   []string{},
		"store.etcd.prefix":      controlplane.DefaultEtcdPrefix,
		"store.etcd.tls.ca":      "",
		"store.etcd.tls.cert":    "",
		"store.etcd.tls.key":     "",
		"store.etcd.dialTimeout": controlplane.DefaultEtcdDialTimeout.String(),
	})
	return d
}

// loadConfig reads the configuration: defaults < file < EGW_* environment < flags.
func loadConfig(flags *pflag.FlagSet) (*Config, string, error) {
	v := viper.New()
	for k, d := range defaults() {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix("EGW")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	for key, flag := range map[string]string{"stateDir": "state-dir", "apiSocket": "api-socket", "dataplane": "dataplane",
		"store.backend": "store-backend", "store.etcd.endpoints": "etcd-endpoints"} {
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
	// One comma-separated string (--etcd-endpoints, EGW_STORE_ETCD_ENDPOINTS) or a list.
	var eps []string
	for _, e := range c.Store.Etcd.Endpoints {
		for part := range strings.SplitSeq(e, ",") {
			if part = strings.TrimSpace(part); part != "" {
				eps = append(eps, part)
			}
		}
	}
	c.Store.Etcd.Endpoints = eps
	return c, used, nil
}

// storeConfig is the store section as the control plane takes it, checked.
func (c *Config) storeConfig() (controlplane.StoreConfig, error) {
	sc := controlplane.StoreConfig{Backend: c.Store.Backend}
	sc.Etcd.Endpoints = c.Store.Etcd.Endpoints
	sc.Etcd.Prefix = c.Store.Etcd.Prefix
	sc.Etcd.TLS.CA, sc.Etcd.TLS.Cert, sc.Etcd.TLS.Key = c.Store.Etcd.TLS.CA, c.Store.Etcd.TLS.Cert, c.Store.Etcd.TLS.Key
	sc.Etcd.DialTimeout = c.Store.Etcd.DialTimeout
	sc = sc.WithDefaults()
	return sc, sc.Validate()
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

// serveLimits are the TCP admin API's limits: the defaults with the configured caps.
func (c *Config) serveLimits() controlplane.ServeLimits {
	lim := controlplane.DefaultServeLimits
	if c.APIMaxConns > 0 {
		lim.MaxConns = c.APIMaxConns
	}
	if c.APIMaxConnsPerAddr > 0 {
		lim.MaxConnsPerAddr = c.APIMaxConnsPerAddr
	}
	return lim
}

// hubName is this replica's name as a hub: hubName, else name.
func (c *Config) hubName() string {
	if c.HubName != "" {
		return c.HubName
	}
	return c.Name
}
