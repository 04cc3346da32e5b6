package overlay

import "github.com/egw-project/egw/nat"

// Translator is the NAT engine as the Wrapper sees it (nat.Engine implements it). Both
// methods translate pkt in place and say where it goes; when Result.ReplyLen > 0 they also
// wrote an ICMP message of that length into reply, which goes to Result.ReplyAction.
// They are called concurrently (one Read goroutine, one Write goroutine per peer) and
// must not keep pkt or reply after returning.
type Translator interface {
	// FromSite translates a packet read from the site (the vp0 TUN).
	FromSite(pkt, reply []byte) nat.Result
	// FromOverlay translates a packet WireGuard decrypted.
	FromOverlay(pkt, reply []byte) nat.Result
}

// DropAll is a Translator that drops everything (default deny) — what a gateway runs
// before its first snapshot is applied.
type DropAll struct{}

// FromSite drops pkt.
func (DropAll) FromSite(pkt, reply []byte) nat.Result { return nat.Result{Action: nat.Drop} }

// FromOverlay drops pkt.
func (DropAll) FromOverlay(pkt, reply []byte) nat.Result { return nat.Result{Action: nat.Drop} }
