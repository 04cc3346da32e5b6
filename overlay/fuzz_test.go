package overlay

import (
	"testing"

	"github.com/egw-project/egw/nat"
)

// scripted is an engine whose verdicts come from a byte script (fuzz input), including
// nonsense: unknown actions, reply lengths beyond the buffer.
type scripted struct {
	script []byte
	i      int
}

func (s *scripted) next() byte {
	if len(s.script) == 0 {
		return 0
	}
	b := s.script[s.i%len(s.script)]
	s.i++
	return b
}

func (s *scripted) verdict(pkt, reply []byte) nat.Result {
	b := s.next()
	r := nat.Result{Action: nat.Action(b % 5), Reason: nat.Reason(b >> 4)}
	if b&0x08 != 0 {
		r.ReplyLen = int(s.next()) * 8 // up to 2040: sometimes longer than the buffer
		r.ReplyAction = nat.Action(s.next() % 4)
		copy(reply, pkt)
	}
	return r
}

func (s *scripted) FromSite(pkt, reply []byte) nat.Result    { return s.verdict(pkt, reply) }
func (s *scripted) FromOverlay(pkt, reply []byte) nat.Result { return s.verdict(pkt, reply) }

// FuzzWrapper: whatever the packets and whatever the engine answers, the seam neither
// panics nor loses count: every packet read from the site is accounted for.
func FuzzWrapper(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 20}, []byte{1, 2, 3, 0x0c, 10, 1})
	f.Add(udp4(siteClient, addr(1), "x"), []byte{0xff, 0x08, 0xff, 2})
	f.Fuzz(func(t *testing.T, data, script []byte) {
		dev := newBatchTUN(8)
		w := NewWrapper(dev, &scripted{script: script}, nil)
		defer w.Close()
		go func() { // drain TUN writes
			for {
				select {
				case <-dev.out:
				case <-dev.closed:
					return
				}
			}
		}()
		bufs, sizes := wgBufs(8)
		n := 0
		for len(data) > 0 && n < len(bufs) {
			l := min(int(data[0])+1, len(data))
			sizes[n] = copy(bufs[n][wgOffset:], data[:l])
			data = data[l:]
			n++
		}
		w.readMu.Lock()
		out := w.fromSite(bufs[:n], sizes, wgOffset)
		w.readMu.Unlock()
		if out < 0 || out > n {
			t.Fatalf("fromSite returned %d of %d", out, n)
		}
		if st := w.Stats(); st.FromSitePackets != uint64(n) || st.ToOverlayPackets != uint64(out) {
			t.Fatalf("read %d, returned %d; stats %+v", n, out, st)
		}
		wb := make([][]byte, n)
		for i := range n {
			wb[i] = bufs[i][:wgOffset+sizes[i]]
		}
		w.Write(wb, wgOffset)
		w.queue.pop(bufs, sizes, wgOffset)
	})
}
