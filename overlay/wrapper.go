package overlay

// The seam between the NAT engine and WireGuard (DESIGN.md §5). A packet's walk:
//
//  1. Site → overlay. wireguard-go's TUN reader goroutine calls Wrapper.Read. Re-queued
//     packets (step 2) are returned first. Otherwise a batch is read from the real TUN
//     straight into WireGuard's buffers at its offset, and each packet is translated in
//     place by Translator.FromSite: ToOverlay packets stay in the batch (compacted to its
//     front), ToSite packets (same-site hairpin) are written back to the TUN in one batch,
//     drops are counted by reason.
//  2. Overlay → site. wireguard-go's per-peer receive goroutines call Wrapper.Write with
//     decrypted packets. Each is translated by Translator.FromOverlay: ToSite packets are
//     written to the TUN in one batch, ToOverlay packets (the hub relaying to another
//     gateway) are copied into the re-queue and the reader is woken so its next Read
//     returns them.
//  3. ICMP replies the engine wrote go to the TUN (batched with the step's TUN writes) or
//     into the re-queue, as Result.ReplyAction says.
//
// Waking the reader. Read must not sit blocked in the TUN's read while re-queued packets
// wait. When the TUN is a pollable file (both real drivers are) the reader blocks in the
// TUN read itself, in WireGuard's goroutine and buffers — no extra copy, no goroutine hop —
// and Write interrupts that read by setting a read deadline in the past (deadlineSource).
// For devices without a pollable file (test doubles such as tuntest.ChannelTUN) a pump
// goroutine reads into its own buffers and Read selects between it and the re-queue, as
// Tailscale's tstun.Wrapper does (pumpSource). BenchmarkRequeueWake compares the two.
// Re-queued packets go first, but after fairStreak such batches in a row Read looks at
// the TUN without blocking, so a hub relaying at full speed does not starve its own site.

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/egw-project/egw/nat"
)

const (
	// ReplyBufferSize is the length of the reply buffer handed to the Translator; an ICMP
	// error of RFC 1812's 576 bytes fits with room to spare.
	ReplyBufferSize = 1500
	// RequeueSlots is how many relayed packets may wait for WireGuard's next Read.
	RequeueSlots = 1024
	// maxPacket is the largest IP packet a buffer may have to hold.
	maxPacket = 65535
	// fairStreak: after this many Reads in a row served from the re-queue, Read looks at
	// the TUN (without blocking for more than pollWindow) before the re-queue again.
	fairStreak = 4
	pollWindow = 50 * time.Microsecond
)

// Wrapper drop reasons beyond the engine's (the engine's nat.Reason counters are kept too).
const (
	DropRequeueFull = "requeue-full"  // relay queue full
	DropTooBig      = "too-big"       // re-queued packet larger than WireGuard's buffer
	DropReplyLen    = "bad-reply-len" // engine claimed a reply longer than the buffer
	DropTUNWrite    = "tun-write"     // the TUN refused a write (counted per batch packet)
)

var errKicked = errors.New("overlay: TUN read interrupted for re-queued packets")

// Wrapper is a tun.Device around the real TUN that runs the Translator between it and
// WireGuard. It is safe for the concurrent use wireguard-go makes of a tun.Device: one
// reader, several writers.
type Wrapper struct {
	dev tun.Device
	src siteSource
	tr  atomic.Pointer[translatorBox]
	log *slog.Logger
	now func() time.Time

	queue requeue

	readMu sync.Mutex  // serialises Read; guards rs and streak
	rs     readScratch // Read's scratch: reply buffers, hairpin batch, actions
	streak int         // Reads in a row served from the re-queue

	scratchMu   sync.Mutex      // guards freeScratch
	freeScratch []*writeScratch // Write's scratch, one per concurrent writer

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	lastErrLog atomic.Int64 // unix nanos of the last logged TUN write error

	stats wrapperCounters
}

type translatorBox struct{ Translator }

type wrapperCounters struct {
	fromSitePkts, fromSiteBytes       atomic.Uint64
	toOverlayPkts, toOverlayBytes     atomic.Uint64
	fromOverlayPkts, fromOverlayBytes atomic.Uint64
	toSitePkts, toSiteBytes           atomic.Uint64
	hairpin, requeued, local, replies atomic.Uint64
	natDrops                          [nat.NumReasons]atomic.Uint64
	requeueFull, tooBig, replyLen     atomic.Uint64
	tunWrite                          atomic.Uint64
}

