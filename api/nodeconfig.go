package api

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
)

// NodeConfig is a gateway's configuration file, /etc/egw/edgegateway.yaml (the cloud
// gateway's file adds its own keys beside these): the one schema of that file. The daemons
// read it with viper (mapstructure tags); the control plane writes it for a registered edge
// (YAML, which renders durations as "25s"). A field tagged reload:"live" is applied on
// SIGHUP; a change to any other needs a restart (RestartKeys). docs/ARCHITECTURE.md,
// "Daemon configuration files".
type NodeConfig struct {
	Name           string `mapstructure:"name" yaml:"name"`
	Site           string `mapstructure:"site" yaml:"site"`
	StateDir       string `mapstructure:"stateDir" yaml:"stateDir"`
	PrivateKeyFile string `mapstructure:"privateKeyFile" yaml:"privateKeyFile"`
	ListenPort     int    `mapstructure:"listenPort" yaml:"listenPort"`
	OverlayCIDR    string `mapstructure:"overlayCIDR" yaml:"overlayCIDR"`
	OverlayPrefix  string `mapstructure:"overlayPrefix" yaml:"overlayPrefix"`
	OverlayIP      string `mapstructure:"overlayIP" yaml:"overlayIP"`
	VPCIDR         string `mapstructure:"vpCIDR" yaml:"vpCIDR"`

	Cloud   NodeCloudConfig   `mapstructure:"cloud" yaml:"cloud"`
	TUN     NodeTUNConfig     `mapstructure:"tun" yaml:"tun"`
	DNS     NodeDNSConfig     `mapstructure:"dns" yaml:"dns"`
	Metrics NodeMetricsConfig `mapstructure:"metrics" yaml:"metrics"`
	NAT     NodeNATConfig     `mapstructure:"nat" yaml:"nat"`
	Paths   NodePathsConfig   `mapstructure:"paths" yaml:"paths"`
}

// NodeCloudConfig says how an edge reaches the cloud hub.
type NodeCloudConfig struct {
	Endpoint  string        `mapstructure:"endpoint" yaml:"endpoint" reload:"live"`
	PublicKey string        `mapstructure:"publicKey" yaml:"publicKey" reload:"live"`
	OverlayIP string        `mapstructure:"overlayIP" yaml:"overlayIP"`
	SyncPort  int           `mapstructure:"syncPort" yaml:"syncPort"`
	Keepalive time.Duration `mapstructure:"keepalive" yaml:"keepalive" reload:"live"`
	// Hubs are the other hubs (cloud gateway replicas) the edge may sync from before its
	// first snapshot lists them: a bootstrap list, written by the cloud when it prints the
	// edge's configuration.
	Hubs []NodeHubConfig `mapstructure:"hubs" yaml:"hubs,omitempty"`
}

// NodeHubConfig is one hub of NodeCloudConfig.Hubs.
type NodeHubConfig struct {
	Name      string `mapstructure:"name" yaml:"name"`
	Endpoint  string `mapstructure:"endpoint" yaml:"endpoint"`
	PublicKey string `mapstructure:"publicKey" yaml:"publicKey"`
	OverlayIP string `mapstructure:"overlayIP" yaml:"overlayIP"`
}

// NodeTUNConfig selects the vp0 device. Gateways sharing a host need distinct names.
type NodeTUNConfig struct {
	Name   string `mapstructure:"name" yaml:"name"`
	MTU    int    `mapstructure:"mtu" yaml:"mtu"`
	Driver string `mapstructure:"driver" yaml:"driver"` // "wgtun" (default) or "water"
}

// NodeDNSConfig configures the local DNS server.
type NodeDNSConfig struct {
	Enabled      bool          `mapstructure:"enabled" yaml:"enabled"`
	Listen       []string      `mapstructure:"listen" yaml:"listen"`
	Upstreams    []string      `mapstructure:"upstreams" yaml:"upstreams"`
	SiteNetworks []string      `mapstructure:"siteNetworks" yaml:"siteNetworks"`
	PolicyAware  bool          `mapstructure:"policyAware" yaml:"policyAware"`
	TTL          time.Duration `mapstructure:"ttl" yaml:"ttl"`
	Zone         string        `mapstructure:"zone" yaml:"zone"`
}

// NodeMetricsConfig is where Prometheus metrics are served ("" disables them).
type NodeMetricsConfig struct {
	Listen string `mapstructure:"listen" yaml:"listen"`
}

// NodeNATConfig tunes the translation engine.
type NodeNATConfig struct {
	RejectDenied bool          `mapstructure:"rejectDenied" yaml:"rejectDenied"`
	ResetRevoked bool          `mapstructure:"resetRevoked" yaml:"resetRevoked"` // RST both ends of revoked TCP flows (nat/reset.go)
	LeaseIdle    time.Duration `mapstructure:"leaseIdle" yaml:"leaseIdle"`
	LeaseQuiet   time.Duration `mapstructure:"leaseQuiet" yaml:"leaseQuiet"`
}

