//go:build linux

package harness

// NAT boxes in front of edge gateways (issue 10: direct paths between edges). NATSpec is
// DefaultSpec with a NAT box between each edge gateway and the underlay:
//
//	                 ┌─────────────── wan (bridge br0, underlay 203.0.113.0/24) ───────────────┐
//	                 │ u-c                           u-a                              u-b      │
//	                 └──┬──────────────────────────────┬──────────────────────────────┬────────┘
//	            wan0 .1 │                      wan0 .2 │                      wan0 .3 │
//	              ┌─────┴─────┐              ┌─────────┴─────────┐          ┌─────────┴─────────┐
//	              │    gwc    │ cloudgateway │ nata  NAT box     │          │ natb  NAT box     │
//	              │ (as in    │ (hub, no NAT)│ nft masquerade    │          │ nft masquerade    │
//	              │ Default-  │              │ in0 198.18.1.1/24 │          │ in0 198.18.2.1/24 │
//	              │ Spec)     │              └─────────┬─────────┘          └─────────┬─────────┘
//	              └───────────┘                wan0 .2 │ 198.18.1.2/24        wan0 .2 │ 198.18.2.2/24
//	                                            ┌──────┴──────┐                ┌──────┴──────┐
//	                                            │ gwa  edge-a │ default via .1 │ gwb  edge-b │ default via .1
//	                                            │ lan0 10.0.0.1/24, hosts a20, │ lan0 10.0.0.1/24, host b10
//	                                            │ a21 as in DefaultSpec        │ as in DefaultSpec
//	                                            └─────────────┘                └─────────────┘
//
// The NAT box owns the site's underlay address; the gateway only has its inside address and
// a default route through the box, so everything an edge sends to the hub or to the other
// edge is translated, and a "direct" path between the edges really crosses both NATs. The
// inside prefixes differ per site and no box routes them: an edge's own addresses (inside,
// LAN, VP) are not reachable from the other edge. The LANs are still both 10.0.0.0/24 with
// gateway 10.0.0.1, as in DefaultSpec: an edge that probes the other's reported LAN
// candidate 10.0.0.1 reaches itself, which a path finder must not take for a direct path.
// There is deliberately no shared LAN segment between the edges: every direct path here
// is a hole punched through two NATs.
//
// Each box is a home router in nftables (table ip egwnat):
//   - NATPortPreserving: `masquerade` — the source port is kept when the (address, port)
//     pair is free, so one inside socket has the same public port towards every destination
//     (endpoint-independent mapping), which is what UDP hole punching needs;
//   - NATEndpointDependent: `masquerade to :20000-59999 fully-random` (TCP and UDP) — every new flow (a
//     new destination address or port) gets a fresh random public port, so the endpoint
//     the hub sees is useless to anyone else (a "symmetric" NAT);
//   - both: an inbound packet that belongs to no flow started from inside is dropped
//     (`ct state new drop` on the outside), before conntrack confirms an entry for it —
//     the stateful filter of a home router, and the reason both ends must probe.
//
// Named counters count what a box forwards to the hub, to other underlay addresses (the
// other edge: direct-path traffic) and from them. Everything lives in the box's namespace,
// so deleting the namespace (Lab.Close) removes the links, the nftables tables and the
// conntrack state together.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// NATKind selects the behaviour of a site's NAT box.
type NATKind string

const (
	// NATPortPreserving keeps source ports (endpoint-independent mapping).
	NATPortPreserving NATKind = "port-preserving"
	// NATEndpointDependent maps every new destination to a new random port.
	NATEndpointDependent NATKind = "endpoint-dependent"
)

// EdgeListenPort is the WireGuard port of the edges in NATSpec. It is fixed, so an edge
// that restarts comes back on the same inside port, which a port-preserving NAT maps to the
// same public port the other edge already knows.
const EdgeListenPort = 51820

// NATSpec is DefaultSpec with a NAT box of kind a in front of edge-a and one of kind b in
// front of edge-b (see the drawing above).
func NATSpec(a, b NATKind) Spec {
	s := DefaultSpec()
	for i := range s.Sites {
		ss := &s.Sites[i]
		switch ss.Site {
		case "site-a":
			ss.NAT, ss.Inside, ss.ListenPort = a, netip.MustParsePrefix("198.18.1.2/24"), EdgeListenPort
		case "site-b":
			ss.NAT, ss.Inside, ss.ListenPort = b, netip.MustParsePrefix("198.18.2.2/24"), EdgeListenPort
		}
	}
	return s
}

// natTable is the nftables table of every NAT box; blockTable holds BlockPeer's rules.
const (
	natTable   = "egwnat"
	blockTable = "egwblock"
)

// Named counters of a NAT box.
const (
	CounterToHub    = "to_hub"     // forwarded out to the hub's underlay address
	CounterToPeers  = "to_peers"   // forwarded out to any other underlay address
	CounterFromPeer = "from_peers" // forwarded in from any underlay address but the hub's
)

