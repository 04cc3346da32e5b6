package api

import "net/netip"

// Snapshot is everything one gateway needs, compiled by the control plane from the objects
// at one store revision. It is a plain value: the gateway builds its immutable data-plane
// tables (vpresence.Table, policy.Compiled, the dnsd zone) from it and swaps them in
// atomically. Addresses are IPv4.
//
// Vocabulary (see docs/ARCHITECTURE.md):
//   - overlay prefix: the /22 (default) the control plane gave a gateway out of OverlayCIDR.
//     Its first address is the gateway's own overlay IP; the lower half of the rest holds the
//     overlay addresses of services hosted at that site (ov(S)); the upper half is the pool the
//     gateway leases client overlay addresses (ov(c)) from.
//   - VP CIDR: the gateway's virtual-presence CIDR. First address: the gateway itself (vp0,
//     DNS). Lower half: service VIPs (allocated by the control plane). Upper half: the pool of
//     presence IPs the gateway leases for remote clients.
type Snapshot struct {
	// Revision is the store revision this snapshot was compiled at. Snapshots of one
	// gateway are applied in increasing Revision order.
	Revision int64 `json:"revision"`
	// StoreID identifies the control-plane store the snapshot was compiled from. A store
	// that was reset or restored from a backup has a new ID, and its revisions start over:
	// a gateway accepts a lower revision only together with a different StoreID.
	StoreID string `json:"storeID,omitempty"`

	Gateway string `json:"gateway"` // this gateway's EGateway name
	Site    string `json:"site"`    // this gateway's ESite name
	// Hub is true for the cloud gateway, which relays ciphertext between linked edges.
	Hub bool `json:"hub,omitempty"`

	OverlayCIDR    netip.Prefix `json:"overlayCIDR"`    // the whole overlay, e.g. 100.64.0.0/10
	OverlayPrefix  netip.Prefix `json:"overlayPrefix"`  // this gateway's overlay prefix
	OverlayIP      netip.Addr   `json:"overlayIP"`      // this gateway's overlay address
	CloudOverlayIP netip.Addr   `json:"cloudOverlayIP"` // the hub's overlay address (sync endpoint)
	VPCIDR         netip.Prefix `json:"vpCIDR"`         // this gateway's VP CIDR
	VPAddr         netip.Addr   `json:"vpAddr"`         // first address of VPCIDR (vp0, DNS)

	// Peers are this gateway's WireGuard peers: an edge has the hub (AllowedIPs: the whole
	// OverlayCIDR); the hub has every edge (AllowedIPs: its overlay prefix).
	Peers []Peer `json:"peers,omitempty"`

	// Gateways maps overlay prefixes to sites, so a gateway can tell which site a packet
	// from the overlay comes from. The hub's lists every gateway; an edge's lists itself,
	// the hub and the gateways of the sites its hosted services are exposed to.
	Gateways []GatewayRef `json:"gateways,omitempty"`

	// VIPs are the services this gateway's site may consume, each at its local VIP.
	VIPs []VIP `json:"vips,omitempty"`

	// Hosted are the services at this gateway's site that are exposed to some site.
	Hosted []Hosted `json:"hosted,omitempty"`

	// Links is filled only for a hub: every pair of gateways the configuration links (a
	// service at one's site exposed to the other's site, whatever the policies say), by
	// overlay IP, each pair once with A < B, sorted by (A, B). The hub relays ciphertext
	// only between the two gateways of a link (the hub's pair filter). Hub gateways are
	// never part of a link: edges reach a hub on their own session with it.
	Links []Link `json:"links,omitempty"`

	// DNSZone is the zone under which EService domainNames are answered (e.g. "egw.local.").
	DNSZone string `json:"dnsZone,omitempty"`
}

