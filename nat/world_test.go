package nat

import (
	"net/netip"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/pkttest"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The test world (docs/ARCHITECTURE.md, "Topology"):
//
//	site-a (edge-a)                cloud (hub)                 site-b (edge-b)
//	client 10.0.0.20               overlay 100.64.0.0/22       nginx 10.0.0.10:8080/TCP ov 100.64.8.2
//	VP 192.168.0.0/24              VP 192.168.9.0/24           dns   10.0.0.11:53/UDP   ov 100.64.8.3
//	overlay 100.64.4.0/22                                      VP 172.16.5.0/24, overlay 100.64.8.0/22
//	VIPs: .10 nginx (client .20 only), .11 dns (whole site), .12 web (local 10.0.0.30:80, .20 only)
var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr

	clientA   = ma("10.0.0.20")
	clientA2  = ma("10.0.0.21") // not allowed for nginx
	vipNginx  = ma("192.168.0.10")
	vipDNS    = ma("192.168.0.11")
	vipWeb    = ma("192.168.0.12")
	nginxIP   = ma("10.0.0.10")
	dnsIP     = ma("10.0.0.11")
	webIP     = ma("10.0.0.30")
	ovNginx   = ma("100.64.8.2")
	ovDNS     = ma("100.64.8.3")
	ovA       = ma("100.64.4.1")
	ovB       = ma("100.64.8.1")
	ovHub     = ma("100.64.0.1")
	gatewaysW = []api.GatewayRef{
		{Name: "cloud", Site: "cloud", OverlayPrefix: mp("100.64.0.0/22")},
		{Name: "edge-a", Site: "site-a", OverlayPrefix: mp("100.64.4.0/22")},
		{Name: "edge-b", Site: "site-b", OverlayPrefix: mp("100.64.8.0/22")},
	}
)

func snapA() *api.Snapshot {
	return &api.Snapshot{
		Revision: 1, Gateway: "edge-a", Site: "site-a",
		OverlayCIDR: mp("100.64.0.0/10"), OverlayPrefix: mp("100.64.4.0/22"), OverlayIP: ovA,
		CloudOverlayIP: ovHub, VPCIDR: mp("192.168.0.0/24"), VPAddr: ma("192.168.0.1"),
		Gateways: gatewaysW,
		VIPs: []api.VIP{
			{VIP: vipNginx, Service: "nginx", Expose: "nginx-x", Protocol: "TCP", Port: 8080, HomeSite: "site-b",
				ServiceOverlay: ovNginx, AllowedClients: []netip.Addr{clientA},
				Decisions: []api.Decision{{Policy: "p1", Server: "client1", IP: clientA}}},
			{VIP: vipDNS, Service: "dns", Expose: "dns-x", Protocol: "UDP", Port: 53, HomeSite: "site-b",
				ServiceOverlay: ovDNS, AllowSite: true, Decisions: []api.Decision{{Policy: "p2", Site: "site-a"}}},
			{VIP: vipWeb, Service: "web", Expose: "web-x", Protocol: "TCP", Port: 80, HomeSite: "site-a",
				Local: true, ServiceIP: webIP, ServiceOverlay: ma("100.64.4.2"), AllowedClients: []netip.Addr{clientA}},
		},
	}
}

func snapB() *api.Snapshot {
	return &api.Snapshot{
		Revision: 1, Gateway: "edge-b", Site: "site-b",
		OverlayCIDR: mp("100.64.0.0/10"), OverlayPrefix: mp("100.64.8.0/22"), OverlayIP: ovB,
		CloudOverlayIP: ovHub, VPCIDR: mp("172.16.5.0/24"), VPAddr: ma("172.16.5.1"),
		Gateways: gatewaysW,
		Hosted: []api.Hosted{
			{Service: "nginx", Expose: "nginx-x", ServiceOverlay: ovNginx, ServiceIP: nginxIP, Protocol: "TCP", Port: 8080,
				AllowedSites: []string{"site-a"}, AllowedPrefixes: []netip.Prefix{mp("100.64.4.0/22")}},
			{Service: "dns", Expose: "dns-x", ServiceOverlay: ovDNS, ServiceIP: dnsIP, Protocol: "UDP", Port: 53,
				AllowedSites: []string{"site-a"}, AllowedPrefixes: []netip.Prefix{mp("100.64.4.0/22")}},
		},
	}
}

func snapHub() *api.Snapshot {
	return &api.Snapshot{
		Revision: 1, Gateway: "cloud", Site: "cloud", Hub: true,
		OverlayCIDR: mp("100.64.0.0/10"), OverlayPrefix: mp("100.64.0.0/22"), OverlayIP: ovHub,
		CloudOverlayIP: ovHub, VPCIDR: mp("192.168.9.0/24"), VPAddr: ma("192.168.9.1"),
		Gateways: gatewaysW,
	}
}