// WrapperStats is a snapshot of the Wrapper's counters.
type WrapperStats struct {
	FromSitePackets, FromSiteBytes       uint64 // read from the TUN
	ToOverlayPackets, ToOverlayBytes     uint64 // handed to WireGuard (incl. relayed, control)
	FromOverlayPackets, FromOverlayBytes uint64 // delivered by WireGuard
	ToSitePackets, ToSiteBytes           uint64 // written to the TUN (incl. hairpin, replies)
	Hairpin                              uint64 // site packets written back to the site
	Requeued                             uint64 // overlay packets relayed back to WireGuard
	Replies                              uint64 // ICMP replies the engine generated
	// Drops counts dropped packets by reason: the engine's nat.Reason names plus the
	// Drop* constants of this package. Only non-zero reasons are present.
	Drops map[string]uint64
}

// NewWrapper wraps dev. tr may be nil (DropAll). logger may be nil.
func NewWrapper(dev tun.Device, tr Translator, logger *slog.Logger) *Wrapper {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Wrapper{
		dev:  dev,
		log:  logger,
		now:  time.Now,
		done: make(chan struct{}),
	}
	w.queue.init(RequeueSlots)
	w.SetTranslator(tr)
	if f := dev.File(); f != nil && f.SetReadDeadline(time.Time{}) == nil {
		w.src = &deadlineSource{dev: dev, f: f}
	} else {
		w.src = newPumpSource(dev, w.done)
	}
	return w
}

// SetTranslator swaps the translator used for the next packets. nil means DropAll.
func (w *Wrapper) SetTranslator(tr Translator) {
	if tr == nil {
		tr = DropAll{}
	}
	w.tr.Store(&translatorBox{tr})
}

// Read implements tun.Device: see the walk at the top of this file.
func (w *Wrapper) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	w.readMu.Lock()
	defer w.readMu.Unlock()
	for {
		// Fairness: after fairStreak batches in a row from the re-queue (a hub relaying
		// at full speed), look at the TUN without blocking, so the site is not starved.
		if w.streak >= fairStreak && w.queue.count.Load() > 0 {
			w.streak = 0
			n, err := w.src.tryRead(bufs, sizes, offset)
			if n > 0 {
				n = w.fromSite(bufs[:n], sizes, offset)
			}
			if err != nil || n > 0 {
				return n, err
			}
		}
		if n := w.popRequeued(bufs, sizes, offset); n > 0 {
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
		if n > 0 {
			n = w.fromSite(bufs[:n], sizes, offset)
		}
		if err != nil || n > 0 {
			return n, err
		}
		// The whole batch was dropped or hairpinned: read again.
	}
}

