package pathbind

import (
	"crypto/rand"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/internal/membind"
	"github.com/egw-project/egw/internal/testclock"
)

// newClock is the injected clock tests move by hand.
func newClock() *testclock.Clock { return testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// filterBind drops the datagrams its rule matches before they reach the underlay.
type filterBind struct {
	conn.Bind
	self netip.AddrPort
	mu   sync.Mutex
	drop func(from, to netip.AddrPort, pkt []byte) bool
	sent atomic.Uint64 // datagrams handed to the switch (counted before they can arrive)
}

func (f *filterBind) setDrop(fn func(from, to netip.AddrPort, pkt []byte) bool) {
	f.mu.Lock()
	f.drop = fn
	f.mu.Unlock()
}

func (f *filterBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	f.mu.Lock()
	drop := f.drop
	f.mu.Unlock()
	if drop != nil {
		to := addrOf(ep)
		kept := bufs[:0:0]
		for _, b := range bufs {
			if !drop(f.self, to, b) {
				kept = append(kept, b)
			}
		}
		if len(kept) == 0 {
			return nil
		}
		bufs = kept
	}
	f.sent.Add(uint64(len(bufs)))
	return f.Bind.Send(bufs, ep)
}

// received is a datagram a pump handed to "WireGuard".
type received struct {
	data []byte
	ep   conn.Endpoint
}

// node is one gateway's Bind on a membind switch, with a pump standing in for
// wireguard-go's receive loop.
type node struct {
	ip   netip.Addr // overlay IP
	addr netip.AddrPort
	key  wgtypes.Key
	f    *filterBind
	b    *Bind
	rx   chan received
	// handled counts datagrams the pump's receive call returned: the bind has demuxed
	// them and sent whatever they caused (pongs, relayed copies) before it returns.
	handled atomic.Uint64
}

func newKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newNode(t *testing.T, sw *membind.Switch, underlay, overlay string, port uint16, clk *testclock.Clock, relay *Relay, direct bool, timing Timing) *node {
	t.Helper()
	n := &node{ip: netip.MustParseAddr(overlay), key: newKey(t), rx: make(chan received, 1024)}
	n.addr = netip.AddrPortFrom(netip.MustParseAddr(underlay), port)
	n.f = &filterBind{Bind: sw.Bind(n.addr.Addr()), self: n.addr}
	n.b = New(n.f, Config{Self: n.ip, PrivateKey: n.key, Direct: direct, Relay: relay, Now: clk.Now, ManualTick: true, Timing: timing})
	fns, got, err := n.b.Open(port)
	if err != nil {
		t.Fatal(err)
	}
	if got != port {
		t.Fatalf("opened port %d, want %d", got, port)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes, eps := [][]byte{make([]byte, 65535)}, make([]int, 1), make([]conn.Endpoint, 1)
		for {
			k, err := fns[0](bufs, sizes, eps)
			if err != nil {
				return
			}
			n.handled.Add(uint64(k))
			for i := range k {
				if sizes[i] > 0 {
					n.rx <- received{data: append([]byte(nil), bufs[i][:sizes[i]]...), ep: eps[i]}
				}
			}
		}
	}()
	t.Cleanup(func() { n.b.Close(); <-done })
	return n
}

func (n *node) peer(name string, cands ...netip.AddrPort) Peer {
	return Peer{Name: name, OverlayIP: n.ip, PublicKey: n.key.PublicKey(), Candidates: cands}
}

// wgMessage returns a WireGuard-transport-like message of size bytes in a buffer with
// wireguard-go's spare capacity.
func wgMessage(size int, fill byte) []byte {
	b := make([]byte, size, 65535)
	for i := range b {
		b[i] = fill
	}
	b[0], b[1], b[2], b[3] = wgTransport, 0, 0, 0
	return b
}

func recvOne(t *testing.T, n *node) received {
	t.Helper()
	select {
	case r := <-n.rx:
		return r
	case <-time.After(2 * time.Second):
		t.Fatal("nothing received within 2s")
	}
	return received{}
}

func expectNothing(t *testing.T, n *node) {
	t.Helper()
	select {
	case r := <-n.rx:
		t.Fatalf("unexpected datagram of %d bytes", len(r.data))
	case <-time.After(50 * time.Millisecond):
	}
}

// settle waits until nothing is in flight among nodes on sw: every datagram sent has been
// handled by its receiver or lost by the switch, so every reply it caused is counted too.
// With ManualTick nothing more is sent until the test acts. The handled and lost counts
// are read before the sent count; all three only grow and sent >= handled+lost always,
// so equality means the network was idle when handled and lost were read and nothing was
// sent since.
func settle(t *testing.T, sw *membind.Switch, nodes ...*node) {
	t.Helper()
	waitFor(t, "no datagram in flight", func() bool {
		var done, sent uint64
		for _, n := range nodes {
			done += n.handled.Load()
		}
		done += sw.Lost()
		for _, n := range nodes {
			sent += n.f.sent.Load()
		}
		return sent == done
	})
}

// waitFor polls cond (bounded) while the pumps deliver what a Tick sent.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func pathOf(b *Bind, name string) api.PathStatus {
	for _, p := range b.Paths() {
		if p.Peer == name {
			return p
		}
	}
	return api.PathStatus{}
}

func randomTxid() (t [txidLen]byte) {
	rand.Read(t[:])
	return t
}
