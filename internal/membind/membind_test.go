package membind

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// open opens b on port and closes it when the test ends.
func open(t *testing.T, b *Bind, port uint16) (conn.ReceiveFunc, uint16) {
	t.Helper()
	fns, got, err := b.Open(port)
	if err != nil {
		t.Fatalf("Open(%d): %v", port, err)
	}
	if len(fns) != 1 {
		t.Fatalf("Open(%d): %d receive functions, want 1", port, len(fns))
	}
	t.Cleanup(func() { b.Close() })
	return fns[0], got
}

// recv receives one datagram, failing the test after a second.
func recv(t *testing.T, fn conn.ReceiveFunc) (string, netip.AddrPort) {
	t.Helper()
	type result struct {
		data string
		from netip.AddrPort
		err  error
	}
	done := make(chan result, 1)
	go func() {
		bufs, sizes, eps := [][]byte{make([]byte, 2048)}, make([]int, 1), make([]conn.Endpoint, 1)
		n, err := fn(bufs, sizes, eps)
		if err != nil || n != 1 {
			done <- result{err: errors.Join(err, errors.New("no datagram"))}
			return
		}
		done <- result{data: string(bufs[0][:sizes[0]]), from: netip.AddrPort(eps[0].(Endpoint))}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("receive: %v", r.err)
		}
		return r.data, r.from
	case <-time.After(time.Second):
		t.Fatal("no datagram within 1s")
	}
	return "", netip.AddrPort{}
}

func TestOpenPorts(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.1")
	for _, tc := range []struct {
		name  string
		taken []uint16 // ports already open on ip
		port  uint16
		want  uint16
		err   string
	}{
		{name: "any port starts at 40000", port: 0, want: 40000},
		{name: "any port skips taken ones", taken: []uint16{40000, 40001}, port: 0, want: 40002},
		{name: "fixed port", port: 51820, want: 51820},
		{name: "fixed port beside a taken one", taken: []uint16{51820}, port: 51821, want: 51821},
		{name: "fixed port in use", taken: []uint16{51820}, port: 51820, err: "10.0.0.1:51820 is in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sw := NewSwitch()
			for _, p := range tc.taken {
				open(t, sw.Bind(ip), p)
			}
			fns, got, err := sw.Bind(ip).Open(tc.port)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || fns != nil {
					t.Fatalf("Open(%d) = %d, %v; want error %q", tc.port, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Open(%d) = %d, %v; want %d", tc.port, got, err, tc.want)
			}
		})
	}
}

func TestOpenTwiceAndReopen(t *testing.T) {
	sw := NewSwitch()
	b := sw.Bind(netip.MustParseAddr("10.0.0.1"))
	open(t, b, 51820)
	if _, _, err := b.Open(51820); !errors.Is(err, conn.ErrBindAlreadyOpen) {
		t.Fatalf("second Open: %v, want ErrBindAlreadyOpen", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Closing frees the address for another bind.
	if _, port := open(t, sw.Bind(netip.MustParseAddr("10.0.0.1")), 51820); port != 51820 {
		t.Fatalf("port %d after close, want 51820", port)
	}
}

func TestDelivery(t *testing.T) {
	sw := NewSwitch()
	a, b, c := sw.Bind(netip.MustParseAddr("10.0.0.1")), sw.Bind(netip.MustParseAddr("10.0.0.2")), sw.Bind(netip.MustParseAddr("10.0.0.3"))
	open(t, a, 51820)
	rb, _ := open(t, b, 51820)
	rc, _ := open(t, c, 0)
	toB, err := a.ParseEndpoint("10.0.0.2:51820")
	if err != nil {
		t.Fatal(err)
	}
	toC, err := a.ParseEndpoint("10.0.0.3:40000")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send([][]byte{[]byte("one"), []byte("two")}, toB); err != nil {
		t.Fatal(err)
	}
	if err := a.Send([][]byte{[]byte("three")}, toC); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"one", "two"} {
		if got, from := recv(t, rb); got != want || from != netip.MustParseAddrPort("10.0.0.1:51820") {
			t.Fatalf("b received %q from %s, want %q from 10.0.0.1:51820", got, from, want)
		}
	}
	if got, _ := recv(t, rc); got != "three" {
		t.Fatalf("c received %q, want three", got)
	}
	if n := sw.Lost(); n != 0 {
		t.Fatalf("lost %d, want 0", n)
	}
}

func TestLosses(t *testing.T) {
	sw := NewSwitch()
	a, b := sw.Bind(netip.MustParseAddr("10.0.0.1")), sw.Bind(netip.MustParseAddr("10.0.0.2"))
	open(t, a, 1)
	open(t, b, 2)
	nobody := Endpoint(netip.MustParseAddrPort("10.0.0.9:1"))
	if err := a.Send([][]byte{{1}, {2}}, nobody); err != nil {
		t.Fatalf("send to nobody: %v", err)
	}
	if n := sw.Lost(); n != 2 {
		t.Fatalf("lost %d after sending 2 to nobody, want 2", n)
	}
	// Nobody reads b: the queue fills, and the rest is lost.
	full := make([][]byte, QueueLen+3)
	for i := range full {
		full[i] = []byte{byte(i)}
	}
	if err := a.Send(full, Endpoint(netip.MustParseAddrPort("10.0.0.2:2"))); err != nil {
		t.Fatal(err)
	}
	if n := sw.Lost(); n != 5 {
		t.Fatalf("lost %d after overfilling a queue by 3, want 5", n)
	}
}

func TestSendErrors(t *testing.T) {
	sw := NewSwitch()
	a := sw.Bind(netip.MustParseAddr("10.0.0.1"))
	to := Endpoint(netip.MustParseAddrPort("10.0.0.2:1"))
	if err := a.Send([][]byte{{1}}, to); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send before Open: %v, want net.ErrClosed", err)
	}
	open(t, a, 1)
	if err := a.Send([][]byte{{1}}, &conn.StdNetEndpoint{}); err == nil || !strings.Contains(err.Error(), "another bind type") {
		t.Fatalf("send to a foreign endpoint: %v", err)
	}
	a.Close()
	if err := a.Send([][]byte{{1}}, to); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send after Close: %v, want net.ErrClosed", err)
	}
}