func (w *Wrapper) popRequeued(bufs [][]byte, sizes []int, offset int) int {
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
	acts    []nat.Action
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

// fromSite translates a batch read from the TUN in place, writes hairpins and site-bound
// replies back to the TUN, and compacts the ToOverlay packets to the front of bufs.
// Must hold w.readMu.
func (w *Wrapper) fromSite(bufs [][]byte, sizes []int, offset int) int {
	tr := w.tr.Load().Translator
	rs := &w.rs
	if cap(rs.acts) < len(bufs) {
		rs.acts = make([]nat.Action, len(bufs))
	}
	acts := rs.acts[:len(bufs)]
	rs.hair = rs.hair[:0]
	rs.nreply = 0
	var inBytes, hairpins, replies uint64
	for i := range bufs {
		pkt := bufs[i][offset : offset+sizes[i]]
		inBytes += uint64(len(pkt))
		reply := replySlot(&rs.replies, rs.nreply, offset)
		res := tr.FromSite(pkt, reply[offset:offset+ReplyBufferSize])
		acts[i] = res.Action
		switch res.Action {
		case nat.ToOverlay:
		case nat.ToSite:
			rs.hair = append(rs.hair, bufs[i][:offset+sizes[i]])
			hairpins++
		default:
			acts[i] = nat.Drop
			w.countDrop(res.Reason)
		}
		if res.ReplyLen > 0 {
			replies++
			if w.routeReply(res, reply, offset, &rs.hair, false) {
				rs.nreply++
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
	if len(rs.hair) > 0 {
		// Before compaction: compaction may overwrite a hairpin's buffer.
		w.writeSite(rs.hair, offset)
		clear(rs.hair)
	}
	out := 0
	var outBytes uint64
	for i := range bufs {
		if acts[i] != nat.ToOverlay {
			continue
		}
		if out != i {
			copy(bufs[out][offset:], bufs[i][offset:offset+sizes[i]])
			sizes[out] = sizes[i]
		}
		outBytes += uint64(sizes[out])
		out++
	}
	if out > 0 {
		w.stats.toOverlayPkts.Add(uint64(out))
		w.stats.toOverlayBytes.Add(outBytes)
	}
	return out
}

// routeReply sends an engine-generated reply where res.ReplyAction says. It returns true
// when the reply slot was appended to toSite and must not be reused until that batch is
// written. kick wakes the reader for a re-queued reply (not needed from Read itself,
// which looks at the re-queue before it reads the TUN again).
func (w *Wrapper) routeReply(res nat.Result, slot []byte, offset int, toSite *[][]byte, kick bool) bool {
	if res.ReplyLen > ReplyBufferSize {
		w.stats.replyLen.Add(1)
		return false
	}
	switch res.ReplyAction {
	case nat.ToSite:
		*toSite = append(*toSite, slot[:offset+res.ReplyLen])
		return true
	case nat.ToOverlay:
		if w.queue.push(slot[offset : offset+res.ReplyLen]) {
			w.stats.requeued.Add(1)
			if kick {
				w.src.kick()
			}
		} else {
			w.stats.requeueFull.Add(1)
		}
	}
	return false
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

// Write implements tun.Device: see the walk at the top of this file. bufs[i][offset:]
// is one decrypted packet.
func (w *Wrapper) Write(bufs [][]byte, offset int) (int, error) {
	tr := w.tr.Load().Translator
	ws := w.getScratch()
	defer w.putScratch(ws)
	nreply := 0
	var inBytes, requeued, replies uint64
	for _, b := range bufs {
		if len(b) <= offset {
			continue
		}
		pkt := b[offset:]
		inBytes += uint64(len(pkt))
		reply := replySlot(&ws.replies, nreply, offset)
		res := tr.FromOverlay(pkt, reply[offset:offset+ReplyBufferSize])
		switch res.Action {
		case nat.ToSite:
			ws.out = append(ws.out, b)
		case nat.ToOverlay:
			if w.queue.push(pkt) {
				requeued++
			} else {
				w.stats.requeueFull.Add(1)
			}
		default:
			w.countDrop(res.Reason)
		}
		if res.ReplyLen > 0 {
			replies++
			if res.ReplyAction == nat.ToOverlay && res.ReplyLen <= ReplyBufferSize {
				if w.queue.push(reply[offset : offset+res.ReplyLen]) {
					requeued++
				} else {
					w.stats.requeueFull.Add(1)
				}
			} else if w.routeReply(res, reply, offset, &ws.out, true) {
				nreply++
			}
		}
	}
	w.stats.fromOverlayPkts.Add(uint64(len(bufs)))
	w.stats.fromOverlayBytes.Add(inBytes)
	if replies > 0 {
		w.stats.replies.Add(replies)
	}
	if requeued > 0 {
		w.stats.requeued.Add(requeued)
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

func (w *Wrapper) countDrop(r nat.Reason) {
	if r < nat.NumReasons {
		w.stats.natDrops[r].Add(1)
	} else {
		w.stats.natDrops[nat.ReasonOK].Add(1) // an engine bug; still counted
	}
}

// Stats returns a snapshot of the counters.
func (w *Wrapper) Stats() WrapperStats {
	s := &w.stats
	st := WrapperStats{
		FromSitePackets:    s.fromSitePkts.Load(),
		FromSiteBytes:      s.fromSiteBytes.Load(),
		ToOverlayPackets:   s.toOverlayPkts.Load(),
		ToOverlayBytes:     s.toOverlayBytes.Load(),
		FromOverlayPackets: s.fromOverlayPkts.Load(),
		FromOverlayBytes:   s.fromOverlayBytes.Load(),
		ToSitePackets:      s.toSitePkts.Load(),
		ToSiteBytes:        s.toSiteBytes.Load(),
		Hairpin:            s.hairpin.Load(),
		Requeued:           s.requeued.Load(),
		Replies:            s.replies.Load(),
		Drops:              map[string]uint64{},
	}
	for r := range s.natDrops {
		if v := s.natDrops[r].Load(); v > 0 {
			st.Drops[nat.Reason(r).String()] += v
		}
	}
	for name, c := range map[string]*atomic.Uint64{
		DropRequeueFull: &s.requeueFull, DropTooBig: &s.tooBig,
		DropReplyLen: &s.replyLen, DropTUNWrite: &s.tunWrite,
	} {
		if v := c.Load(); v > 0 {
			st.Drops[name] = v
		}
	}
	return st
}

// File implements tun.Device.
func (w *Wrapper) File() *os.File { return w.dev.File() }

// MTU implements tun.Device.
func (w *Wrapper) MTU() (int, error) { return w.dev.MTU() }

// Name implements tun.Device.
func (w *Wrapper) Name() (string, error) { return w.dev.Name() }

// Events implements tun.Device.
func (w *Wrapper) Events() <-chan tun.Event { return w.dev.Events() }

// BatchSize implements tun.Device.
func (w *Wrapper) BatchSize() int { return w.dev.BatchSize() }

// Close closes the wrapped TUN and wakes a blocked Read. It is idempotent.
func (w *Wrapper) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		w.closeErr = w.dev.Close()
		w.src.kick()
	})
	return w.closeErr
}

// siteSource reads batches from the TUN on behalf of Read and can be woken by kick.
type siteSource interface {
	// read reads a batch like tun.Device.Read, or returns errKicked after kick.
	read(bufs [][]byte, sizes []int, offset int) (int, error)
	// kick makes a blocked or the next read return errKicked. Safe from any goroutine.
	kick()
	// tryRead reads a batch only if one is there (or arrives within pollWindow);
	// else it returns 0, nil. It cancels a pending kick (the caller looks at the
	// re-queue afterwards).
	tryRead(bufs [][]byte, sizes []int, offset int) (int, error)
	// settle cancels a pending kick. Only the reader calls it, and must look at the
	// re-queue afterwards (before its next read).
	settle()
}

// aLongTimeAgo is a deadline in the past: it interrupts a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// deadlineSource reads the TUN in the caller's goroutine and buffers; kick interrupts the
// read with a past read deadline on the TUN's file.
type deadlineSource struct {
	dev    tun.Device
	f      *os.File
	kicked atomic.Bool // a past deadline is set (or about to be) and not yet consumed
}

func (s *deadlineSource) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	n, err := s.dev.Read(bufs, sizes, offset)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// Clear the deadline before the flag: a kick can set a new deadline only after
		// the flag is false, hence after this clear, so no kick is lost; the caller looks
		// at the re-queue after we return, so nothing pushed before the clear is missed.
		_ = s.f.SetReadDeadline(time.Time{})
		s.kicked.Store(false)
		return n, errKicked
	}
	return n, err
}

func (s *deadlineSource) tryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	_ = s.f.SetReadDeadline(time.Now().Add(pollWindow))
	n, err := s.dev.Read(bufs, sizes, offset)
	_ = s.f.SetReadDeadline(time.Time{}) // same order as in read
	s.kicked.Store(false)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, nil
	}
	return n, err
}

