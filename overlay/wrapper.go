package overlay

// The seam between the NAT engine and WireGuard (docs/ARCHITECTURE.md, "The NAT seam").
// One mechanism per file: this one holds the Wrapper and its tun.Device methods; walk.go
// runs packets through the Translator (Read and Write); wake.go wakes a Read blocked in
// the TUN; replyqueue.go is the queue of overlay-bound replies; counters.go the counters.
// A packet's walk:
//
//  1. Site → overlay. wireguard-go's TUN reader goroutine calls Wrapper.Read. Queued
//     replies (step 3) are returned first. Otherwise a batch is read from the real TUN
//     straight into WireGuard's buffers at its offset, and each packet is translated in
//     place by Translator.FromSite: ToOverlay packets stay in the batch; ToSite packets
//     (same-site hairpin) are written back to the TUN in one batch; a dropped or
//     hairpinned packet's size is set to 0, which wireguard-go skips (no compaction);
//     drops are counted by reason.
//  2. Overlay → site. wireguard-go's per-peer receive goroutines call Wrapper.Write with
//     decrypted packets. Each is translated by Translator.FromOverlay: ToSite packets are
//     written to the TUN in one batch; nothing WireGuard decrypted goes back into the
//     overlay (edges reach each other on their own sessions, the hub relaying only
//     ciphertext: overlay/pathbind), so a ToOverlay verdict is dropped and counted
//     (DropOverlayToOverlay), like any other drop.
//  3. Replies the engine wrote (ICMP errors, a revoked flow's resets) go to the TUN
//     (batched with the step's TUN writes) or into the reply queue, as Result.ReplyAction
//     says; a reply queued by Write wakes the reader so its next Read returns it.
//
// Waking the reader. Read must not sit blocked in the TUN's read while queued replies
// wait. When the TUN is a pollable file (both real drivers are) the reader blocks in the
// TUN read itself, in WireGuard's goroutine and buffers — no extra copy, no goroutine hop —
// and Write interrupts that read by setting a read deadline in the past (deadlineSource).
// For devices without a pollable file (test doubles such as tuntest.ChannelTUN) a pump
// goroutine reads into its own buffers and Read selects between it and the reply queue, as
// Tailscale's tstun.Wrapper does (pumpSource). BenchmarkReplyWake compares the two.
// Queued replies go first, but after fairStreak such batches in a row Read looks at the
// TUN without blocking, so replies to a peer's flood of denied packets do not starve the
// site.

import (
	"errors"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
)

const (
	// ReplyBufferSize is the length of the reply buffer handed to the Translator; an ICMP
	// error of RFC 1812's 576 bytes fits with room to spare.
	ReplyBufferSize = 1500
	// ReplyQueueSlots is how many overlay-bound replies may wait for WireGuard's next Read.
	ReplyQueueSlots = 1024
	// maxPacket is the largest IP packet a buffer may have to hold.
	maxPacket = 65535
	// fairStreak: after this many Reads in a row served from the reply queue, Read looks
	// at the TUN (without blocking for more than pollWindow) before the queue again.
	fairStreak = 4
	pollWindow = 50 * time.Microsecond
)

var errKicked = errors.New("overlay: TUN read interrupted for queued replies")

// Wrapper is a tun.Device around the real TUN that runs the Translator between it and
// WireGuard. It is safe for the concurrent use wireguard-go makes of a tun.Device: one
// reader, several writers.
type Wrapper struct {
	dev tun.Device
	src siteSource
	tr  Translator // fixed for the Wrapper's life
	log *slog.Logger
	now func() time.Time

	queue replyQueue

	readMu sync.Mutex  // serialises Read; guards rs and streak
	rs     readScratch // Read's scratch: reply buffers, hairpin batch, actions
	streak int         // Reads in a row served from the reply queue

	scratchMu   sync.Mutex      // guards freeScratch
	freeScratch []*writeScratch // Write's scratch, one per concurrent writer

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error

	lastErrLog atomic.Int64 // unix nanos of the last logged TUN write error

	stats wrapperCounters
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
	if tr == nil {
		tr = DropAll{}
	}
	w.tr = tr
	w.queue.init(ReplyQueueSlots)
	if f := dev.File(); f != nil && f.SetReadDeadline(time.Time{}) == nil {
		w.src = &deadlineSource{dev: dev, f: f}
	} else {
		w.src = newPumpSource(dev, w.done)
	}
	return w
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
