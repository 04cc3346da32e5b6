package overlay

import (
	"sync/atomic"

	"github.com/egw-project/egw/nat"
)

// Wrapper drop reasons beyond the engine's (the engine's nat.Reason counters are kept too).
const (
	DropReplyQueueFull = "reply-queue-full" // overlay-bound reply queue full
	DropTooBig         = "too-big"          // queued reply larger than WireGuard's buffer
	DropReplyLen       = "bad-reply-len"    // engine claimed a reply longer than the buffer
	DropTUNWrite       = "tun-write"        // the TUN refused a write (counted per batch packet)
	// DropOverlayToOverlay: the Translator sent a packet WireGuard delivered back into the
	// overlay. Nothing decrypted is forwarded between peers (the hub relays ciphertext
	// only), so it is dropped; nat.Engine never asks for it (it answers
	// not-for-this-gateway).
	DropOverlayToOverlay = "overlay-to-overlay"
)

type wrapperCounters struct {
	fromSitePkts, fromSiteBytes       atomic.Uint64
	toOverlayPkts, toOverlayBytes     atomic.Uint64
	fromOverlayPkts, fromOverlayBytes atomic.Uint64
	toSitePkts, toSiteBytes           atomic.Uint64
	hairpin, queuedReplies, replies   atomic.Uint64
	natDrops                          [nat.NumReasons]atomic.Uint64
	replyQueueFull, tooBig, replyLen  atomic.Uint64
	tunWrite, overlayToOverlay        atomic.Uint64
}

// WrapperStats is a snapshot of the Wrapper's counters.
type WrapperStats struct {
	FromSitePackets, FromSiteBytes       uint64 // read from the TUN
	ToOverlayPackets, ToOverlayBytes     uint64 // handed to WireGuard (incl. queued replies, control)
	FromOverlayPackets, FromOverlayBytes uint64 // delivered by WireGuard
	ToSitePackets, ToSiteBytes           uint64 // written to the TUN (incl. hairpin, replies)
	Hairpin                              uint64 // site packets written back to the site
	QueuedReplies                        uint64 // replies queued for WireGuard (ReplyAction ToOverlay)
	Replies                              uint64 // replies the engine generated (ICMP, resets)
	// Drops counts dropped packets by reason: the engine's nat.Reason names plus the
	// Drop* constants of this package. Only non-zero reasons are present.
	Drops map[string]uint64
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
		QueuedReplies:      s.queuedReplies.Load(),
		Replies:            s.replies.Load(),
		Drops:              map[string]uint64{},
	}
	for r := range s.natDrops {
		if v := s.natDrops[r].Load(); v > 0 {
			st.Drops[nat.Reason(r).String()] += v
		}
	}
	for name, c := range map[string]*atomic.Uint64{
		DropReplyQueueFull: &s.replyQueueFull, DropTooBig: &s.tooBig,
		DropReplyLen: &s.replyLen, DropTUNWrite: &s.tunWrite,
		DropOverlayToOverlay: &s.overlayToOverlay,
	} {
		if v := c.Load(); v > 0 {
			st.Drops[name] = v
		}
	}
	return st
}
