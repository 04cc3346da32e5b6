package controlplane

import (
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strings"

	"github.com/egw-project/egw/api"
	yaml "go.yaml.in/yaml/v3"
)

// EdgeConfig is /etc/egw/edgegateway.yaml (docs/ARCHITECTURE.md), as
// /v1/egateways/{name}/edgeconfig prints it for a registered gateway.
type EdgeConfig struct {
	Name           string          `yaml:"name"`
	Site           string          `yaml:"site"`
	StateDir       string          `yaml:"stateDir"`
	PrivateKeyFile string          `yaml:"privateKeyFile"`
	ListenPort     int             `yaml:"listenPort"`
	OverlayCIDR    string          `yaml:"overlayCIDR"`
	OverlayPrefix  string          `yaml:"overlayPrefix"`
	OverlayIP      string          `yaml:"overlayIP"`
	VPCIDR         string          `yaml:"vpCIDR"`
	Cloud          EdgeCloudConfig `yaml:"cloud"`
	Tun            EdgeTunConfig   `yaml:"tun"`
	DNS            EdgeDNSConfig   `yaml:"dns"`
	Metrics        struct {
		Listen string `yaml:"listen"`
	} `yaml:"metrics"`
	NAT EdgeNATConfig `yaml:"nat"`
}

// EdgeCloudConfig is the cloud section of EdgeConfig.
type EdgeCloudConfig struct {
	Endpoint  string `yaml:"endpoint"`
	PublicKey string `yaml:"publicKey"`
	OverlayIP string `yaml:"overlayIP"`
	SyncPort  int    `yaml:"syncPort"`
	Keepalive string `yaml:"keepalive"`
}

// EdgeTunConfig is the tun section of EdgeConfig.
type EdgeTunConfig struct {
	Name   string `yaml:"name"`
	MTU    int    `yaml:"mtu"`
	Driver string `yaml:"driver"`
}

// EdgeDNSConfig is the dns section of EdgeConfig.
type EdgeDNSConfig struct {
	Enabled      bool     `yaml:"enabled"`
	Listen       []string `yaml:"listen"`
	Upstreams    []string `yaml:"upstreams"`
	SiteNetworks []string `yaml:"siteNetworks"`
	PolicyAware  bool     `yaml:"policyAware"`
	TTL          string   `yaml:"ttl"`
	Zone         string   `yaml:"zone"`
}

// EdgeNATConfig is the nat section of EdgeConfig.
type EdgeNATConfig struct {
	RejectDenied bool   `yaml:"rejectDenied"`
	LeaseIdle    string `yaml:"leaseIdle"`
	LeaseQuiet   string `yaml:"leaseQuiet"`
}

// DefaultEdgeStateDir is the state directory written into edge configurations.
const DefaultEdgeStateDir = "/var/lib/egw"

// EdgeConfig returns the configuration of an edge gateway, filled from its allocation and
// the cloud's configuration (the hub's EGateway object's publicKey and endpoint win over
// Config's).
func (s *Server) EdgeConfig(name string) (*EdgeConfig, error) {
	st, err := s.store.loadShared()
	if err != nil {
		return nil, err
	}
	key := api.KindEGateway + "/" + name
	o, ok := st.Objects[key]
	if !ok {
		return nil, &Error{Code: CodeNotFound, Object: key, Message: "not found"}
	}
	if name == s.cfg.HubGateway {
		return nil, &Error{Code: CodeBadRequest, Object: key, Message: "is the cloud's own gateway; it has no edge configuration"}
	}
	g := o.(*api.EGateway)
	prefix, ok := st.IPAM.Gateways[name]
	if !ok {
		return nil, &Error{Code: CodeConflict, Object: key, Message: fmt.Sprintf("has no overlay prefix: no free /%d left in %s", s.cfg.OverlayPrefixLen, s.cfg.OverlayCIDR)}
	}
	cloud := EdgeCloudConfig{Endpoint: s.cfg.Endpoint, PublicKey: s.cfg.PublicKey, OverlayIP: s.cfg.HubOverlayIP().String(),
		SyncPort: s.cfg.SyncPort, Keepalive: s.cfg.Keepalive.String()}
	if h, ok := st.Objects[api.KindEGateway+"/"+s.cfg.HubGateway].(*api.EGateway); ok {
		if h.PublicKey != "" {
			cloud.PublicKey = h.PublicKey
		}
		if h.Endpoint != "" {
			cloud.Endpoint = h.Endpoint
		}
	}
	c := &EdgeConfig{
		Name: name, Site: g.ESiteName, StateDir: DefaultEdgeStateDir,
		PrivateKeyFile: filepath.Join(DefaultEdgeStateDir, "private.key"),
		OverlayCIDR:    s.cfg.OverlayCIDR.String(), OverlayPrefix: prefix.String(), OverlayIP: firstAddr(prefix).String(),
		VPCIDR: g.VirtualPresenceIPcidr, Cloud: cloud,
		Tun: EdgeTunConfig{Name: DeviceName(name), MTU: 1420, Driver: "wgtun"},
		DNS: EdgeDNSConfig{Enabled: true, Listen: []string{}, Upstreams: []string{}, SiteNetworks: []string{},
			PolicyAware: true, TTL: "5s", Zone: s.cfg.DNSZone},
		NAT: EdgeNATConfig{RejectDenied: true, LeaseIdle: "5m", LeaseQuiet: "2m"},
	}
	c.Metrics.Listen = "127.0.0.1:9469"
	return c, nil
}

// YAML renders c with a header naming the gateway.
func (c *EdgeConfig) YAML() ([]byte, error) {
	body, err := yaml.Marshal(c)
	if err != nil {
		return nil, err
	}
	head := fmt.Sprintf("# /etc/egw/edgegateway.yaml for EGateway %s (site %s), written by the cloud gateway.\n", c.Name, c.Site)
	if c.Cloud.PublicKey == "" || c.Cloud.Endpoint == "" {
		head += "# cloud.publicKey or cloud.endpoint is empty: set them in the cloud gateway's configuration.\n"
	}
	return append([]byte(head), body...), nil
}

// DeviceName is the tun.name written into a gateway's generated configuration: "egw-"
// and the gateway's name, so that gateways sharing a host (in network namespaces of their
// own, which share /var/run/wireguard) never collide. A name too long for a network
// device (15 bytes) keeps its first 6 bytes and gains 4 hex digits of a hash of the whole.
func DeviceName(gateway string) string {
	n := strings.ToLower(gateway)
	if len(n) <= 11 {
		return "egw-" + n
	}
	h := fnv.New32a()
	h.Write([]byte(n))
	return fmt.Sprintf("egw-%s-%04x", strings.TrimRight(n[:6], "-"), h.Sum32()&0xffff)
}
