package overlay

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/egw-project/egw/nat"
)

type readResult struct {
	pkts [][]byte
	n    int // what Read returned, counting packets of size 0
	err  error
}

// readAsync runs one Read with wireguard-shaped buffers and reports the packets, skipping
// those of size 0 as wireguard-go does.
func readAsync(w *Wrapper, batch int) <-chan readResult {
	ch := make(chan readResult, 1)
	go func() {
		bufs, sizes := wgBufs(batch)
		n, err := w.Read(bufs, sizes, wgOffset)
		r := readResult{n: n}
		for i := range n {
			if sizes[i] == 0 {
				continue
			}
			r.pkts = append(r.pkts, append([]byte(nil), bufs[i][wgOffset:wgOffset+sizes[i]]...))
		}
		r.err = err
		ch <- r
	}()
	return ch
}

func waitRead(t *testing.T, ch <-chan readResult) readResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return")
	}
	return readResult{}
}

func waitBatch(t *testing.T, ch <-chan [][]byte) [][]byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("nothing written to the TUN")
	}
	return nil
}

// wgWrite calls Write the way wireguard-go does: each packet at offset 16 in a 64 KiB
// buffer, sliced to the packet's end.
func wgWrite(t *testing.T, w *Wrapper, pkts ...[]byte) {
	t.Helper()
	bufs := make([][]byte, len(pkts))
	for i, p := range pkts {
		b := make([]byte, 65535)
		copy(b[wgOffset:], p)
		bufs[i] = b[:wgOffset+len(p)]
	}
	if _, err := w.Write(bufs, wgOffset); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

func TestWrapperReadBatch(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dsts       []byte // last octet of each packet's destination (see ruleTranslator)
		toOverlay  []byte // destinations returned by Read, in order
		toTUN      []string
		queued     []string // what the following Read returns (replies to the overlay)
		drops      uint64
		hairpin    uint64
		replyCount uint64
	}{
		{name: "all to overlay", dsts: []byte{1, 1, 1}, toOverlay: []byte{1, 1, 1}},
		{name: "drops removed", dsts: []byte{3, 1, 3, 1, 3}, toOverlay: []byte{1, 1}, drops: 3},
		{name: "hairpin to TUN", dsts: []byte{2, 1, 2}, toOverlay: []byte{1}, toTUN: []string{"p0", "p2"}, hairpin: 2},
		{name: "replies routed", dsts: []byte{4, 1, 5, 2}, toOverlay: []byte{1},
			toTUN: []string{replyMarker, "p3"}, queued: []string{replyMarker}, drops: 2, hairpin: 1, replyCount: 2},
		{name: "mixed", dsts: []byte{1, 2, 3, 4, 5, 1, 2, 3}, toOverlay: []byte{1, 1},
			toTUN: []string{"p1", replyMarker, "p6"}, queued: []string{replyMarker}, drops: 4, hairpin: 2, replyCount: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newBatchTUN(8)
			w := NewWrapper(dev, &ruleTranslator{}, nil)
			defer w.Close()
			var batch [][]byte
			for i, d := range tc.dsts {
				batch = append(batch, udp4(siteClient, addr(d), fmt.Sprintf("p%d", i)))
			}
			dev.in <- batch
			r := waitRead(t, readAsync(w, 8))
			if r.err != nil {
				t.Fatal(r.err)
			}
			if len(r.pkts) != len(tc.toOverlay) {
				t.Fatalf("Read returned %d packets, want %d", len(r.pkts), len(tc.toOverlay))
			}
			// Dropped and hairpinned packets keep their place with size 0.
			if r.n != len(tc.dsts) {
				t.Errorf("Read returned n = %d, want the whole batch (%d)", r.n, len(tc.dsts))
			}
			for i, p := range r.pkts {
				if dstOf(p) != addr(tc.toOverlay[i]) || srcOf(p) != translated {
					t.Errorf("packet %d: %v -> %v, want %v -> %v", i, srcOf(p), dstOf(p), translated, addr(tc.toOverlay[i]))
				}
			}
			if len(tc.toTUN) > 0 {
				got := waitBatch(t, dev.out)
				if len(got) != len(tc.toTUN) {
					t.Fatalf("TUN batch has %d packets, want %d", len(got), len(tc.toTUN))
				}
				for i, p := range got {
					if payloadOf(p) != tc.toTUN[i] {
						t.Errorf("TUN packet %d payload %q, want %q", i, payloadOf(p), tc.toTUN[i])
					}
				}
			}
			select {
			case b := <-dev.out:
				t.Fatalf("unexpected TUN write of %d packets", len(b))
			default:
			}
			if len(tc.queued) > 0 {
				r := waitRead(t, readAsync(w, 8))
				if len(r.pkts) != len(tc.queued) {
					t.Fatalf("second Read returned %d packets, want %d", len(r.pkts), len(tc.queued))
				}
				for i, p := range r.pkts {
					if payloadOf(p) != tc.queued[i] {
						t.Errorf("queued reply %d: %q", i, payloadOf(p))
					}
				}
			}
			st := w.Stats()
			if st.FromSitePackets != uint64(len(tc.dsts)) || st.Hairpin != tc.hairpin || st.Replies != tc.replyCount {
				t.Errorf("stats %+v", st)
			}
			if st.Drops[nat.ReasonOK.String()] != tc.drops {
				t.Errorf("drops %v, want %d", st.Drops, tc.drops)
			}
			if st.ToOverlayPackets != uint64(len(tc.toOverlay)+len(tc.queued)) {
				t.Errorf("ToOverlayPackets %d", st.ToOverlayPackets)
			}
		})
	}
}

