package nat

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/egw-project/egw/api"
)

// Benchmarks: ns and allocs per packet on the accept path. Each iteration copies the
// template packet into the buffer (translation is in place), which is included.
//
//	go test -run '^$' -bench . -benchmem ./nat/

func benchPacket(b *testing.B, e *Engine, site bool, pkt []byte) {
	buf := make([]byte, len(pkt))
	reply := make([]byte, 1500)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		copy(buf, pkt)
		var r Result
		if site {
			r = e.FromSite(buf, reply)
		} else {
			r = e.FromOverlay(buf, reply)
		}
		if r.Action == Drop {
			b.Fatal(r.Reason)
		}
	}
	cpu.report(b)
}

// cpuMeter reports CPU time per operation beside the wall-clock ns/op: on a machine
// shared with other work, wall time also counts the time this process waited for a CPU.
type cpuMeter struct{ start time.Duration }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuMeter { return cpuMeter{cpuTime()} }

func (m cpuMeter) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuTime()-m.start)/float64(b.N), "cpu-ns/op")
	}
}

func BenchmarkOutboundTCP(b *testing.B) {
	w := newWorld(b)
	benchPacket(b, w.a, true, tcpTo(clientA, vipNginx, 8080).build(b))
}

func BenchmarkInboundTCP(b *testing.B) {
	w := newWorld(b)
	p := tcpTo(clientA, vipNginx, 8080).build(b)
	w.a.FromSite(p, nil)
	benchPacket(b, w.b, false, p)
}

func BenchmarkUDP(b *testing.B) {
	w := newWorld(b)
	benchPacket(b, w.a, true, udpTo(clientA, vipDNS, 53).build(b))
}

func BenchmarkICMPError(b *testing.B) {
	w := newWorld(b)
	atS := w.toService(b, udpTo(clientA, vipDNS, 53).build(b))
	benchPacket(b, w.b, true, icmpErr(b, dnsIP, srcOf(atS), 3, 3, atS))
}

// bigSnapshot is site-a with 10,000 VIPs and 100,000 allowed servers (10 per VIP).
func bigSnapshot() *api.Snapshot {
	s := snapA()
	s.VPCIDR = mp("10.128.0.0/16")
	s.VPAddr = ma("10.128.0.1")
	s.VIPs = s.VIPs[:0]
	for i := 0; i < 10000; i++ {
		a := i + 2
		v := api.VIP{VIP: netip.AddrFrom4([4]byte{10, 128, byte(a >> 8), byte(a)}), Service: fmt.Sprint("svc", i),
			Protocol: "TCP", Port: 8080, ServiceOverlay: netip.AddrFrom4([4]byte{100, 64, 8, 2})}
		for j := 0; j < 10; j++ {
			k := i*10 + j
			v.AllowedClients = append(v.AllowedClients, netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}))
		}
		s.VIPs = append(s.VIPs, v)
	}
	return s
}

func BenchmarkOutboundTCPLargePolicy(b *testing.B) {
	clk := newClock()
	e := newEngine(b, bigSnapshot(), clk)
	k := 5000*10 + 3
	c := netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)})
	benchPacket(b, e, true, tcpTo(c, netip.AddrFrom4([4]byte{10, 128, 5002 >> 8, 5002 & 0xff}), 8080).build(b))
}

// BenchmarkEchoRequestInbound: an echo request arriving at the service's gateway (it
// leases the presence IP and remembers which service the request was sent to).
func BenchmarkEchoRequestInbound(b *testing.B) {
	w := newWorld(b)
	p := echoTo(clientA, vipDNS, 7).build(b)
	w.a.FromSite(p, nil)
	benchPacket(b, w.b, false, p)
}

// BenchmarkEchoReply: the service host's echo reply at its gateway (attributed to the
// service the request was sent to).
func BenchmarkEchoReply(b *testing.B) {
	w := newWorld(b)
	atS := w.toService(b, echoTo(clientA, vipDNS, 7).build(b))
	benchPacket(b, w.b, true, mirror(atS))
}
