package overlay

// The walk through the Translator: Read (site → overlay) and Write (overlay → site), with
// their scratch state. See wrapper.go for the whole seam.

import (
	"errors"
	"os"
	"time"

	"github.com/egw-project/egw/nat"
)

// Read implements tun.Device: see the walk at the top of wrapper.go.
func (w *Wrapper) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	w.readMu.Lock()
	defer w.readMu.Unlock()
	for {
		// Fairness: after fairStreak batches in a row from the reply queue, look at the
		// TUN without blocking, so the site is not starved.
		if w.streak >= fairStreak && w.queue.count.Load() > 0 {
			w.streak = 0
			n, err := w.src.tryRead(bufs, sizes, offset)
			if n > 0 && w.fromSite(bufs[:n], sizes, offset) == 0 {
				n = 0
			}
			if err != nil || n > 0 {
				return n, err
			}
		}
		if n := w.popReplies(bufs, sizes, offset); n > 0 {
			// A wake-up still pending is for packets we just took: cancel it rather
			// than have the next TUN read interrupted for nothing.
			w.src.settle()
			w.streak++
			return n, nil
		}
		w.streak = 0
		select {
		case <-w.done:
			return 0, os.ErrClosed
		default:
		}
		n, err := w.src.read(bufs, sizes, offset)
		if err == errKicked {
			err = nil
			if n == 0 {
				continue
			}
		}
		if n > 0 && w.fromSite(bufs[:n], sizes, offset) == 0 {
			n = 0
		}
		if err != nil || n > 0 {
			return n, err
		}
		// The whole batch was dropped or hairpinned: read again.
	}
}

func (w *Wrapper) popReplies(bufs [][]byte, sizes []int, offset int) int {
	n, bytes, tooBig := w.queue.pop(bufs, sizes, offset)
	if tooBig > 0 {
		w.stats.tooBig.Add(uint64(tooBig))
	}
	if n > 0 {
		w.stats.toOverlayPkts.Add(uint64(n))
		w.stats.toOverlayBytes.Add(uint64(bytes))
	}
	return n
}

// readScratch is owned by the goroutine holding readMu.
type readScratch struct {
	hair    [][]byte // batch written back to the TUN: hairpins and ToSite replies
	replies [][]byte // reply slots, grown on demand and kept
	nreply  int      // reply slots in use by hair
}

// replySlot returns a free reply slot of offset+ReplyBufferSize bytes.
func replySlot(slots *[][]byte, used int, offset int) []byte {
	need := offset + ReplyBufferSize
	if used == len(*slots) {
		*slots = append(*slots, make([]byte, need))
	}
	s := (*slots)[used]
	if len(s) < need {
		s = make([]byte, need)
		(*slots)[used] = s
	}
	return s
}

// fromSite translates a batch read from the TUN in place and writes hairpins and
// site-bound replies back to the TUN. Packets that do not go to WireGuard (dropped,
// hairpinned) get size 0, which wireguard-go skips; their buffers are left as they are, so
// the hairpin batch may point into them. It returns how many packets go to WireGuard.
// Must hold w.readMu.
func (w *Wrapper) fromSite(bufs [][]byte, sizes []int, offset int) int {
	rs := &w.rs
	rs.hair = rs.hair[:0]
	rs.nreply = 0
	var inBytes, outBytes, out, hairpins, queued, replies uint64
	for i := range bufs {
		pkt := bufs[i][offset : offset+sizes[i]]
		inBytes += uint64(len(pkt))
		reply := replySlot(&rs.replies, rs.nreply, offset)
		res := w.tr.FromSite(pkt, reply[offset:offset+ReplyBufferSize])
		switch res.Action {
		case nat.ToOverlay:
			out++
			outBytes += uint64(len(pkt))
		case nat.ToSite:
			rs.hair = append(rs.hair, bufs[i][:offset+sizes[i]])
			hairpins++
			sizes[i] = 0
		default:
			w.countDrop(res.Reason)
			sizes[i] = 0
		}
		if res.ReplyLen > 0 {
			replies++
			slotUsed, q := w.routeReply(res, reply, offset, &rs.hair)
			if slotUsed {
				rs.nreply++
			}
			if q {
				queued++
			}
		}
	}
	w.stats.fromSitePkts.Add(uint64(len(bufs)))
	w.stats.fromSiteBytes.Add(inBytes)
	if hairpins > 0 {
		w.stats.hairpin.Add(hairpins)
	}
	if replies > 0 {
		w.stats.replies.Add(replies)
	}
	if queued > 0 {
		// No wake-up: Read looks at the reply queue before it reads the TUN again.
		w.stats.queuedReplies.Add(queued)
	}
	if len(rs.hair) > 0 {
		w.writeSite(rs.hair, offset)
		clear(rs.hair)
	}
	if out > 0 {
		w.stats.toOverlayPkts.Add(out)
		w.stats.toOverlayBytes.Add(outBytes)
	}
	return int(out)
}