// natRuleset is the nftables script of a NAT box of kind k; hub is the cloud gateway's
// underlay address (invalid: no hub in the spec, every destination counts as a peer).
func natRuleset(k NATKind, hub netip.Addr) (string, error) {
	var masq string
	switch k {
	case NATPortPreserving:
		masq = "masquerade"
	case NATEndpointDependent:
		masq = "meta l4proto { tcp, udp } masquerade to :20000-59999 fully-random\n\t\toifname \"wan0\" masquerade"
	default:
		return "", fmt.Errorf("harness: unknown NAT kind %q", k)
	}
	if !hub.IsValid() {
		hub = netip.IPv4Unspecified() // matches no real address
	}
	return fmt.Sprintf(`table ip %[1]s {
	counter %[4]s { }
	counter %[5]s { }
	counter %[6]s { }
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" %[2]s
	}
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wan0" ct state new drop
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname "wan0" ct state new drop
		oifname "wan0" ip daddr %[3]s counter name %[4]s
		oifname "wan0" ip daddr != %[3]s counter name %[5]s
		iifname "wan0" ip saddr != %[3]s counter name %[6]s
	}
}
`, natTable, masq, hub, CounterToHub, CounterToPeers, CounterFromPeer), nil
}

// buildNAT builds s's NAT box (namespace "nat"+Key) and the gateway's leg behind it.
func (t *Topology) buildNAT(l *Lab, s *Site, spec Spec) error {
	ss := s.SiteSpec
	if !ss.Inside.IsValid() || !ss.Inside.Addr().Is4() || ss.Inside.Bits() > 30 {
		return fmt.Errorf("harness: site %s: NAT needs an IPv4 inside prefix of at most /30, have %v", ss.Site, ss.Inside)
	}
	boxAddr := ss.Inside.Masked().Addr().Next()
	if boxAddr == ss.Inside.Addr() {
		return fmt.Errorf("harness: site %s: inside address %s is the NAT box's own", ss.Site, ss.Inside.Addr())
	}
	var hub netip.Addr
	for _, o := range spec.Sites {
		if o.Cloud {
			if o.NAT != "" {
				return fmt.Errorf("harness: site %s: the hub cannot sit behind a NAT box", o.Site)
			}
			hub = o.Underlay.Addr()
		}
	}
	rules, err := natRuleset(ss.NAT, hub)
	if err != nil {
		return err
	}
	if s.NATNS, err = l.AddNS("nat" + ss.Key); err != nil {
		return err
	}
	upLink := "u-" + ss.Key
	if err := l.Veth(t.WAN, upLink, s.NATNS, "wan0"); err != nil {
		return err
	}
	if err := l.Enslave(t.WAN, upLink, "br0"); err != nil {
		return err
	}
	if err := l.Addr(s.NATNS, "wan0", ss.Underlay.String()); err != nil {
		return err
	}
	if err := l.Veth(s.NATNS, "in0", s.GWNS, "wan0"); err != nil {
		return err
	}
	if err := l.Addr(s.NATNS, "in0", netip.PrefixFrom(boxAddr, ss.Inside.Bits()).String()); err != nil {
		return err
	}
	if err := l.Addr(s.GWNS, "wan0", ss.Inside.String()); err != nil {
		return err
	}
	if err := l.Route(s.GWNS, "default", boxAddr.String()); err != nil {
		return err
	}
	if err := l.EnableForwarding(s.NATNS); err != nil {
		return err
	}
	return l.NFT(context.Background(), s.NATNS, "nat-"+ss.Key, rules)
}

// NFT loads an nftables script into ns (`nft -f`); name names the script file in LogDir.
func (l *Lab) NFT(ctx context.Context, ns, name, script string) error {
	path := filepath.Join(l.LogDir, "nft-"+name+".nft")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		return err
	}
	_, err := l.Run(ctx, ns, "nft", "-f", path)
	return err
}

// BlockPeer makes s's NAT box drop every UDP datagram it would forward to or from addr
// (another edge's public address), which cuts a direct path and leaves the hub reachable.
// The returned function lifts the block. Blocking twice is an error.
func (t *Topology) BlockPeer(ctx context.Context, s *Site, addr netip.Addr) (unblock func() error, err error) {
	if s.NATNS == "" {
		return nil, fmt.Errorf("harness: site %s has no NAT box", s.Site)
	}
	script := fmt.Sprintf(`table ip %[1]s {
	chain forward {
		type filter hook forward priority filter - 10; policy accept;
		ip daddr %[2]s meta l4proto udp drop
		ip saddr %[2]s meta l4proto udp drop
	}
}
`, blockTable, addr)
	if err := t.Lab.NFT(ctx, s.NATNS, "block-"+s.Key, script); err != nil {
		return nil, err
	}
	return func() error {
		_, err := t.Lab.Run(context.Background(), s.NATNS, "nft", "delete", "table", "ip", blockTable)
		return err
	}, nil
}

var counterRE = regexp.MustCompile(`packets (\d+) bytes (\d+)`)

// NATCounter reads one named counter (CounterToHub, …) of s's NAT box.
func (t *Topology) NATCounter(ctx context.Context, s *Site, name string) (packets, bytes uint64, err error) {
	if s.NATNS == "" {
		return 0, 0, fmt.Errorf("harness: site %s has no NAT box", s.Site)
	}
	out, err := t.Lab.Run(ctx, s.NATNS, "nft", "list", "counter", "ip", natTable, name)
	if err != nil {
		return 0, 0, err
	}
	m := counterRE.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, errors.New("harness: no packets/bytes in " + strings.TrimSpace(out))
	}
	packets, _ = strconv.ParseUint(m[1], 10, 64)
	bytes, _ = strconv.ParseUint(m[2], 10, 64)
	return packets, bytes, nil
}
