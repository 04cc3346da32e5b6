package nat

import (
	"net/netip"
	"time"
)

// Config configures an Engine. The zero value is usable: every field has a default.
type Config struct {
	// MTU is the tunnel MTU; TCP MSS on SYN and SYN-ACK is clamped to MTU-40.
	// Default 1420 (MSS 1380).
	MTU int
	// RejectDenied: answer a denied packet with ICMP administratively-prohibited (and an
	// exhausted pool with host-unreachable) so the client fails fast. nil means true.
	RejectDenied *bool
	// ResetRevoked: a TCP segment denied by policy, of a flow that still holds its
	// mappings (it was passing before a policy change), becomes a RST for its other end and
	// a RST goes back to its sender, so both ends of a revoked connection fail at once
	// instead of retransmitting into silence (reset.go). nil means true.
	ResetRevoked *bool
	// ICMPRate and ICMPBurst rate-limit every ICMP message the engine generates
	// (rejects and time-exceeded): messages per second, burst. Defaults 50/s, 20.
	ICMPRate  int
	ICMPBurst int
	// ClientLeaseIdle, PresenceLeaseIdle: idle timeout of ov(c) and presence leases.
	// Default 30m. LeaseQuiet: how long a freed address rests before reuse. Default 2m.
	ClientLeaseIdle   time.Duration
	PresenceLeaseIdle time.Duration
	LeaseQuiet        time.Duration
	// FragmentTimeout: how long later fragments may follow their first. Default 30s.
	// FragmentTable bounds the number of datagrams tracked. Default 4096.
	FragmentTimeout time.Duration
	FragmentTable   int
	// EchoTimeout: how long the gateway of a service host remembers which service an
	// ICMP echo request was sent to (refreshed by each request), so the host's reply is
	// attributed to that service. Default 30s. EchoTable bounds the number of echo
	// exchanges remembered (presence IP, service IP, echo id). Default 4096.
	EchoTimeout time.Duration
	EchoTable   int
	// ControlPeer and ControlPort say which traffic of the gateway's own overlay IP is its
	// control traffic, passed untranslated: an edge's overlay IP talks only with ControlPeer
	// (the cloud's overlay IP); the hub's serves only TCP port ControlPort (its sync port).
	// Anything else to or from the overlay IP is denied (ReasonDeniedControl), so no peer
	// reaches other services of the gateway host through the overlay. Zero values: none.
	ControlPeer netip.Addr
	ControlPort uint16
	// Now is the clock leases and timeouts are decided with. Default: monotonic (wall time
	// at start plus monotonic time since), immune to steps of the system clock.
	Now func() time.Time
}

func (c *Config) setDefaults() {
	if c.MTU <= 0 {
		c.MTU = 1420
	}
	if c.MTU < 68 {
		c.MTU = 68
	}
	if c.RejectDenied == nil {
		t := true
		c.RejectDenied = &t
	}
	if c.ResetRevoked == nil {
		t := true
		c.ResetRevoked = &t
	}
	if c.ICMPRate <= 0 {
		c.ICMPRate = 50
	}
	if c.ICMPBurst <= 0 {
		c.ICMPBurst = 20
	}
	if c.ClientLeaseIdle <= 0 {
		c.ClientLeaseIdle = 30 * time.Minute
	}
	if c.PresenceLeaseIdle <= 0 {
		c.PresenceLeaseIdle = 30 * time.Minute
	}
	if c.LeaseQuiet <= 0 {
		c.LeaseQuiet = 2 * time.Minute
	}
	if c.FragmentTimeout <= 0 {
		c.FragmentTimeout = 30 * time.Second
	}
	if c.FragmentTable <= 0 {
		c.FragmentTable = 4096
	}
	if c.EchoTimeout <= 0 {
		c.EchoTimeout = 30 * time.Second
	}
	if c.EchoTable <= 0 {
		c.EchoTable = 4096
	}
	if c.Now == nil {
		c.Now = monotonicNow
	}
}

// clockEpoch anchors monotonicNow.
var clockEpoch = time.Now()

// monotonicNow is the default clock: wall time at start plus monotonic time since, so a step
// of the system clock (common on edge boxes without an RTC, when NTP catches up) neither
// expires every lease nor stretches them. Leases, quiet periods and rate limits only compare
// times taken from this clock with each other.
func monotonicNow() time.Time { return clockEpoch.Add(time.Since(clockEpoch)) }
