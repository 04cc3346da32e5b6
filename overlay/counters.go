package overlay

import (
	"sync/atomic"

	"github.com/egw-project/egw/nat"
)

// Wrapper drop reasons beyond the engine's (the engine's nat.Reason counters are kept too).
const (
	DropRequeueFull = "requeue-full"  // relay queue full
	DropTooBig      = "too-big"       // re-queued packet larger than WireGuard's buffer
	DropReplyLen    = "bad-reply-len" // engine claimed a reply longer than the buffer
	DropTUNWrite    = "tun-write"     // the TUN refused a write (counted per batch packet)
)

type wrapperCounters struct {
	fromSitePkts, fromSiteBytes       atomic.Uint64
	toOverlayPkts, toOverlayBytes     atomic.Uint64
	fromOverlayPkts, fromOverlayBytes atomic.Uint64
	toSitePkts, toSiteBytes           atomic.Uint64
	hairpin, requeued, replies        atomic.Uint64
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
