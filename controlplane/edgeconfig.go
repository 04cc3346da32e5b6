package controlplane

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/egw-project/egw/api"
)

// EdgeConfig is /etc/egw/edgegateway.yaml as /v1/egateways/{name}/edgeconfig prints it for
// a registered gateway: api.NodeConfig, the schema the edge reads it with.
type EdgeConfig = api.NodeConfig

// DefaultEdgeStateDir is the state directory written into edge configurations.
const DefaultEdgeStateDir = "/var/lib/egw"

// EdgeConfig returns the configuration of an edge gateway, filled from its allocation and
// the cloud's configuration (the hub's EGateway object's publicKey and endpoint win over
// Config's).
func (s *Server) EdgeConfig(name string) (*EdgeConfig, error) {
	var o, hubObj api.Object
	var prefix netip.Prefix
	var ok bool
	var hubs []HubInfo
	err := s.store.read(func(m *model) error {
		o, _ = m.lookup(api.KindEGateway, name)
		hubObj, _ = m.lookup(api.KindEGateway, s.cfg.HubGateway)
		prefix, ok = m.ipam.Gateways[name]
		hubs = m.hubList()
		return nil
	})
	if err != nil {
		return nil, err
	}
	key := api.KindEGateway + "/" + name
	if o == nil {
		return nil, &Error{Code: CodeNotFound, Object: key, Message: "not found"}
	}
	if name == s.cfg.HubGateway {
		return nil, &Error{Code: CodeBadRequest, Object: key, Message: "is the cloud's own gateway; it has no edge configuration"}
	}
	g := o.(*api.EGateway)
	if !ok {
		return nil, &Error{Code: CodeConflict, Object: key, Message: fmt.Sprintf("has no overlay prefix: no free /%d left in %s", s.cfg.OverlayPrefixLen, s.cfg.OverlayCIDR)}
	}
	cloud := api.NodeCloudConfig{Endpoint: s.cfg.Endpoint, PublicKey: s.cfg.PublicKey, OverlayIP: s.cfg.HubOverlayIP().String(),
		SyncPort: s.cfg.SyncPort, Keepalive: s.cfg.Keepalive}
	if h, ok := hubObj.(*api.EGateway); ok {
		if h.PublicKey != "" {
			cloud.PublicKey = h.PublicKey
		}
		if h.Endpoint != "" {
			cloud.Endpoint = h.Endpoint
		}
	}
	for _, p := range hubPeers(s.cfg, hubs) {
		cloud.Hubs = append(cloud.Hubs, api.NodeHubConfig{Name: p.Name, Endpoint: p.Endpoint, PublicKey: p.PublicKey, OverlayIP: p.OverlayIP.String()})
	}
	c := api.DefaultNodeConfig()
	c.Name, c.Site, c.StateDir = name, g.ESiteName, DefaultEdgeStateDir
	c.PrivateKeyFile = filepath.Join(DefaultEdgeStateDir, "private.key")
	c.OverlayCIDR, c.OverlayPrefix, c.OverlayIP = s.cfg.OverlayCIDR.String(), prefix.String(), firstAddr(prefix).String()
	c.VPCIDR, c.Cloud = g.VirtualPresenceIPcidr, cloud
	c.TUN.Name = DeviceName(name)
	c.DNS.Zone = s.cfg.DNSZone
	return &c, nil
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