func TestWrapperWrite(t *testing.T) {
	dev := newBatchTUN(8)
	w := NewWrapper(dev, &ruleTranslator{}, nil)
	defer w.Close()
	peer := addr(99)
	wgWrite(t, w,
		udp4(peer, addr(1), "to-site"),
		udp4(peer, addr(2), "relay"),
		udp4(peer, addr(3), "drop"),
		udp4(peer, addr(4), "reply-site"),
		udp4(peer, addr(5), "reply-overlay"),
		udp4(peer, addr(1), "to-site-2"),
	)
	got := waitBatch(t, dev.out)
	want := []string{"to-site", replyMarker, "to-site-2"}
	if len(got) != len(want) {
		t.Fatalf("TUN batch of %d, want %d", len(got), len(want))
	}
	for i, p := range got {
		if payloadOf(p) != want[i] {
			t.Errorf("TUN packet %d: %q want %q", i, payloadOf(p), want[i])
		}
	}
	if srcOf(got[0]) != translated {
		t.Errorf("ToSite packet not translated in place: src %v", srcOf(got[0]))
	}
	// The overlay-bound reply comes out of Read although the TUN has nothing to read; the
	// packet the Translator sent back into the overlay does not.
	r := waitRead(t, readAsync(w, 8))
	if len(r.pkts) != 1 || payloadOf(r.pkts[0]) != replyMarker || dstOf(r.pkts[0]) != peer {
		t.Fatalf("Read after Write: %d packets", len(r.pkts))
	}
	st := w.Stats()
	if st.QueuedReplies != 1 || st.FromOverlayPackets != 6 || st.ToSitePackets != 3 || st.Drops[DropOverlayToOverlay] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestWrapperReplyWakesRead: a Read blocked on an idle TUN returns the overlay-bound reply
// to a packet WireGuard handed to Write, with both reader designs.
func TestWrapperReplyWakesRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  func(t *testing.T) *Wrapper
		pump bool
	}{
		{"deadline (pollable TUN)", func(t *testing.T) *Wrapper { return NewWrapper(newSeqTUN(t), &ruleTranslator{}, nil) }, false},
		{"pump (channel TUN)", func(t *testing.T) *Wrapper {
			return NewWrapper(tuntest.NewChannelTUN().TUN(), &ruleTranslator{}, nil)
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.dev(t)
			defer w.Close()
			if _, isPump := w.src.(*pumpSource); isPump != tc.pump {
				t.Fatalf("reader is %T", w.src)
			}
			for i := range 50 {
				ch := readAsync(w, 1)
				if i%2 == 0 {
					time.Sleep(time.Millisecond) // let Read block in the TUN first (sometimes)
				}
				from := addr(byte(100 + i))
				wgWrite(t, w, udp4(from, addr(5), fmt.Sprintf("reply-to-%d", i)))
				r := waitRead(t, ch)
				if r.err != nil || len(r.pkts) != 1 || payloadOf(r.pkts[0]) != replyMarker || dstOf(r.pkts[0]) != from {
					t.Fatalf("round %d: %v, %d packets", i, r.err, len(r.pkts))
				}
			}
		})
	}
}