func TestCloseEndsReceive(t *testing.T) {
	b := NewSwitch().Bind(netip.MustParseAddr("10.0.0.1"))
	fn, _ := open(t, b, 1)
	done := make(chan error, 1)
	go func() {
		_, err := fn([][]byte{make([]byte, 16)}, make([]int, 1), make([]conn.Endpoint, 1))
		done <- err
	}()
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("receive after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(time.Second):
		t.Fatal("receive still blocked 1s after Close")
	}
}

func TestParseEndpoint(t *testing.T) {
	b := NewSwitch().Bind(netip.MustParseAddr("10.0.0.1"))
	for _, tc := range []struct {
		in, want, err string
	}{
		{in: "10.0.0.2:51820", want: "10.0.0.2:51820"},
		{in: "[::ffff:10.0.0.2]:7", want: "10.0.0.2:7"},
		{in: "[fd00::1]:7", want: "[fd00::1]:7"},
		{in: "10.0.0.2", err: "not an ip:port"},
		{in: "", err: "not an ip:port"},
	} {
		ep, err := b.ParseEndpoint(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEndpoint(%q) = %v, %v; want error mentioning %q", tc.in, ep, err, tc.err)
			}
			continue
		}
		if err != nil || ep.DstToString() != tc.want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", tc.in, ep, err, tc.want)
			continue
		}
		if ep.DstIP() != netip.MustParseAddrPort(tc.want).Addr() || ep.SrcIP().IsValid() || ep.SrcToString() != "" {
			t.Errorf("ParseEndpoint(%q): DstIP %s SrcIP %s SrcToString %q", tc.in, ep.DstIP(), ep.SrcIP(), ep.SrcToString())
		}
		want, _ := netip.MustParseAddrPort(tc.want).MarshalBinary()
		if string(ep.DstToBytes()) != string(want) {
			t.Errorf("ParseEndpoint(%q).DstToBytes = %x, want %x", tc.in, ep.DstToBytes(), want)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"10.0.0.2:51820", "[::ffff:10.0.0.2]:7", "[fd00::1]:7", "10.0.0.2", "", ":0", "[::1%eth0]:1"} {
		f.Add(s)
	}
	b := NewSwitch().Bind(netip.MustParseAddr("10.0.0.1"))
	f.Fuzz(func(t *testing.T, s string) {
		ep, err := b.ParseEndpoint(s)
		if err != nil {
			return
		}
		again, err := b.ParseEndpoint(ep.DstToString())
		if err != nil || again != ep {
			t.Fatalf("ParseEndpoint(%q) = %v, but its string %q parses to %v, %v", s, ep, ep.DstToString(), again, err)
		}
	})
}