// fakeClock is the injected clock.
type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func newEngine(t testing.TB, s *api.Snapshot, clk *fakeClock, mod ...func(*Config)) *Engine {
	t.Helper()
	cfg := Config{Now: clk.Now}
	for _, m := range mod {
		m(&cfg)
	}
	e := NewEngine(cfg)
	if err := e.Apply(s); err != nil {
		t.Fatal(err)
	}
	return e
}

// pk describes a test packet; build serializes it with gopacket (checksums computed).
type pk struct {
	src, dst     netip.Addr
	ttl          uint8
	id           uint16
	flags        layers.IPv4Flag
	fragOff      uint16
	opts         []layers.IPv4Option
	proto        layers.IPProtocol
	sport, dport uint16
	syn, ack     bool
	mss          uint16 // TCP MSS option when non-zero
	mssOdd       bool   // put the MSS value at an odd offset (NOP, MSS, NOP×3)
	icmpType     uint8
	icmpID       uint16
	payload      []byte
	udpZero      bool // send UDP checksum 0
}

func (p pk) layers() []gopacket.SerializableLayer {
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	ip := &layers.IPv4{Version: 4, TTL: ttl, Id: p.id, Flags: p.flags, FragOffset: p.fragOff,
		Protocol: p.proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice(), Options: p.opts}
	switch p.proto {
	case layers.IPProtocolTCP:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), SYN: p.syn, ACK: p.ack,
			Seq: 1000, Ack: 2000, Window: 65535}
		if p.mss != 0 {
			tcp.Options = []layers.TCPOption{{OptionType: layers.TCPOptionKindMSS, OptionLength: 4,
				OptionData: []byte{byte(p.mss >> 8), byte(p.mss)}}}
			if p.mssOdd {
				nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}
				tcp.Options = append([]layers.TCPOption{nop}, tcp.Options[0], nop, nop, nop)
			}
		}
		tcp.SetNetworkLayerForChecksum(ip)
		return []gopacket.SerializableLayer{ip, tcp, gopacket.Payload(p.payload)}
	case layers.IPProtocolUDP:
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		udp.SetNetworkLayerForChecksum(ip)
		return []gopacket.SerializableLayer{ip, udp, gopacket.Payload(p.payload)}
	case layers.IPProtocolICMPv4:
		icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(p.icmpType, 0), Id: p.icmpID, Seq: 7}
		return []gopacket.SerializableLayer{ip, icmp, gopacket.Payload(p.payload)}
	}
	return []gopacket.SerializableLayer{ip, gopacket.Payload(p.payload)}
}

func (p pk) build(t testing.TB) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, p.layers()...); err != nil {
		t.Fatal(err)
	}
	b := append([]byte(nil), buf.Bytes()...)
	if p.udpZero && p.proto == layers.IPProtocolUDP {
		ihl := int(b[0]&0xf) * 4
		b[ihl+6], b[ihl+7] = 0, 0
	}
	return b
}

func tcpTo(src, dst netip.Addr, dport uint16) pk {
	return pk{src: src, dst: dst, proto: layers.IPProtocolTCP, sport: 40000, dport: dport, ack: true, payload: []byte("hello")}
}

func udpTo(src, dst netip.Addr, dport uint16) pk {
	return pk{src: src, dst: dst, proto: layers.IPProtocolUDP, sport: 40001, dport: dport, payload: []byte("query")}
}

func echoTo(src, dst netip.Addr, id uint16) pk {
	return pk{src: src, dst: dst, proto: layers.IPProtocolICMPv4, icmpType: layers.ICMPv4TypeEchoRequest, icmpID: id, payload: []byte("ping")}
}

func addrAt(b []byte, o int) netip.Addr { return netip.AddrFrom4([4]byte(b[o : o+4])) }
func srcOf(b []byte) netip.Addr         { return addrAt(b, 12) }
func dstOf(b []byte) netip.Addr         { return addrAt(b, 16) }

// verify checks that b parses with gopacket and that all its checksums verify,
// including the quoted packet of an ICMP error.
func verify(t testing.TB, b []byte) {
	t.Helper()
	if err := verifyErr(b); err != "" {
		t.Fatalf("%s\n% x", err, b)
	}
}

