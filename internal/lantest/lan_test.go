package lantest

import (
	"io"
	"net/netip"
	"testing"
	"time"
)

func TestHostsTalkAndGatewaySeesOthers(t *testing.T) {
	l := New()
	defer l.Close()
	a, err := l.AddHost(netip.MustParseAddr("10.0.0.20"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost(netip.MustParseAddr("10.0.0.10"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := b.Net.ListenTCPAddrPort(netip.MustParseAddrPort("10.0.0.10:8080"))
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	c, err := a.Net.DialTCPAddrPort(netip.MustParseAddrPort("10.0.0.10:8080"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("echo: %q %v", buf, err)
	}
	c.Close()
	// A packet to an address outside the LAN reaches the gateway's TUN.
	u, _ := a.Net.DialUDPAddrPort(netip.AddrPort{}, netip.MustParseAddrPort("192.168.0.10:53"))
	u.Write([]byte("x"))
	select {
	case pkt := <-l.GW.Outbound:
		if d, _ := dst(pkt); d != netip.MustParseAddr("192.168.0.10") {
			t.Fatalf("gateway got a packet for %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("gateway saw nothing")
	}
}
