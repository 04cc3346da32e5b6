package main

import (
	"fmt"
	"net/netip"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/controlplane"
)

// The worlds the benchmark builds. Every edge site i has the site sN, the gateway gN
// (VP CIDR 192.168.0.0/22: sites are separate networks, so every site may use the same
// ranges) and a client server cN. Names are short on purpose: 1,000 gateways × 10 services
// is ~24,000 objects.

const (
	hubGateway = "cloud-gw"
	hubSite    = "cloud"
	hubVPCIDR  = "192.168.255.0/24"
	edgeVPCIDR = "192.168.0.0/22"

	// probeService is the service hosted at the cloud site that the latency benchmark's
	// probe packet goes to (the edge → cloud-service path of docs/ARCHITECTURE.md, "A packet's walk").
	probeService = "api"
	probePort    = 443
	// basePolicy allows every site's cN; the policy change adds (then removes) nN.
	basePolicy = "base"
)

// cpConfig is the control plane configuration of every world.
func cpConfig() controlplane.Config {
	return controlplane.Config{HubGateway: hubGateway, HubSite: hubSite,
		Endpoint: "203.0.113.1:51820", PublicKey: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}.WithDefaults()
}

func meta(kind, name string) (api.TypeMeta, api.ObjectMeta) {
	return api.TypeMeta{Kind: kind, APIVersion: "v1"}, api.ObjectMeta{Name: name}
}

func site(name string) *api.ESite {
	t, m := meta(api.KindESite, name)
	return &api.ESite{TypeMeta: t, Metadata: m}
}

func egateway(name, siteName, vpCIDR string) *api.EGateway {
	t, m := meta(api.KindEGateway, name)
	return &api.EGateway{TypeMeta: t, Metadata: m, VirtualPresenceIPcidr: vpCIDR, ESiteName: siteName}
}

func server(name, siteName string, ip netip.Addr) *api.EServer {
	t, m := meta(api.KindEServer, name)
	return &api.EServer{TypeMeta: t, Metadata: m, IP: ip.String(), ESiteName: siteName}
}

func service(name, siteName string, ip netip.Addr, port int32) *api.EService {
	t, m := meta(api.KindEService, name)
	return &api.EService{TypeMeta: t, Metadata: m, Protocol: "TCP", Port: port, IP: ip.String(), ESiteName: siteName}
}

func policyOf(name string, servers []string) *api.EPolicy {
	t, m := meta(api.KindEPolicy, name)
	return &api.EPolicy{TypeMeta: t, Metadata: m, AllowedServers: servers}
}

func expose(name, svc string, sites, policies []string) *api.ServiceExpose {
	t, m := meta(api.KindServiceExpose, name)
	return &api.ServiceExpose{TypeMeta: t, Metadata: m, EServiceName: svc, ESites: sites, EPolicys: policies}
}

func siteName(i int) string   { return fmt.Sprintf("s%d", i) }
func gwName(i int) string     { return fmt.Sprintf("g%d", i) }
func clientName(i int) string { return fmt.Sprintf("c%d", i) }
func newName(i int) string    { return fmt.Sprintf("n%d", i) }

// Addresses inside every edge site (the sites are separate networks).
var (
	clientIP    = netip.MustParseAddr("10.0.0.20") // cN, allowed from the start
	newClientIP = netip.MustParseAddr("10.0.0.21") // nN, allowed by the policy change
)

// serviceIP is the address of the j-th service hosted at a site.
func serviceIP(j int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 0, 1, byte(10 + j)})
}

// latencyWorld is the world of the enforcement-latency benchmark with n edge gateways:
// the probe service at the cloud site and one service at each of the first min(n,10)
// edge sites, each exposed to every other edge site under basePolicy, which allows cN of
// every site. The edge services make the snapshots realistic (several VIPs each); the
// probe goes to the cloud service, which every edge consumes.
func latencyWorld(n int) []api.Object {
	var objs []api.Object
	sites := make([]string, n)
	clients := make([]string, n)
	for i := range n {
		sites[i], clients[i] = siteName(i), clientName(i)
		objs = append(objs, site(sites[i]), egateway(gwName(i), sites[i], edgeVPCIDR), server(clients[i], sites[i], clientIP))
	}
	objs = append(objs, policyOf(basePolicy, clients),
		service(probeService, hubSite, netip.MustParseAddr("10.255.0.10"), probePort),
		expose(probeService, probeService, sites, []string{basePolicy}))
	for k := range min(n, 10) {
		others := make([]string, 0, n-1)
		for i := range n {
			if i != k {
				others = append(others, sites[i])
			}
		}
		if len(others) == 0 {
			continue
		}
		name := fmt.Sprintf("web%d", k)
		objs = append(objs, service(name, sites[k], serviceIP(0), 80),
			expose(name, name, others, []string{basePolicy}))
	}
	return objs
}

// newServers are the nN servers (one per edge site) that the policy change allows.
// Applying them alone must wake no gateway: no policy names them yet.
func newServers(n int) []api.Object {
	objs := make([]api.Object, n)
	for i := range n {
		objs[i] = server(newName(i), siteName(i), newClientIP)
	}
	return objs
}

// basePolicyWith returns basePolicy allowing cN of every site, plus nN when withNew.
func basePolicyWith(n int, withNew bool) *api.EPolicy {
	servers := make([]string, 0, 2*n)
	for i := range n {
		servers = append(servers, clientName(i))
		if withNew {
			servers = append(servers, newName(i))
		}
	}
	return policyOf(basePolicy, servers)
}

// scaleBatch returns the objects of edge gateways [from, to) of the scale world with n
// gateways in all: site, gateway, client cN, perGW services each exposed to the next
// fanout sites (wrapping around) under one policy pN that allows those sites' clients.
// An exposure may name a site of a later batch: it grants nothing until that site exists
// (ResolvedRefs False), as when an operator registers gateways over time.
func scaleBatch(from, to, n, perGW, fanout int) []api.Object {
	objs := make([]api.Object, 0, (to-from)*(4+2*perGW))
	for i := from; i < to; i++ {
		s := siteName(i)
		objs = append(objs, site(s), egateway(gwName(i), s, edgeVPCIDR), server(clientName(i), s, clientIP))
		var sites, clients []string
		for k := 1; k <= fanout && k < n; k++ {
			sites = append(sites, siteName((i+k)%n))
			clients = append(clients, clientName((i+k)%n))
		}
		pol := fmt.Sprintf("p%d", i)
		objs = append(objs, policyOf(pol, clients))
		for j := range perGW {
			name := fmt.Sprintf("svc%d-%d", i, j)
			objs = append(objs, service(name, s, serviceIP(j), 80),
				expose(name, name, sites, []string{pol}))
		}
	}
	return objs
}