// routeReply sends an engine-generated reply where res.ReplyAction says: appended to toSite
// (slotUsed: the reply slot must not be reused until that batch is written) or copied into
// the reply queue (queued; the caller counts it and wakes the reader when it is not the
// reader).
func (w *Wrapper) routeReply(res nat.Result, slot []byte, offset int, toSite *[][]byte) (slotUsed, queued bool) {
	if res.ReplyLen > ReplyBufferSize {
		w.stats.replyLen.Add(1)
		return false, false
	}
	switch res.ReplyAction {
	case nat.ToSite:
		*toSite = append(*toSite, slot[:offset+res.ReplyLen])
		return true, false
	case nat.ToOverlay:
		if w.queue.push(slot[offset : offset+res.ReplyLen]) {
			return false, true
		}
		w.stats.replyQueueFull.Add(1)
	}
	return false, false
}

// writeSite writes a batch to the TUN, counting it.
func (w *Wrapper) writeSite(bufs [][]byte, offset int) error {
	var bytes uint64
	for _, b := range bufs {
		bytes += uint64(len(b) - offset)
	}
	_, err := w.dev.Write(bufs, offset)
	if err != nil {
		w.stats.tunWrite.Add(uint64(len(bufs)))
		w.logTUNError(err)
		return err
	}
	w.stats.toSitePkts.Add(uint64(len(bufs)))
	w.stats.toSiteBytes.Add(bytes)
	return nil
}

func (w *Wrapper) logTUNError(err error) {
	now := w.now().UnixNano()
	last := w.lastErrLog.Load()
	if now-last < int64(10*time.Second) || !w.lastErrLog.CompareAndSwap(last, now) {
		return
	}
	select {
	case <-w.done:
		return
	default:
	}
	w.log.Warn("overlay: TUN write failed", "err", err)
}

// writeScratch is one Write call's scratch state.
type writeScratch struct {
	out     [][]byte
	replies [][]byte
}

func (w *Wrapper) getScratch() *writeScratch {
	w.scratchMu.Lock()
	defer w.scratchMu.Unlock()
	if n := len(w.freeScratch); n > 0 {
		ws := w.freeScratch[n-1]
		w.freeScratch = w.freeScratch[:n-1]
		return ws
	}
	return &writeScratch{}
}

func (w *Wrapper) putScratch(ws *writeScratch) {
	clear(ws.out) // keep no reference to WireGuard's buffers
	ws.out = ws.out[:0]
	w.scratchMu.Lock()
	w.freeScratch = append(w.freeScratch, ws)
	w.scratchMu.Unlock()
}

// Write implements tun.Device: see the walk at the top of wrapper.go. bufs[i][offset:]
// is one decrypted packet.
func (w *Wrapper) Write(bufs [][]byte, offset int) (int, error) {
	ws := w.getScratch()
	defer w.putScratch(ws)
	nreply := 0
	var inBytes, queued, replies uint64
	for _, b := range bufs {
		if len(b) <= offset {
			continue
		}
		pkt := b[offset:]
		inBytes += uint64(len(pkt))
		reply := replySlot(&ws.replies, nreply, offset)
		res := w.tr.FromOverlay(pkt, reply[offset:offset+ReplyBufferSize])
		switch res.Action {
		case nat.ToSite:
			ws.out = append(ws.out, b)
		case nat.ToOverlay:
			// Nothing decrypted here is sent back into the overlay (see wrapper.go).
			w.stats.overlayToOverlay.Add(1)
		default:
			w.countDrop(res.Reason)
		}
		if res.ReplyLen > 0 {
			replies++
			slotUsed, q := w.routeReply(res, reply, offset, &ws.out)
			if slotUsed {
				nreply++
			}
			if q {
				queued++
			}
		}
	}
	w.stats.fromOverlayPkts.Add(uint64(len(bufs)))
	w.stats.fromOverlayBytes.Add(inBytes)
	if replies > 0 {
		w.stats.replies.Add(replies)
	}
	if queued > 0 {
		w.stats.queuedReplies.Add(queued)
		w.src.kick()
	}
	if len(ws.out) > 0 {
		// A failed TUN write is counted and logged (rate-limited) by writeSite; only a
		// closed device is reported, so wireguard-go does not log every failed batch.
		if err := w.writeSite(ws.out, offset); errors.Is(err, os.ErrClosed) {
			return 0, err
		}
	}
	return len(bufs), nil
}
