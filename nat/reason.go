package nat

// Reason is a constant that names why a packet was dropped (or "ok"). Reasons index the
// engine's drop counters, so counting a drop never allocates.
type Reason uint8

const (
	ReasonOK Reason = iota

	ReasonNoSnapshot // no snapshot applied yet: everything is denied

	// Malformed input, one counter per defect.
	ReasonTruncated      // shorter than an IPv4 header or than the L4 header it announces
	ReasonIPv6           // IPv6 on this (IPv4-only) path
	ReasonBadVersion     // IP version neither 4 nor 6
	ReasonBadIHL         // IHL < 5 or header past the buffer
	ReasonBadTotalLength // total length differs from the buffer / shorter than the header
	ReasonBadTCPOffset   // TCP data offset < 5 or past the packet
	ReasonBadUDPLength   // UDP length < 8 or past the packet
	ReasonShortICMP      // ICMP shorter than its header, or an error without an embedded header + 8 bytes
	ReasonBadICMPInner   // ICMP error whose embedded packet is not IPv4 / is a later fragment

	// Fragments.
	ReasonFragmentTiny      // first fragment too short to hold the whole L4 header
	ReasonFragmentOverlap   // later fragment whose offset overlaps the L4 header
	ReasonFragmentNoMapping // later fragment whose first fragment was not seen (or was dropped)
	ReasonFragmentStale     // later fragment after a policy change: its first is re-decided

	// Policy.
	ReasonDeniedClient  // the client (or its site) is not allowed for the service
	ReasonDeniedPort    // protocol/port is not the service's
	ReasonDeniedSource  // overlay source belongs to no known gateway
	ReasonDeniedControl // to or from the gateway's own overlay IP, but not its control traffic
	ReasonDeniedNoRoute // from the site to an address that is no VIP, presence IP or own traffic
	ReasonDeniedOverlay // from the site into the overlay without being this gateway's own traffic
	ReasonNotForUs      // from the overlay to an address this gateway does not serve (at the hub: another gateway's)

	// Mappings.
	ReasonNoMapping       // addressed to a presence IP / ov(c) that is not leased (expired?)
	ReasonNotServiceReply // to a leased address, but not from the service's address/port
	ReasonEchoNoRequest   // echo reply from a service host that answers no remembered echo request
	ReasonICMPNoMapping   // ICMP error about a packet that matches no mapping
	ReasonICMPMismatch    // ICMP error not addressed to the source of the packet it quotes
	ReasonICMPUnsupported // ICMP type that is neither echo nor an error we translate
	ReasonPoolExhausted   // no address left to lease

	ReasonTTLExpired // TTL would reach 0 here

	NumReasons // keep last
)

var reasonNames = [NumReasons]string{
	ReasonOK:                "ok",
	ReasonNoSnapshot:        "no-snapshot",
	ReasonTruncated:         "malformed-truncated",
	ReasonIPv6:              "malformed-ipv6",
	ReasonBadVersion:        "malformed-version",
	ReasonBadIHL:            "malformed-ihl",
	ReasonBadTotalLength:    "malformed-total-length",
	ReasonBadTCPOffset:      "malformed-tcp-offset",
	ReasonBadUDPLength:      "malformed-udp-length",
	ReasonShortICMP:         "malformed-icmp-short",
	ReasonBadICMPInner:      "malformed-icmp-inner",
	ReasonFragmentTiny:      "fragment-tiny",
	ReasonFragmentOverlap:   "fragment-overlap",
	ReasonFragmentNoMapping: "fragment-no-mapping",
	ReasonFragmentStale:     "fragment-stale",
	ReasonDeniedClient:      "denied-client",
	ReasonDeniedPort:        "denied-port",
	ReasonDeniedSource:      "denied-unknown-source",
	ReasonDeniedControl:     "denied-control",
	ReasonDeniedNoRoute:     "denied-no-route",
	ReasonDeniedOverlay:     "denied-site-to-overlay",
	ReasonNotForUs:          "not-for-this-gateway",
	ReasonNoMapping:         "no-mapping",
	ReasonNotServiceReply:   "not-service-reply",
	ReasonEchoNoRequest:     "icmp-echo-no-request",
	ReasonICMPNoMapping:     "icmp-error-no-mapping",
	ReasonICMPMismatch:      "icmp-error-mismatch",
	ReasonICMPUnsupported:   "icmp-unsupported",
	ReasonPoolExhausted:     "pool-exhausted",
	ReasonTTLExpired:        "ttl-expired",
}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// denied reports whether r is a policy denial (answered with admin-prohibited).
func (r Reason) denied() bool {
	return r >= ReasonDeniedClient && r <= ReasonDeniedControl
}