func verifyErr(b []byte) string {
	var p packet
	if r := parse(b, &p); r != ReasonOK {
		return "output does not parse: " + r.String()
	}
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.Default)
	if pkt.Layer(layers.LayerTypeIPv4) == nil {
		return "gopacket does not decode IPv4"
	}
	if p.fragOff == 0 && !p.mf {
		lt := map[uint8]gopacket.LayerType{ip4.ProtoTCP: layers.LayerTypeTCP, ip4.ProtoUDP: layers.LayerTypeUDP, ip4.ProtoICMP: layers.LayerTypeICMPv4}[p.proto]
		if lt != 0 && pkt.Layer(lt) == nil {
			return "gopacket does not decode " + lt.String()
		}
	}
	if pkttest.Checksum(b[:p.ihl], 0) != 0 {
		return "bad IPv4 header checksum"
	}
	if p.fragOff != 0 || p.mf {
		return ""
	}
	pseudo := func(proto uint8, n int) uint32 { return pkttest.Pseudo(p.src, p.dst, proto, n) }
	l4 := b[p.ihl:]
	switch p.proto {
	case ip4.ProtoTCP:
		if pkttest.Checksum(l4, pseudo(ip4.ProtoTCP, len(l4))) != 0 {
			return "bad TCP checksum"
		}
	case ip4.ProtoUDP:
		if get16(l4, 6) != 0 && pkttest.Checksum(l4, pseudo(ip4.ProtoUDP, len(l4))) != 0 {
			return "bad UDP checksum"
		}
	case ip4.ProtoICMP:
		if pkttest.Checksum(l4, 0) != 0 {
			return "bad ICMP checksum"
		}
		if p.isErr {
			in := b[p.in:]
			if pkttest.Checksum(in[:p.inIHL], 0) != 0 {
				return "bad quoted IPv4 checksum"
			}
			itl := int(get16(in, 2))
			if get16(in, 6)&0x3fff != 0 {
				itl = -1 // a fragment: its L4 checksum covers the whole datagram
			}
			if p.inProto == ip4.ProtoUDP && itl == len(in) && get16(in, p.inIHL+6) != 0 {
				s, d := get32(in, 12), get32(in, 16)
				ps := pkttest.Pseudo(s, d, ip4.ProtoUDP, itl-p.inIHL)
				if pkttest.Checksum(in[p.inIHL:], ps) != 0 {
					return "bad quoted UDP checksum"
				}
			}
			if p.inProto == ip4.ProtoTCP && itl == len(in) {
				s, d := get32(in, 12), get32(in, 16)
				ps := pkttest.Pseudo(s, d, ip4.ProtoTCP, itl-p.inIHL)
				if pkttest.Checksum(in[p.inIHL:], ps) != 0 {
					return "bad quoted TCP checksum"
				}
			}
		}
	}
	return ""
}

// reference translates b the slow, obvious way: gopacket decode, set fields, serialize
// with checksums recomputed. UDP checksum 0 stays 0; a computed 0 becomes 0xFFFF.
func reference(t testing.TB, b []byte, src, dst netip.Addr, ttlDec uint8, mss uint16) []byte {
	t.Helper()
	pkt := gopacket.NewPacket(b, layers.LayerTypeIPv4, gopacket.DecodeOptions{NoCopy: false})
	ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	ip.SrcIP, ip.DstIP = src.AsSlice(), dst.AsSlice()
	ip.TTL -= ttlDec
	ls := []gopacket.SerializableLayer{ip}
	udpZero := false
	switch l := pkt.Layer(layers.LayerTypeTCP).(type) {
	case *layers.TCP:
		if l.SYN && mss != 0 {
			for i, o := range l.Options {
				if o.OptionType == layers.TCPOptionKindMSS && len(o.OptionData) == 2 {
					if v := uint16(o.OptionData[0])<<8 | uint16(o.OptionData[1]); v > mss {
						l.Options[i].OptionData = []byte{byte(mss >> 8), byte(mss)}
					}
				}
			}
		}
		l.SetNetworkLayerForChecksum(ip)
		ls = append(ls, l, gopacket.Payload(l.Payload))
	}
	if l, ok := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP); ok {
		udpZero = l.Checksum == 0
		l.SetNetworkLayerForChecksum(ip)
		ls = append(ls, l, gopacket.Payload(l.Payload))
	}
	if l, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
		ls = append(ls, l, gopacket.Payload(l.Payload))
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), buf.Bytes()...)
	if ip.Protocol == layers.IPProtocolUDP {
		o := int(ip.IHL)*4 + 6
		if udpZero {
			out[o], out[o+1] = 0, 0
		} else if out[o] == 0 && out[o+1] == 0 {
			out[o], out[o+1] = 0xff, 0xff
		}
	}
	return out
}
