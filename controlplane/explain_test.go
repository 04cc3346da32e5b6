package controlplane

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/internal/pkttest"
	"github.com/egw-project/egw/nat"
)

// TestExplainAgreesWithDataPlane: for random (client, VIP, port) triples, egwctl explain's
// verdict (for the service's own protocol and port) is what the gateway's NAT engine,
// running the same snapshot, does with a packet from the client to VIP:port.
func TestExplainAgreesWithDataPlane(t *testing.T) {
	srv := newServer(t, t.TempDir(), testConfig(), Options{})
	h := srv.Handler()
	if rec := do(t, h, "POST", "/v1/apply", append(seedObjects(t), decode(t, moreObjects)...)); rec.Code != 200 {
		t.Fatal(rec.Body)
	}
	const site, gateway = "TokyoChibaSite1", "TokyoChibaGateway"
	snap, ok := srv.Snapshot(gateway)
	if !ok || len(snap.VIPs) == 0 {
		t.Fatalf("no snapshot with VIPs for %s", gateway)
	}
	eng := nat.NewEngine(nat.Config{})
	if err := eng.Apply(snap); err != nil {
		t.Fatal(err)
	}
	// Candidate clients: every allowed address of the snapshot and a few others.
	var clients []netip.Addr
	for _, v := range snap.VIPs {
		clients = append(clients, v.AllowedClients...)
	}
	for i := range 8 {
		clients = append(clients, netip.AddrFrom4([4]byte{10, 0, 0, byte(90 + i)}))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	allowed, denied := 0, 0
	for range 500 {
		c := clients[rng.IntN(len(clients))]
		v := snap.VIPs[rng.IntN(len(snap.VIPs))]
		proto, _ := ip4.ParseProto(v.Protocol)
		if proto != ip4.ProtoTCP && proto != ip4.ProtoUDP {
			proto = ip4.ProtoTCP
		}
		port := v.Port
		if rng.IntN(3) == 0 {
			port = uint16(1 + rng.IntN(65535))
		}
		ex, err := srv.Explain(site, c.String(), v.VIP.String())
		if err != nil {
			t.Fatal(err)
		}
		want := ex.Allowed && (port == v.Port || v.Protocol == "ANY" || v.Protocol == "")
		res := eng.FromSite(packet(c, v.VIP, proto, port), make([]byte, 1500))
		if got := res.Action != nat.Drop && res.Reason == nat.ReasonOK; got != want { // a denied segment may leave as a RST
			t.Fatalf("%s -> %s:%d/%s: explain allowed=%v (%s), engine %v %v", c, v.VIP, port, v.Protocol, ex.Allowed, ex.Reason, res.Action, res.Reason)
		}
		if want {
			allowed++
		} else {
			denied++
		}
	}
	if allowed == 0 || denied == 0 {
		t.Fatalf("the triples cover only one verdict: %d allowed, %d denied", allowed, denied)
	}
}

// packet is a TCP (ACK) or UDP packet src:40000 -> dst:port with valid checksums.
func packet(src, dst netip.Addr, proto uint8, port uint16) []byte {
	l4 := 8
	if proto == ip4.ProtoTCP {
		l4 = 20
	}
	b := make([]byte, 20+l4)
	b[0], b[8], b[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], pkttest.Checksum(b[:20], 0))
	u := b[20:]
	binary.BigEndian.PutUint16(u[0:], 40000)
	binary.BigEndian.PutUint16(u[2:], port)
	if proto == ip4.ProtoTCP {
		u[12], u[13] = 5<<4, 0x10
		binary.BigEndian.PutUint16(u[14:], 65535)
		binary.BigEndian.PutUint16(u[16:], pkttest.Checksum(u, pkttest.Pseudo(ip4.U32(src), ip4.U32(dst), proto, len(u))))
	} else {
		binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
		binary.BigEndian.PutUint16(u[6:], pkttest.Checksum(u, pkttest.Pseudo(ip4.U32(src), ip4.U32(dst), proto, len(u))))
	}
	return b
}