func (s *deadlineSource) settle() {
	if s.kicked.Load() {
		_ = s.f.SetReadDeadline(time.Time{}) // same order as in read
		s.kicked.Store(false)
	}
}

func (s *deadlineSource) kick() {
	if s.kicked.CompareAndSwap(false, true) {
		_ = s.f.SetReadDeadline(aLongTimeAgo)
	}
}

// pumpSource reads the TUN in its own goroutine into its own buffers; read copies a
// batch into the caller's buffers or returns errKicked. Used for devices without a
// pollable file.
type pumpSource struct {
	ready chan *pumpBatch // read by the pump, waiting to be consumed
	free  chan *pumpBatch // consumed, for the pump to refill
	kickc chan struct{}
	done  <-chan struct{}
	cur   *pumpBatch // partly consumed batch; owned by the reader (Wrapper.readMu)
}

type pumpBatch struct {
	bufs  [][]byte
	sizes []int
	n     int // packets in the batch
	next  int // first packet not yet handed out
	err   error
}

func newPumpSource(dev tun.Device, done <-chan struct{}) *pumpSource {
	const sets = 2
	s := &pumpSource{
		ready: make(chan *pumpBatch, sets),
		free:  make(chan *pumpBatch, sets),
		kickc: make(chan struct{}, 1),
		done:  done,
	}
	bs := max(dev.BatchSize(), 1)
	for range sets {
		b := &pumpBatch{bufs: make([][]byte, bs), sizes: make([]int, bs)}
		for i := range b.bufs {
			b.bufs[i] = make([]byte, maxPacket)
		}
		s.free <- b
	}
	go s.pump(dev)
	return s
}