// NodePathsConfig configures the paths between gateways (docs/ARCHITECTURE.md, "Paths
// between gateways").
type NodePathsConfig struct {
	// Direct lets an edge reach linked gateways on a proven direct UDP path; false sends
	// everything to them through the hub's relay (and answers no probes).
	Direct bool `mapstructure:"direct" yaml:"direct"`
	// RelayRate and RelayBurst (read by the hub) bound, per sending gateway, the bytes per
	// second its relay forwards; every datagram counts at least 256 bytes.
	RelayRate  float64 `mapstructure:"relayRate" yaml:"relayRate"`
	RelayBurst int     `mapstructure:"relayBurst" yaml:"relayBurst"`
}

// DefaultNodeConfig is what every key holds when nothing sets it. Both daemons register it
// with viper (ConfigMap) and the control plane starts each edge's file from it.
func DefaultNodeConfig() NodeConfig {
	return NodeConfig{
		StateDir:    "/var/lib/egw",
		OverlayCIDR: "100.64.0.0/10",
		Cloud:       NodeCloudConfig{OverlayIP: "100.64.0.1", SyncPort: 7443, Keepalive: 25 * time.Second},
		TUN:         NodeTUNConfig{Name: "vp0", MTU: 1420, Driver: "wgtun"},
		DNS: NodeDNSConfig{Enabled: true, Listen: []string{}, Upstreams: []string{}, SiteNetworks: []string{},
			PolicyAware: true, TTL: 5 * time.Second, Zone: "egw.local."},
		Metrics: NodeMetricsConfig{Listen: "127.0.0.1:9469"},
		NAT:     NodeNATConfig{RejectDenied: true, ResetRevoked: true, LeaseIdle: 5 * time.Minute, LeaseQuiet: 2 * time.Minute},
		Paths:   NodePathsConfig{Direct: true, RelayRate: 1 << 30, RelayBurst: 8 << 20},
	}
}

// YAML renders c as edgegateway.yaml for a registered edge, with a header naming the
// gateway (and saying so when the cloud's key or endpoint is missing). Durations read as
// "25s", in the order of the schema.
func (c *NodeConfig) YAML() ([]byte, error) {
	body, err := yamlv3.Marshal(yamlNode(reflect.ValueOf(*c)))
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("# /etc/egw/edgegateway.yaml for EGateway %s (site %s), written by the cloud gateway.\n", c.Name, c.Site)
	if c.Cloud.PublicKey == "" || c.Cloud.Endpoint == "" {
		head += "# cloud.publicKey or cloud.endpoint is empty: set them in the cloud gateway's configuration.\n"
	}
	return append([]byte(head), body...), nil
}

var durationType = reflect.TypeOf(time.Duration(0))

// yamlNode is v as a YAML node: structs as mappings of their yaml-tagged fields in order,
// durations as strings, everything else as yaml encodes it.
func yamlNode(v reflect.Value) *yamlv3.Node {
	switch {
	case v.Type() == durationType:
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Value: time.Duration(v.Int()).String()}
	case v.Kind() == reflect.Struct:
		m := &yamlv3.Node{Kind: yamlv3.MappingNode}
		for i := 0; i < v.NumField(); i++ {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			m.Content = append(m.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: name}, yamlNode(v.Field(i)))
		}
		return m
	}
	n := &yamlv3.Node{}
	if err := n.Encode(v.Interface()); err != nil { // plain strings, numbers, lists: cannot fail
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: fmt.Sprint(v.Interface())}
	}
	return n
}

// ConfigMap flattens a configuration struct into viper's keys ("dns.ttl") and values, by
// its mapstructure tags; a ",squash" field's keys join its parent's. Durations stay
// time.Duration (viper decodes them either way).
func ConfigMap(cfg any) map[string]any {
	out := map[string]any{}
	walkConfig(reflect.ValueOf(cfg), "", func(key string, v reflect.Value, _ bool) { out[key] = v.Interface() })
	return out
}

// RestartKeys names the keys whose values differ between two configurations of the same
// type and that a reload does not apply (fields not tagged reload:"live"), sorted.
func RestartKeys(a, b any) []string {
	va, vb := map[string]reflect.Value{}, map[string]reflect.Value{}
	live := map[string]bool{}
	walkConfig(reflect.ValueOf(a), "", func(key string, v reflect.Value, l bool) { va[key], live[key] = v, l })
	walkConfig(reflect.ValueOf(b), "", func(key string, v reflect.Value, _ bool) { vb[key] = v })
	var out []string
	for key, x := range va {
		if live[key] {
			continue
		}
		if y, ok := vb[key]; !ok || !reflect.DeepEqual(normalizeEmpty(x), normalizeEmpty(y)) {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

// normalizeEmpty makes a nil and an empty slice compare equal.
func normalizeEmpty(v reflect.Value) any {
	if v.Kind() == reflect.Slice && v.Len() == 0 {
		return nil
	}
	return v.Interface()
}

// walkConfig calls leaf for every leaf field of v (a struct or a pointer to one) with its
// dotted mapstructure key and whether it is tagged reload:"live". Untagged and unexported
// fields are skipped.
func walkConfig(v reflect.Value, prefix string, leaf func(key string, v reflect.Value, live bool)) {
	for v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("mapstructure")
		name, opts, _ := strings.Cut(tag, ",")
		fv := v.Field(i)
		if opts == "squash" {
			walkConfig(fv, prefix, leaf)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		key := prefix + name
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			walkConfig(fv, key+".", leaf)
			continue
		}
		leaf(key, fv, f.Tag.Get("reload") == "live")
	}
}
