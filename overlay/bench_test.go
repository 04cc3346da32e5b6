package overlay

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/egw-project/egw/nat"
)

// instantTUN never blocks: Read copies a preloaded batch (as a real TUN read copies from
// the kernel), Write discards. Its File is a real pollable file, so the Wrapper uses the
// deadline reader, as with a real TUN.
type instantTUN struct {
	pkts   [][]byte
	file   *os.File
	events chan tun.Event
}

func newInstantTUN(b *testing.B, batch int, pkt []byte) *instantTUN {
	s := newSeqTUN(b)
	t := &instantTUN{file: s.f, events: make(chan tun.Event)}
	for range batch {
		t.pkts = append(t.pkts, pkt)
	}
	return t
}

func (t *instantTUN) File() *os.File { return t.file }
func (t *instantTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n := min(len(bufs), len(t.pkts))
	for i := range n {
		sizes[i] = copy(bufs[i][offset:], t.pkts[i])
	}
	return n, nil
}
func (t *instantTUN) Write(bufs [][]byte, offset int) (int, error) { return len(bufs), nil }
func (t *instantTUN) MTU() (int, error)                            { return 1420, nil }
func (t *instantTUN) Name() (string, error)                        { return "instant0", nil }
func (t *instantTUN) Events() <-chan tun.Event                     { return t.events }
func (t *instantTUN) BatchSize() int                               { return len(t.pkts) }
func (t *instantTUN) Close() error                                 { return nil }

// passthrough is the cheapest engine: it says where to go without looking.
type passthrough struct{ site, overlay nat.Action }

func (p passthrough) FromSite(pkt, reply []byte) nat.Result    { return nat.Result{Action: p.site} }
func (p passthrough) FromOverlay(pkt, reply []byte) nat.Result { return nat.Result{Action: p.overlay} }

var benchPkt = func() []byte {
	p := udp4(netip.MustParseAddr("10.0.0.20"), netip.MustParseAddr("192.168.0.10"), string(make([]byte, 1372)))
	return p // 1400 bytes
}()

// BenchmarkRead: one Read of a batch from a TUN that never blocks, straight (the cost of
// the copy alone) and through the Wrapper with a pass-through engine. The difference per
// batch is the seam's overhead. ns/op is per batch.
func BenchmarkRead(b *testing.B) {
	for _, batch := range []int{1, 16, 128} {
		bufs, sizes := wgBufs(batch)
		b.Run(fmt.Sprintf("batch=%d/raw", batch), func(b *testing.B) {
			dev := newInstantTUN(b, batch, benchPkt)
			b.SetBytes(int64(batch * len(benchPkt)))
			b.ReportAllocs()
			for b.Loop() {
				dev.Read(bufs, sizes, wgOffset)
			}
		})
		b.Run(fmt.Sprintf("batch=%d/wrapper", batch), func(b *testing.B) {
			w := NewWrapper(newInstantTUN(b, batch, benchPkt), passthrough{site: nat.ToOverlay}, nil)
			b.SetBytes(int64(batch * len(benchPkt)))
			b.ReportAllocs()
			for b.Loop() {
				if n, err := w.Read(bufs, sizes, wgOffset); n != batch || err != nil {
					b.Fatal(n, err)
				}
			}
		})
		b.Run(fmt.Sprintf("batch=%d/wrapper-half-dropped", batch), func(b *testing.B) {
			w := NewWrapper(newInstantTUN(b, batch, benchPkt), &alternate{}, nil)
			b.SetBytes(int64(batch * len(benchPkt)))
			b.ReportAllocs()
			for b.Loop() {
				w.Read(bufs, sizes, wgOffset)
			}
		})
	}
}

// alternate drops every other packet (Read sets their sizes to 0).
type alternate struct{ n int }

func (a *alternate) FromSite(pkt, reply []byte) nat.Result {
	a.n++
	if a.n%2 == 0 {
		return nat.Result{Action: nat.Drop}
	}
	return nat.Result{Action: nat.ToOverlay}
}
func (a *alternate) FromOverlay(pkt, reply []byte) nat.Result { return nat.Result{Action: nat.Drop} }

// replier drops what WireGuard delivers and answers each packet with a copy of it to the
// overlay (as the engine answers with ICMP errors or resets).
type replier struct{}

func (replier) FromSite(pkt, reply []byte) nat.Result { return nat.Result{Action: nat.ToOverlay} }
func (replier) FromOverlay(pkt, reply []byte) nat.Result {
	n := copy(reply, pkt)
	return nat.Result{Action: nat.Drop, ReplyLen: n, ReplyAction: nat.ToOverlay}
}

// BenchmarkWrite: one Write of a batch WireGuard decrypted, to the site (one TUN write)
// or answered (each reply copied into the reply queue and read back by Read). ns/op is
// per batch.
func BenchmarkWrite(b *testing.B) {
	for _, batch := range []int{1, 16, 128} {
		wbufs := make([][]byte, batch)
		for i := range wbufs {
			buf := make([]byte, 65535)
			copy(buf[wgOffset:], benchPkt)
			wbufs[i] = buf[:wgOffset+len(benchPkt)]
		}
		b.Run(fmt.Sprintf("batch=%d/to-site", batch), func(b *testing.B) {
			w := NewWrapper(newInstantTUN(b, batch, benchPkt), passthrough{overlay: nat.ToSite}, nil)
			b.SetBytes(int64(batch * len(benchPkt)))
			b.ReportAllocs()
			for b.Loop() {
				w.Write(wbufs, wgOffset)
			}
		})
		b.Run(fmt.Sprintf("batch=%d/reply", batch), func(b *testing.B) {
			w := NewWrapper(newInstantTUN(b, batch, benchPkt), replier{}, nil)
			bufs, sizes := wgBufs(batch)
			b.SetBytes(int64(batch * len(benchPkt)))
			b.ReportAllocs()
			for b.Loop() {
				w.Write(wbufs, wgOffset)
				if n, _ := w.Read(bufs, sizes, wgOffset); n != batch {
					b.Fatal(n)
				}
			}
		})
	}
}

// BenchmarkReplyWake: latency from Write queuing one reply to a Read that was blocked on
// an idle TUN returning it — deadline interrupt (pollable TUN, no extra goroutine) versus
// pump goroutine + channel (Tailscale's design).
func BenchmarkReplyWake(b *testing.B) {
	for _, tc := range []struct {
		name string
		dev  func(b *testing.B) tun.Device
	}{
		{"deadline", func(b *testing.B) tun.Device { return newSeqTUN(b) }},
		{"pump", func(b *testing.B) tun.Device { return tuntest.NewChannelTUN().TUN() }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := NewWrapper(tc.dev(b), replier{}, nil)
			defer w.Close()
			got := make(chan struct{})
			go func() {
				bufs, sizes := wgBufs(1)
				for {
					if _, err := w.Read(bufs, sizes, wgOffset); err != nil {
						close(got)
						return
					}
					got <- struct{}{}
				}
			}()
			buf := make([]byte, 65535)
			copy(buf[wgOffset:], benchPkt)
			wbufs := [][]byte{buf[:wgOffset+len(benchPkt)]}
			b.ReportAllocs()
			for b.Loop() {
				w.Write(wbufs, wgOffset)
				<-got
			}
		})
	}
}
