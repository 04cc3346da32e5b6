package overlay

import (
	"encoding/binary"
	"net/netip"
	"os"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/egw-project/egw/internal/pkttest"
	"github.com/egw-project/egw/nat"
)

// udp4 builds an IPv4/UDP packet with a valid IP header checksum.
func udp4(src, dst netip.Addr, payload string) []byte {
	p := make([]byte, 28+len(payload))
	udp4Into(p, src, dst, payload)
	return p
}

// udp4Into writes the packet into p (which must be long enough) and returns its length.
func udp4Into(p []byte, src, dst netip.Addr, payload string) int {
	p = p[:28+len(payload)]
	clear(p)
	p[0] = 0x45
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	p[8] = 64
	p[9] = 17
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	binary.BigEndian.PutUint16(p[10:], pkttest.Checksum(p[:20], 0))
	binary.BigEndian.PutUint16(p[20:], 1000)
	binary.BigEndian.PutUint16(p[22:], 2000)
	binary.BigEndian.PutUint16(p[24:], uint16(8+len(payload)))
	copy(p[28:], payload)
	return len(p)
}

func srcOf(p []byte) netip.Addr { return netip.AddrFrom4([4]byte(p[12:16])) }
func dstOf(p []byte) netip.Addr { return netip.AddrFrom4([4]byte(p[16:20])) }
func payloadOf(p []byte) string { return string(p[28:]) }

var (
	siteClient  = netip.MustParseAddr("10.0.0.20")
	translated  = netip.MustParseAddr("100.64.4.200") // what the fake engine writes as source
	localOvIP   = netip.MustParseAddr("100.64.4.1")
	replyMarker = "icmp-reply"
)

// ruleTranslator is a fake engine whose verdict is chosen by the last octet of the
// destination address:
//
//	.1 ToOverlay   .2 the other direction (FromSite: ToSite hairpin; FromOverlay: ToOverlay,
//	                  which the Wrapper drops: nothing decrypted goes back into the overlay)
//	.3 Drop        .4 Drop + reply to the site    .5 Drop + reply to the overlay
//
// A packet it passes gets its source rewritten to `translated`, in place.
type ruleTranslator struct {
	mu    sync.Mutex
	calls int
}

func (t *ruleTranslator) verdict(pkt, reply []byte, fromSite bool) nat.Result {
	t.mu.Lock()
	t.calls++
	t.mu.Unlock()
	if len(pkt) < 20 {
		return nat.Result{Action: nat.Drop}
	}
	s := translated.As4()
	switch pkt[19] {
	case 1:
		copy(pkt[12:16], s[:])
		if fromSite {
			return nat.Result{Action: nat.ToOverlay}
		}
		return nat.Result{Action: nat.ToSite}
	case 2:
		copy(pkt[12:16], s[:])
		if fromSite {
			return nat.Result{Action: nat.ToSite}
		}
		return nat.Result{Action: nat.ToOverlay}
	case 4, 5:
		n := udp4Into(reply, dstOf(pkt), srcOf(pkt), replyMarker)
		to := nat.ToSite
		if pkt[19] == 5 {
			to = nat.ToOverlay
		}
		return nat.Result{Action: nat.Drop, ReplyLen: n, ReplyAction: to}
	}
	return nat.Result{Action: nat.Drop}
}

func (t *ruleTranslator) FromSite(pkt, reply []byte) nat.Result {
	return t.verdict(pkt, reply, true)
}

func (t *ruleTranslator) FromOverlay(pkt, reply []byte) nat.Result {
	return t.verdict(pkt, reply, false)
}

// batchTUN is a tun.Device without a file (the Wrapper uses its pump): Read returns
// the batches sent on in, Write records batches on out.
type batchTUN struct {
	in     chan [][]byte
	out    chan [][]byte
	batch  int
	closed chan struct{}
	once   sync.Once
	events chan tun.Event
}

func newBatchTUN(batch int) *batchTUN {
	return &batchTUN{
		in: make(chan [][]byte, 16), out: make(chan [][]byte, 16), batch: batch,
		closed: make(chan struct{}), events: make(chan tun.Event, 1),
	}
}

func (t *batchTUN) File() *os.File { return nil }
func (t *batchTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	select {
	case <-t.closed:
		return 0, os.ErrClosed
	case b := <-t.in:
		for i, p := range b {
			sizes[i] = copy(bufs[i][offset:], p)
		}
		return len(b), nil
	}
}

func (t *batchTUN) Write(bufs [][]byte, offset int) (int, error) {
	cp := make([][]byte, len(bufs))
	for i, b := range bufs {
		cp[i] = append([]byte(nil), b[offset:]...)
	}
	select {
	case t.out <- cp:
	case <-t.closed:
		return 0, os.ErrClosed
	}
	return len(bufs), nil
}
func (t *batchTUN) MTU() (int, error)        { return 1420, nil }
func (t *batchTUN) Name() (string, error)    { return "batch0", nil }
func (t *batchTUN) Events() <-chan tun.Event { return t.events }
func (t *batchTUN) BatchSize() int           { return t.batch }
func (t *batchTUN) Close() error {
	t.once.Do(func() { close(t.closed); close(t.events) })
	return nil
}

// seqTUN is a tun.Device over one end of a SOCK_SEQPACKET socketpair: a pollable file,
// so the Wrapper reads it directly and wakes it with deadlines, as with a real TUN. The
// test plays the kernel on the other end (peer).
type seqTUN struct {
	f      *os.File
	peer   *os.File
	events chan tun.Event
	once   sync.Once
}

func newSeqTUN(t testing.TB) *seqTUN {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := &seqTUN{
		f:      os.NewFile(uintptr(fds[0]), "seqtun"),
		peer:   os.NewFile(uintptr(fds[1]), "seqtun-peer"),
		events: make(chan tun.Event, 1),
	}
	t.Cleanup(func() { s.Close(); s.peer.Close() })
	return s
}

func (s *seqTUN) File() *os.File { return s.f }
func (s *seqTUN) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := s.f.Read(bufs[0][offset:])
	if err != nil {
		return 0, err
	}
	sizes[0] = n
	return 1, nil
}
func (s *seqTUN) Write(bufs [][]byte, offset int) (int, error) {
	for i, b := range bufs {
		if _, err := s.f.Write(b[offset:]); err != nil {
			return i, err
		}
	}
	return len(bufs), nil
}
func (s *seqTUN) MTU() (int, error)        { return 1420, nil }
func (s *seqTUN) Name() (string, error)    { return "seq0", nil }
func (s *seqTUN) Events() <-chan tun.Event { return s.events }
func (s *seqTUN) BatchSize() int           { return 1 }
func (s *seqTUN) Close() error {
	s.once.Do(func() { close(s.events) })
	return s.f.Close()
}

// wgBufs returns n buffers shaped like wireguard-go's (64 KiB, read at offset 16).
func wgBufs(n int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, 65535)
	}
	return bufs, make([]int, n)
}

const wgOffset = 16

func addr(last byte) netip.Addr { return netip.AddrFrom4([4]byte{10, 0, 0, last}) }
