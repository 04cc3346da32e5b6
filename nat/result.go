package nat

// Action says where a packet goes after Engine.FromSite or Engine.FromOverlay translated it
// in place.
type Action uint8

const (
	// Drop: discard the packet; Result.Reason says why (a counter is bumped).
	Drop Action = iota
	// ToSite: write the packet to the site side (the vp0 TUN device).
	ToSite
	// ToOverlay: hand the packet to WireGuard (encrypt and send to the peer whose
	// allowed IPs hold the destination).
	ToOverlay
)

func (a Action) String() string {
	switch a {
	case Drop:
		return "drop"
	case ToSite:
		return "to-site"
	case ToOverlay:
		return "to-overlay"
	}
	return "unknown"
}

// Result is the outcome of translating one packet. When ReplyLen > 0 the engine also wrote
// an ICMP message of that many bytes into the caller's reply buffer (for example
// administratively-prohibited for a denied packet, or time-exceeded); ReplyAction says where
// that reply goes. The original packet's fate is Action either way. Reason is not ReasonOK
// with an Action other than Drop in one case: a denied segment of a revoked TCP flow that
// was turned into a RST for its other end (Config.ResetRevoked); its drop is counted.
type Result struct {
	Action      Action
	Reason      Reason
	ReplyLen    int
	ReplyAction Action
}