// Peer is a WireGuard peer of a gateway.
//
// An edge's peers are the hub (Hub set, AllowedIPs the whole OverlayCIDR: control traffic
// and cloud-site services) and every gateway linked with it (see Snapshot.Links), each
// with AllowedIPs = exactly the parts of its overlay prefix that carry traffic between the
// two: the ov(S) /32 of every service at the peer's site exposed to this gateway's site,
// and the peer's client half if a service at this gateway's site is exposed to the peer's
// site. WireGuard's longest-prefix match sends those to the peer's own session; the rest
// of the overlay goes to the hub. A hub's peers are every other gateway (AllowedIPs: its
// overlay prefix).
type Peer struct {
	Name       string         `json:"name"` // EGateway name
	Site       string         `json:"site"`
	PublicKey  string         `json:"publicKey"`          // base64 WireGuard public key; empty until registered
	Endpoint   string         `json:"endpoint,omitempty"` // host:port; set for the hub
	AllowedIPs []netip.Prefix `json:"allowedIPs"`
	// OverlayIP is the peer gateway's own overlay address (the first of its prefix): its
	// name in the relay header and in the hub's pair filter.
	OverlayIP netip.Addr `json:"overlayIP,omitzero"`
	// Hub marks a cloud hub: it carries control traffic and cloud-site services and relays
	// ciphertext between linked gateways.
	Hub bool `json:"hub,omitempty"`
	// Candidates are UDP endpoints at which a non-hub peer may be reached directly, best
	// first: the public endpoint a hub saw on its authenticated WireGuard session with the
	// peer, then the LAN endpoints the peer reported (Report.Candidates). Empty while
	// unknown; the peer is then reached through a hub's relay.
	Candidates []netip.AddrPort `json:"candidates,omitempty"`
}

// Link is a pair of gateways, by overlay IP (A < B), that the configuration links: the
// hub relays ciphertext between them.
type Link struct {
	A netip.Addr `json:"a"`
	B netip.Addr `json:"b"`
}

// GatewayRef ties a gateway's overlay prefix to its site.
type GatewayRef struct {
	Name          string       `json:"name"`
	Site          string       `json:"site"`
	OverlayPrefix netip.Prefix `json:"overlayPrefix"`
}

// VIP is one service as consumed at this gateway's site.
type VIP struct {
	VIP            netip.Addr `json:"vip"`      // from this gateway's VP CIDR (lower half)
	Service        string     `json:"service"`  // EService name
	Expose         string     `json:"expose"`   // ServiceExpose name
	Protocol       string     `json:"protocol"` // "TCP" or "UDP"
	Port           uint16     `json:"port"`
	DNSName        string     `json:"dnsName,omitempty"`    // FQDN with trailing dot, may be empty
	DomainName     string     `json:"domainName,omitempty"` // EService domainName, relative to DNSZone
	HomeSite       string     `json:"homeSite"`
	HomeGateway    string     `json:"homeGateway"`
	ServiceOverlay netip.Addr `json:"serviceOverlay"` // ov(S) in the home gateway's overlay prefix
	// Local is true when the service lives at this very site (same-site exposure): the
	// gateway translates c→VIP straight to presence→ServiceIP without the tunnel.
	Local     bool       `json:"local,omitempty"`
	ServiceIP netip.Addr `json:"serviceIP,omitempty"` // set when Local

	// ACL: the client IPs of this site allowed (EServers named by the exposure's policies),
	// or the whole site. With neither, nothing is allowed (default deny).
	AllowedClients []netip.Addr `json:"allowedClients,omitempty"`
	AllowSite      bool         `json:"allowSite,omitempty"`
	// Decisions explain the ACL for `egwctl explain`: one entry per allowed client or site,
	// naming the policy and server that allowed it.
	Decisions []Decision `json:"decisions,omitempty"`
}

// Decision records why a client (Server set) or the whole site (Server empty) is allowed.
type Decision struct {
	Policy string     `json:"policy"`
	Server string     `json:"server,omitempty"`
	IP     netip.Addr `json:"ip,omitempty"`
	Site   string     `json:"site,omitempty"`
}

// Hosted is a service at this gateway's site that some site may reach.
type Hosted struct {
	Service        string     `json:"service"`
	Expose         string     `json:"expose"`
	ServiceOverlay netip.Addr `json:"serviceOverlay"` // ov(S)
	ServiceIP      netip.Addr `json:"serviceIP"`      // real address at this site
	Protocol       string     `json:"protocol"`
	Port           uint16     `json:"port"`
	// AllowedSites are the sites whose clients may reach the service through the overlay,
	// AllowedPrefixes the overlay prefixes of those sites' gateways.
	AllowedSites    []string       `json:"allowedSites,omitempty"`
	AllowedPrefixes []netip.Prefix `json:"allowedPrefixes,omitempty"`
}
