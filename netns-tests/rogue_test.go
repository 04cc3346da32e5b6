//go:build netns && linux

package netnstests

// Scenario 7 inside the tunnel: a rogue edge — registered with egwctl, but running the
// upstream wireguard-go instead of edgegateway — writes malformed IPv4 packets into its
// WireGuard interface, so that they reach the hub decrypted, past WireGuard's checks. The
// hub must count each as a drop by its malformed reason, stay up, and keep carrying the
// real sites' traffic.
//
// What cannot arrive: wireguard-go drops (on both ends) a packet shorter than an IPv4
// header, of an unknown IP version, or whose total length exceeds the datagram, and it
// trims a datagram to its total length. So "malformed-total-length" never reaches the hub
// through WireGuard; those packets are sent anyway (the hub must survive them) but only
// the reasons that can arrive are asserted.

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/internal/pkttest"
	"github.com/egw-project/egw/netns-tests/harness"
)

const (
	rogueGateway = "rogue"
	rogueSite    = "rogue-site"
	rogueVPCIDR  = "172.16.77.0/24"
	rogueUL      = "203.0.113.9/24"
)

// edgeConfig is the part of `egwctl gateway add`'s output the rogue needs.
type edgeConfig struct {
	OverlayCIDR   string `yaml:"overlayCIDR"`
	OverlayPrefix string `yaml:"overlayPrefix"`
	OverlayIP     string `yaml:"overlayIP"`
	Cloud         struct {
		Endpoint  string `yaml:"endpoint"`
		PublicKey string `yaml:"publicKey"`
		OverlayIP string `yaml:"overlayIP"`
	} `yaml:"cloud"`
}

// rogueListenPort is the rogue's WireGuard port: fixed, so that a raw socket can send from
// the endpoint the hub authenticated (paths_test.go).
const rogueListenPort = 51999

// rogue is a running rogue edge.
type rogue struct {
	ns       string         // its namespace, on the underlay
	dev      string         // its WireGuard device
	ip       netip.Addr     // its overlay IP
	overlay  netip.Prefix   // the whole overlay
	hubIP    netip.Addr     // the hub's overlay IP
	prefix   netip.Prefix   // its overlay prefix
	endpoint netip.AddrPort // its UDP endpoint, as the hub sees it
	cfg      edgeConfig
}