// TestWrapperDeadlinePathReadsTUN: with a pollable TUN, a kicked Read goes back to
// reading the TUN and still gets site packets; hairpins go back out.
func TestWrapperDeadlinePathReadsTUN(t *testing.T) {
	s := newSeqTUN(t)
	w := NewWrapper(s, &ruleTranslator{}, nil)
	defer w.Close()
	wgWrite(t, w, udp4(addr(99), addr(5), "reply-overlay"))
	if r := waitRead(t, readAsync(w, 1)); len(r.pkts) != 1 {
		t.Fatal("reply not read")
	}
	ch := readAsync(w, 1)
	if _, err := s.peer.Write(udp4(siteClient, addr(2), "hairpin")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.peer.Write(udp4(siteClient, addr(1), "out")); err != nil {
		t.Fatal(err)
	}
	r := waitRead(t, ch)
	if len(r.pkts) != 1 || payloadOf(r.pkts[0]) != "out" {
		t.Fatalf("got %d packets", len(r.pkts))
	}
	buf := make([]byte, 2000)
	s.peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.peer.Read(buf)
	if err != nil || payloadOf(buf[:n]) != "hairpin" {
		t.Fatalf("hairpin: %v %q", err, buf[:n])
	}
}

func TestWrapperReplyQueueFull(t *testing.T) {
	dev := newBatchTUN(1)
	w := NewWrapper(dev, &ruleTranslator{}, nil)
	defer w.Close()
	p := udp4(addr(99), addr(5), "reply-overlay")
	for range ReplyQueueSlots + 10 {
		wgWrite(t, w, p)
	}
	if st := w.Stats(); st.Drops[DropReplyQueueFull] != 10 || st.QueuedReplies != ReplyQueueSlots {
		t.Fatalf("stats %+v", st)
	}
	bufs, sizes := wgBufs(128)
	total := 0
	for total < ReplyQueueSlots {
		n, err := w.Read(bufs, sizes, wgOffset)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
}

func TestWrapperCloseUnblocksRead(t *testing.T) {
	for _, pump := range []bool{false, true} {
		t.Run(fmt.Sprintf("pump=%v", pump), func(t *testing.T) {
			var w *Wrapper
			if pump {
				w = NewWrapper(newBatchTUN(4), nil, nil)
			} else {
				w = NewWrapper(newSeqTUN(t), nil, nil)
			}
			ch := readAsync(w, 4)
			time.Sleep(5 * time.Millisecond)
			w.Close()
			r := waitRead(t, ch)
			if !errors.Is(r.err, os.ErrClosed) {
				t.Fatalf("Read after Close: %v", r.err)
			}
			if err := w.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
		})
	}
}

// TestWrapperNoAllocs: a steady state of Read (with drops, hairpins, replies) and Write
// (with drops and replies) allocates nothing.
func TestWrapperNoAllocs(t *testing.T) {
	s := newSeqTUN(t)
	w := NewWrapper(s, &ruleTranslator{}, nil)
	defer w.Close()
	bufs, sizes := wgBufs(1)
	// Read 1: out. Read 2: hair, drop, rs consumed; ro's reply popped. Read 3: c2.
	site := [][]byte{
		udp4(siteClient, addr(1), "out"), udp4(siteClient, addr(2), "hair"),
		udp4(siteClient, addr(3), "drop"), udp4(siteClient, addr(4), "rs"),
		udp4(siteClient, addr(5), "ro"), udp4(siteClient, addr(1), "c2"),
	}
	// Then Write (the packet to .2 is dropped: nothing decrypted goes back into the
	// overlay); Reads 4 and 5: the replies to ro and to ro2.
	wbufs := make([][]byte, 5)
	for i, p := range [][]byte{
		udp4(addr(99), addr(1), "in"), udp4(addr(99), addr(2), "back"),
		udp4(addr(99), addr(4), "rs"), udp4(addr(99), addr(5), "ro"),
		udp4(addr(98), addr(5), "ro2"),
	} {
		b := make([]byte, 65535)
		copy(b[wgOffset:], p)
		wbufs[i] = b[:wgOffset+len(p)]
	}
	drain := make([]byte, 65535)
	got := make([]byte, 0, 8) // first payload byte of each packet Read returned
	read := func() {
		if n, _ := w.Read(bufs, sizes, wgOffset); n == 1 {
			got = append(got, bufs[0][wgOffset+28])
		}
	}
	cycle := func() {
		got = got[:0]
		for _, p := range site {
			s.peer.Write(p)
		}
		read()
		read()
		read()
		w.Write(wbufs, wgOffset)
		read()
		read()
		// The TUN got hair and rs's reply (Read), in and rs's reply (Write).
		for range 4 {
			s.peer.Read(drain)
		}
	}
	cycle()
	if string(got) != "oicii" { // out, icmp-reply, c2, icmp-reply, icmp-reply
		t.Fatalf("cycle read %q", got)
	}
	if a := testing.AllocsPerRun(50, cycle); a != 0 {
		t.Fatalf("%.1f allocations per cycle of 11 packets, want 0", a)
	}
	// (A Write that wakes a Read blocked in the TUN costs the os package's deadline
	// error value: one allocation per wake-up, not per packet.)
}

// TestWrapperFairness: while the reply queue never runs dry (a peer flooding packets that
// each get a reply), site packets still get through.
func TestWrapperFairness(t *testing.T) {
	for _, pump := range []bool{false, true} {
		t.Run(fmt.Sprintf("pump=%v", pump), func(t *testing.T) {
			var w *Wrapper
			var toSite func(p []byte)
			if pump {
				dev := newBatchTUN(1)
				w = NewWrapper(dev, &ruleTranslator{}, nil)
				toSite = func(p []byte) { dev.in <- [][]byte{p} }
			} else {
				s := newSeqTUN(t)
				w = NewWrapper(s, &ruleTranslator{}, nil)
				toSite = func(p []byte) { s.peer.Write(p) }
			}
			defer w.Close()
			flood := udp4(addr(99), addr(5), "reply-overlay")
			for range 100 {
				wgWrite(t, w, flood)
			}
			toSite(udp4(siteClient, addr(1), "site"))
			time.Sleep(10 * time.Millisecond) // let the pump pick it up
			bufs, sizes := wgBufs(4)
			for i := range 20 {
				n, err := w.Read(bufs, sizes, wgOffset)
				if err != nil {
					t.Fatal(err)
				}
				for j := range n {
					if payloadOf(bufs[j][wgOffset:wgOffset+sizes[j]]) == "site" {
						if i > fairStreak {
							t.Fatalf("site packet came after %d Reads", i+1)
						}
						return
					}
				}
			}
			t.Fatal("site packet starved by the reply queue")
		})
	}
}
