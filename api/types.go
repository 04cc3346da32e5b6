// Package api defines EGW's object kinds (the Arktos cloud-edge framework's seven kinds:
// ESite, EGateway, EService, EServer, EPolicy, ServiceExpose, VirtualPresence), their
// decoding from JSON and YAML in the seed's own shapes, their validation, and the
// per-gateway Snapshot that the control plane compiles and the data plane consumes.
//
// It imports no other EGW package.
package api

// Kind names, spelled as the Arktos proposal spells them.
const (
	KindESite           = "ESite"
	KindEGateway        = "EGateway"
	KindEService        = "EService"
	KindEServer         = "EServer"
	KindEPolicy         = "EPolicy"
	KindServiceExpose   = "ServiceExpose"
	KindVirtualPresence = "VirtualPresence"
)

// Kinds lists every kind in the order objects are best shown and compiled.
var Kinds = []string{KindESite, KindEGateway, KindEService, KindEServer, KindEPolicy, KindServiceExpose, KindVirtualPresence}

// ObjectMeta is the part of metadata EGW keeps. Name is the object's identity within its kind.
type ObjectMeta struct {
	Name            string            `json:"name,omitempty"`
	ResourceVersion int64             `json:"resourceVersion,omitempty,string"`
	Labels          map[string]string `json:"labels,omitempty"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	// CreationRevision is the store revision at which the object was created.
	CreationRevision int64 `json:"creationRevision,omitempty"`
}

// Condition reports something about an object that is not an error of the object itself,
// such as a reference to an object that does not exist (yet). Type is e.g. "ResolvedRefs";
// Status is "True" or "False".
type Condition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Status is what the control plane reports about an object: conditions and allocations.
type Status struct {
	Conditions []Condition `json:"conditions,omitempty"`
	// OverlayPrefix is the overlay prefix allocated to an EGateway.
	OverlayPrefix string `json:"overlayPrefix,omitempty"`
	// OverlayIP is the overlay address of an EGateway or of an exposed EService.
	OverlayIP string `json:"overlayIp,omitempty"`
	// ESiteName is the consuming site of a VirtualPresence, EGateway the gateway that serves it.
	ESiteName string `json:"eSiteName,omitempty"`
	EGateway  string `json:"eGateway,omitempty"`
}

// TypeMeta carries kind and apiVersion as the seed writes them.
type TypeMeta struct {
	Kind       string `json:"kind"`
	APIVersion string `json:"apiVersion,omitempty"`
}

// ESite is a site: the central cloud or an edge site.
type ESite struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	Status   Status     `json:"status,omitempty"`
}

// EGateway is the gateway of one site.
type EGateway struct {
	TypeMeta `json:",inline"`
	Metadata ObjectMeta `json:"metadata"`
	// IP is the gateway's public (underlay) address.
	IP string `json:"ip,omitempty"`
	// VirtualPresenceIPcidr is the gateway's virtual-presence CIDR (VIPs and presence IPs).
	VirtualPresenceIPcidr string `json:"virtualPresenceIPcidr"`
	ESiteName             string `json:"eSiteName"`
	// PublicKey is the gateway's WireGuard public key (base64). An EGW extension.
	PublicKey string `json:"publicKey,omitempty"`
	// Endpoint is host:port where the gateway's WireGuard listens, if it accepts dials
	// (the cloud). An EGW extension.
	Endpoint string `json:"endpoint,omitempty"`
	Status   Status `json:"status,omitempty"`
}

// EService is a service at one site.
type EService struct {
	TypeMeta   `json:",inline"`
	Metadata   ObjectMeta `json:"metadata"`
	Protocol   string     `json:"protocol"`
	Port       int32      `json:"port"`
	IP         string     `json:"ip"`
	DomainName string     `json:"domainName,omitempty"`
	ESiteName  string     `json:"eSiteName"`
	Status     Status     `json:"status,omitempty"`
}

// EServer is a client host at one site. The seed names it with eServerName rather than
// metadata.name; both are accepted and the decoder fills Metadata.Name from EServerName.
type EServer struct {
	TypeMeta    `json:",inline"`
	Metadata    ObjectMeta `json:"metadata"`
	EServerName string     `json:"eServerName,omitempty"`
	IP          string     `json:"ip"`
	ESiteName   string     `json:"eSiteName"`
	Status      Status     `json:"status,omitempty"`
}

// EPolicy names the servers and sites allowed to use the services it is attached to.
type EPolicy struct {
	TypeMeta       `json:",inline"`
	Metadata       ObjectMeta `json:"metadata"`
	AllowedServers []string   `json:"allowedServers,omitempty"`
	AllowedSites   []string   `json:"allowedSites,omitempty"`
	Status         Status     `json:"status,omitempty"`
}

// ServiceExpose exposes one EService to a list of sites under the given policies. The seed's
// sample has no metadata.name; the decoder names it after EServiceName.
type ServiceExpose struct {
	TypeMeta     `json:",inline"`
	Metadata     ObjectMeta `json:"metadata"`
	EServiceName string     `json:"eServiceName"`
	DNSName      string     `json:"dnsName,omitempty"`
	ESites       []string   `json:"eSites,omitempty"`
	EPolicys     []string   `json:"ePolicys,omitempty"`
	Status       Status     `json:"status,omitempty"`
}

// VirtualPresence is the local presentation of a remote service at one consuming site: a VIP
// from that site's gateway VP CIDR. The control plane allocates one per ServiceExpose × eSite;
// one applied by hand pins VirtualIP. ESiteName (an EGW extension) names the consuming site;
// when it is empty on a hand-applied object, the site is inferred from which exposed site's
// gateway VP CIDR holds VirtualIP.
type VirtualPresence struct {
	TypeMeta     `json:",inline"`
	Metadata     ObjectMeta `json:"metadata"`
	VirtualIP    string     `json:"virtualIp,omitempty"`
	EServiceName string     `json:"eServiceName"`
	ESiteName    string     `json:"eSiteName,omitempty"`
	Status       Status     `json:"status,omitempty"`
}

// Object is any of the seven kinds. Every kind implements it with a pointer receiver.
type Object interface {
	GetKind() string
	GetMeta() *ObjectMeta
	GetStatus() *Status
}

func (o *ESite) GetKind() string                { return KindESite }
func (o *ESite) GetMeta() *ObjectMeta           { return &o.Metadata }
func (o *ESite) GetStatus() *Status             { return &o.Status }
func (o *EGateway) GetKind() string             { return KindEGateway }
func (o *EGateway) GetMeta() *ObjectMeta        { return &o.Metadata }
func (o *EGateway) GetStatus() *Status          { return &o.Status }
func (o *EService) GetKind() string             { return KindEService }
func (o *EService) GetMeta() *ObjectMeta        { return &o.Metadata }
func (o *EService) GetStatus() *Status          { return &o.Status }
func (o *EServer) GetKind() string              { return KindEServer }
func (o *EServer) GetMeta() *ObjectMeta         { return &o.Metadata }
func (o *EServer) GetStatus() *Status           { return &o.Status }
func (o *EPolicy) GetKind() string              { return KindEPolicy }
func (o *EPolicy) GetMeta() *ObjectMeta         { return &o.Metadata }
func (o *EPolicy) GetStatus() *Status           { return &o.Status }
func (o *ServiceExpose) GetKind() string        { return KindServiceExpose }
func (o *ServiceExpose) GetMeta() *ObjectMeta   { return &o.Metadata }
func (o *ServiceExpose) GetStatus() *Status     { return &o.Status }
func (o *VirtualPresence) GetKind() string      { return KindVirtualPresence }
func (o *VirtualPresence) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *VirtualPresence) GetStatus() *Status   { return &o.Status }