// malformedInTunnel runs the rogue-edge injection; webVIP is site A's VIP of web-b, used to
// check that real traffic still flows afterwards.
func malformedInTunnel(t *testing.T, d *deployment, webVIP netip.Addr) {
	ctx := context.Background()
	hub := d.egw.Cloud
	r := startRogue(t, d)
	ns, dev, rogueIP, overlay := r.ns, r.dev, r.ip, r.overlay
	// Every gateway's overlay prefix has the same length; the hub leases client overlay
	// addresses ov(c) from the upper half of its own, from the bottom up. The last but one
	// address of that prefix is in the pool and leased to nobody.
	hubPrefix := netip.PrefixFrom(r.hubIP, r.prefix.Bits()).Masked()
	unleased := lastAddr(hubPrefix).Prev()
	if hubPrefix.Bits() > 29 || !hubPrefix.Contains(unleased) || unleased == r.hubIP {
		t.Fatalf("hub overlay prefix %s (from %s and the rogue's %s) has no spare client address", hubPrefix, r.hubIP, r.prefix)
	}
	// The packets go to edge-b's overlay IP: not the hub's own address (whose traffic the
	// hub passes to its kernel untranslated), so the hub's engine parses them.
	dst := gatewayOverlayIP(t, d, d.egw.Nodes["site-b"].Site.Gateway)
	if !overlay.Contains(dst) || dst == rogueIP {
		t.Fatalf("edge-b overlay IP %s unusable in %s", dst, overlay)
	}

	before, err := dropsByReason(ctx, d, hub)
	if err != nil {
		t.Fatal(err)
	}
	// want: how many of the packets sent must be counted under each reason.
	pkts, want := malformedPackets(rogueIP, dst, unleased)
	const copies = 3
	if err := sendRaw(ns, dev, pkts, copies); err != nil {
		t.Fatal(err)
	}
	var after map[string]float64
	err = harness.Poll(ctx, 10*time.Second, 100*time.Millisecond, "hub drop counters by malformed reason", func() error {
		after, err = dropsByReason(ctx, d, hub)
		if err != nil {
			return err
		}
		var missing []string
		for reason, n := range want {
			// At least one copy of each: the underlay is a local bridge, but a lost
			// datagram must not fail the test.
			if got := after[reason] - before[reason]; got < float64(n) {
				missing = append(missing, fmt.Sprintf("%s +%v (want ≥ %d)", reason, got, n))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%s", strings.Join(missing, ", "))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for reason, v := range after {
		if dv := v - before[reason]; dv > 0 {
			t.Logf("hub drops %s +%v", reason, dv)
		}
	}
	if done, err := hub.Proc.Exited(); done {
		t.Fatalf("the hub died after malformed packets in the tunnel: %v", err)
	}
	for _, n := range d.egw.Nodes {
		if done, err := n.Proc.Exited(); done {
			t.Fatalf("%s died after malformed packets in the tunnel: %v", n.Site.Gateway, err)
		}
	}
	who := waitHTTP(t, d, d.a20, webVIP, 10*time.Second)
	assertPresence(t, who.Remote, d.topo.Site("site-b").VPCIDR)
}

// startRogue registers the rogue gateway with egwctl (removed again by t.Cleanup), and runs
// upstream wireguard-go for it in a namespace of its own on the underlay until it has a
// handshake with the hub.
func startRogue(t *testing.T, d *deployment) *rogue {
	t.Helper()
	ctx := context.Background()
	lab := d.lab
	hub := d.egw.Cloud
	if tools.WireGuardGo == "" {
		t.Skip("no wireguard-go binary (TestMain builds it only as root)")
	}
	// Register the rogue and read its edge config.
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.egw.Ctl(ctx, "site", "add", rogueSite); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := d.egw.Ctl(context.Background(), "delete", "esite", rogueSite); err != nil {
			t.Errorf("deleting the rogue site: %v", err)
		}
	})
	out, err := d.egw.Ctl(ctx, "gateway", "add", rogueGateway, "--site", rogueSite, "--vp-cidr", rogueVPCIDR,
		"--public-key", key.PublicKey().String())
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the site's cleanup, so it runs first: the gateway goes before its site.
	t.Cleanup(func() {
		ctx := context.Background()
		if _, err := d.egw.Ctl(ctx, "delete", "egateway", rogueGateway); err != nil {
			t.Errorf("deleting the rogue gateway: %v", err)
			return
		}
		// The hub drops the rogue's WireGuard peer once the gateway is gone.
		err := harness.Poll(ctx, 10*time.Second, 100*time.Millisecond, "rogue peer removed at the hub", func() error {
			out, err := lab.Run(ctx, hub.Site.GWNS, "wg", "show", hub.Tun, "peers")
			if err != nil {
				return err
			}
			if strings.Contains(out, key.PublicKey().String()) {
				return fmt.Errorf("hub peers still list %s", key.PublicKey())
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	var cfg edgeConfig
	if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatalf("edge config of the rogue: %v\n%s", err, out)
	}
	overlay, err := netip.ParsePrefix(cfg.OverlayCIDR)
	if err != nil {
		t.Fatalf("overlayCIDR %q: %v", cfg.OverlayCIDR, err)
	}
	rogueIP, err := netip.ParseAddr(cfg.OverlayIP)
	if err != nil {
		t.Fatalf("overlayIP %q: %v", cfg.OverlayIP, err)
	}
	roguePrefix, err := netip.ParsePrefix(cfg.OverlayPrefix)
	if err != nil {
		t.Fatalf("overlayPrefix %q: %v", cfg.OverlayPrefix, err)
	}
	hubIP, err := netip.ParseAddr(cfg.Cloud.OverlayIP)
	if err != nil {
		t.Fatalf("cloud.overlayIP %q: %v", cfg.Cloud.OverlayIP, err)
	}
	if cfg.Cloud.PublicKey == "" || cfg.Cloud.Endpoint == "" {
		t.Fatalf("rogue's edge config lacks the hub's key or endpoint:\n%s", out)
	}

	// The rogue's namespace on the underlay, running upstream wireguard-go.
	ns, err := lab.AddNS("rogue")
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Veth(d.topo.WAN, "u-rogue", ns, "wan0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Enslave(d.topo.WAN, "u-rogue", "br0"); err != nil {
		t.Fatal(err)
	}
	if err := lab.Addr(ns, "wan0", rogueUL); err != nil {
		t.Fatal(err)
	}
	dev := lab.DevName("wg", "R")
	proc, err := lab.Start(ns, "wireguard-go-rogue", []string{"LOG_LEVEL=error"}, tools.WireGuardGo, "-f", dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Stop(2 * time.Second) })
	if err := harness.WaitFile(ctx, filepath.Join(harness.UAPIDir, dev+".sock"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(lab.LogDir, dev+".conf")
	body := fmt.Sprintf("[Interface]\nPrivateKey = %s\nListenPort = %d\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s\nEndpoint = %s\nPersistentKeepalive = 1\n",
		key, rogueListenPort, cfg.Cloud.PublicKey, overlay.Masked(), cfg.Cloud.Endpoint)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Run(ctx, ns, "wg", "setconf", dev, conf); err != nil {
		t.Fatal(err)
	}
	if err := lab.Addr(ns, dev, rogueIP.String()+"/32"); err != nil {
		t.Fatal(err)
	}
	if err := lab.IP(ns, "link", "set", dev, "up"); err != nil {
		t.Fatal(err)
	}
	if err := lab.IP(ns, "route", "add", overlay.Masked().String(), "dev", dev); err != nil {
		t.Fatal(err)
	}
	err = harness.Poll(ctx, 20*time.Second, 100*time.Millisecond, "rogue's handshake with the hub", func() error {
		out, err := lab.Run(ctx, ns, "wg", "show", dev, "latest-handshakes")
		if err != nil {
			return err
		}
		f := strings.Fields(out)
		if len(f) != 2 || f[1] == "0" {
			return fmt.Errorf("no handshake yet: %q", out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	ul := netip.MustParsePrefix(rogueUL).Addr()
	return &rogue{ns: ns, dev: dev, ip: rogueIP, overlay: overlay, hubIP: hubIP, prefix: roguePrefix,
		endpoint: netip.AddrPortFrom(ul, rogueListenPort), cfg: cfg}
}

// gatewayOverlayIP is a gateway's overlay IP, from `egwctl gateway config`.
func gatewayOverlayIP(t *testing.T, d *deployment, gateway string) netip.Addr {
	t.Helper()
	out, err := d.egw.Ctl(context.Background(), "gateway", "config", gateway)
	if err != nil {
		t.Fatal(err)
	}
	var cfg edgeConfig
	if err := yaml.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(cfg.OverlayIP)
	if err != nil {
		t.Fatalf("%s overlay IP %q: %v", gateway, cfg.OverlayIP, err)
	}
	return ip
}

// malformedPackets returns the packets the rogue injects (from src to dst, another
// gateway's overlay IP, or to unleased, a client overlay address of the hub's that is not
// leased) and, per hub drop reason, how many distinct packets must be counted there.
func malformedPackets(src, dst, unleased netip.Addr) ([][]byte, map[string]int) {
	const tcp, udp, icmp = 6, 17, 1
	var pkts [][]byte
	want := map[string]int{}
	add := func(reason string, p []byte) {
		pkts = append(pkts, p)
		if reason != "" {
			want[reason]++
		}
	}
	// Dropped by wireguard-go before the hub's engine (not asserted, must do no harm):
	// shorter than an IPv4 header, version 5, total length past the datagram.
	add("", []byte{0x45, 0, 0, 10, 0, 0, 0, 0, 64, udp})
	p := ip4(udp, src, dst, udpHdr(1234, 9090, 8))
	p[0] = 0x55
	add("", p)
	p = ip4(udp, src, dst, udpHdr(1234, 9090, 8))
	binary.BigEndian.PutUint16(p[2:], 200)
	setIPSum(p)
	add("", p)
	// Total length shorter than the datagram: WireGuard trims the datagram to it, which
	// leaves a TCP segment cut short.
	p = ip4(tcp, src, dst, tcpHdr(1234, 8080, 5))
	binary.BigEndian.PutUint16(p[2:], 30)
	setIPSum(p)
	add("malformed-truncated", p)

	// Truncated: a TCP header cut after 10 bytes.
	add("malformed-truncated", ip4(tcp, src, dst, tcpHdr(1234, 8080, 5)[:10]))
	// IHL 4 (< 5).
	p = ip4(udp, src, dst, append(udpHdr(1234, 9090, 20), make([]byte, 12)...))
	p[0] = 0x44
	setIPSum(p)
	add("malformed-ihl", p)
	// IHL 15: a 60-byte header in a 28-byte packet.
	p = ip4(udp, src, dst, udpHdr(1234, 9090, 8))
	p[0] = 0x4f
	add("malformed-ihl", p)
	// Total length below the header: IHL 6 (24 bytes) and total length 20. WireGuard
	// trims to 20, which puts the header past the end.
	p = ip4(udp, src, dst, udpHdr(1234, 9090, 8))
	p[0] = 0x46
	binary.BigEndian.PutUint16(p[2:], 20)
	add("malformed-ihl", p)
	// TCP data offset 4 (< 5), and 15 (60 bytes in a 20-byte segment), to a service port.
	add("malformed-tcp-offset", ip4(tcp, src, dst, tcpHdr(40000, 8080, 4)))
	add("malformed-tcp-offset", ip4(tcp, src, dst, tcpHdr(40000, 8080, 15)))
	// UDP length 3 (< 8).
	add("malformed-udp-length", ip4(udp, src, dst, udpHdr(1234, 9090, 3)))
	// ICMP port unreachable quoting a UDP flow from a hub client address that is leased to
	// nobody (its reply would have come from dst): it matches no mapping.
	add("icmp-error-no-mapping", ip4(icmp, src, unleased, icmpUnreachable(ip4(udp, unleased, dst, udpHdr(41000, 53, 8)))))
	// A well-formed datagram, and an ICMP error quoting a flow, for another gateway: the
	// hub forwards nothing it decrypted (edges reach each other on their own sessions, the
	// hub relaying only their ciphertext), so both are not for it.
	add("not-for-this-gateway", ip4(udp, src, dst, append(udpHdr(1234, 9090, 12), "hi b"...)))
	add("not-for-this-gateway", ip4(icmp, src, dst, icmpUnreachable(ip4(udp, dst, netip.MustParseAddr("10.9.9.9"), udpHdr(41000, 53, 8)))))
	// An ICMP error not addressed to the source of the packet it quotes.
	add("icmp-error-mismatch", ip4(icmp, src, unleased, icmpUnreachable(ip4(udp, dst, unleased, udpHdr(41000, 53, 8)))))
	return pkts, want
}

// icmpUnreachable is an ICMP port-unreachable message quoting inner.
func icmpUnreachable(inner []byte) []byte {
	msg := append([]byte{3, 3, 0, 0, 0, 0, 0, 0}, inner...)
	binary.BigEndian.PutUint16(msg[2:], pkttest.Checksum(msg, 0))
	return msg
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// ip4 builds an IPv4 packet (IHL 5, TTL 64, correct total length and header checksum).
func ip4(proto byte, src, dst netip.Addr, payload []byte) []byte {
	p := make([]byte, 20+len(payload))
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8], p[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	copy(p[20:], payload)
	setIPSum(p)
	return p
}

func setIPSum(p []byte) {
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:], pkttest.Checksum(p[:20], 0))
}

// tcpHdr is a 20-byte TCP SYN header with data offset off (in 32-bit words).
func tcpHdr(sport, dport uint16, off byte) []byte {
	h := make([]byte, 20)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	h[12] = off << 4
	h[13] = 0x02
	binary.BigEndian.PutUint16(h[14:], 64240)
	return h
}

// udpHdr is an 8-byte UDP header claiming length n.
func udpHdr(sport, dport, n uint16) []byte {
	h := make([]byte, 8)
	binary.BigEndian.PutUint16(h[0:], sport)
	binary.BigEndian.PutUint16(h[2:], dport)
	binary.BigEndian.PutUint16(h[4:], n)
	return h
}

// sendRaw writes each packet copies times into dev in ns through an AF_PACKET datagram
// socket: the bytes go to the device as they are, with no kernel fix-ups.
func sendRaw(ns, dev string, pkts [][]byte, copies int) error {
	return harness.InNS(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := htons(unix.ETH_P_IP)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(proto))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifi.Index}
		for range copies {
			for i, p := range pkts {
				if err := unix.Sendto(fd, p, 0, sa); err != nil {
					return fmt.Errorf("packet %d (% x): %w", i, p, err)
				}
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// dropsByReason reads a node's egw drop counters by reason from its Prometheus metrics
// (the samples named *drops_total with a reason label), from inside its namespace.
func dropsByReason(ctx context.Context, d *deployment, n *harness.Node) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9469/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.lab.HTTPClient(n.Site.GWNS, 5*time.Second).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, "{")
		if !ok || !strings.HasSuffix(name, "drops_total") {
			continue
		}
		labels, value, ok := strings.Cut(rest, "}")
		if !ok {
			continue
		}
		_, reason, ok := strings.Cut(labels, `reason="`)
		if !ok {
			continue
		}
		reason, _, _ = strings.Cut(reason, `"`)
		f := strings.Fields(value)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		out[reason] += v
	}
	return out, sc.Err()
}