func (s *pumpSource) pump(dev tun.Device) {
	for {
		var b *pumpBatch
		select {
		case b = <-s.free:
		case <-s.done:
			return
		}
		b.n, b.err = dev.Read(b.bufs, b.sizes, 0)
		b.next = 0
		select {
		case s.ready <- b:
		case <-s.done:
			return
		}
		if b.err != nil && !errors.Is(b.err, tun.ErrTooManySegments) {
			return
		}
	}
}

func (s *pumpSource) read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if s.cur == nil {
		select {
		case s.cur = <-s.ready:
		case <-s.kickc:
			return 0, errKicked
		case <-s.done:
			return 0, os.ErrClosed
		}
	}
	return s.take(bufs, sizes, offset)
}

func (s *pumpSource) tryRead(bufs [][]byte, sizes []int, offset int) (int, error) {
	s.settle()
	if s.cur == nil {
		select {
		case s.cur = <-s.ready:
		default:
			return 0, nil
		}
	}
	return s.take(bufs, sizes, offset)
}

// take copies packets of the current batch into bufs.
func (s *pumpSource) take(bufs [][]byte, sizes []int, offset int) (int, error) {
	b := s.cur
	n := 0
	for b.next < b.n && n < len(bufs) {
		sz := b.sizes[b.next]
		if sz > len(bufs[n])-offset {
			b.next++ // cannot hold it; wireguard-go's buffers always can
			continue
		}
		sizes[n] = copy(bufs[n][offset:], b.bufs[b.next][:sz])
		n++
		b.next++
	}
	if b.next < b.n {
		return n, nil
	}
	err := b.err
	s.cur = nil
	s.free <- b
	return n, err
}

func (s *pumpSource) settle() {
	select {
	case <-s.kickc:
	default:
	}
}

func (s *pumpSource) kick() {
	select {
	case s.kickc <- struct{}{}:
	default:
	}
}

// requeue is a bounded FIFO of packets copied out of WireGuard's buffers (which it reuses
// once Write returns) until the next Read hands them back. Slots grow to the largest
// packet they held and are kept, so a steady state allocates nothing.
type requeue struct {
	count atomic.Int64 // mirrors n, read without the lock on Read's fast path
	mu    sync.Mutex   // guards slots, head, n, spare
	slots [][]byte
	head  int
	n     int
	spare [][]byte // buffers of popped packets, for the next pushes
}

func (q *requeue) init(size int) {
	q.slots = make([][]byte, size)
	q.spare = make([][]byte, 0, size)
}

// push copies pkt into the queue; false when the queue is full.
func (q *requeue) push(pkt []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.slots) {
		return false
	}
	i := (q.head + q.n) % len(q.slots)
	var s []byte
	if k := len(q.spare); k > 0 && cap(q.spare[k-1]) >= len(pkt) {
		s = q.spare[k-1]
		q.spare[k-1] = nil
		q.spare = q.spare[:k-1]
	} else {
		s = make([]byte, 0, max(len(pkt), 2048))
	}
	s = s[:len(pkt)]
	copy(s, pkt)
	q.slots[i] = s
	q.n++
	q.count.Add(1)
	return true
}

// pop copies up to len(bufs) queued packets into bufs at offset. It returns how many,
// their bytes, and how many were dropped for not fitting.
func (q *requeue) pop(bufs [][]byte, sizes []int, offset int) (n, bytes, tooBig int) {
	if q.count.Load() == 0 {
		return 0, 0, 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 && n < len(bufs) {
		s := q.slots[q.head]
		q.slots[q.head] = nil
		q.spare = append(q.spare, s)
		q.head = (q.head + 1) % len(q.slots)
		q.n--
		q.count.Add(-1)
		if len(s) > len(bufs[n])-offset {
			tooBig++
			continue
		}
		sizes[n] = copy(bufs[n][offset:], s)
		bytes += sizes[n]
		n++
	}
	return n, bytes, tooBig
}
