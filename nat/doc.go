// Package nat translates IPv4 packets in place between site addresses and the overlay, as
// docs/ARCHITECTURE.md, "A packet's walk", walks them: outbound at the client's gateway,
// inbound at the service's gateway, both reply directions, and the same-site case. (The hub
// decrypts no edge traffic; a decrypted packet for another gateway is dropped.)
// It is pure: no sockets, no devices, no goroutines.
//
// The contract:
//
//   - NewEngine(Config) makes an Engine; Apply(*api.Snapshot) — Prepare then Install —
//     compiles the snapshot into a vpresence.Table and a policy.Compiled (sharing one
//     snapidx.Index) off the packet path and swaps them in with one atomic store (leases
//     carry over). Until the first Apply every packet is dropped.
//   - The gateway's own overlay IP carries its control traffic (Config.ControlPeer,
//     ControlPort) untranslated and nothing else (denied-control): the engine decides every
//     packet's fate; the overlay seam holds no policy.
//   - FromSite(pkt, reply) / FromOverlay(pkt, reply) translate one packet in place and say
//     where it goes (Result.Action) or why it was dropped (Result.Reason, counted). They
//     may write an ICMP message (admin-prohibited for a denied packet, host-unreachable
//     for an exhausted pool, time-exceeded) into reply; Result.ReplyLen/ReplyAction say so.
//     A packet is never lengthened, a dropped packet is never modified, nothing panics,
//     and the accept path allocates nothing. Both are safe for concurrent use.
//   - Every packet is decided against the policy current when it is parsed: a revocation
//     stops an open connection at its next packet, both directions. A TCP segment of a
//     revoked flow that still holds its mappings becomes a RST for its other end, and a
//     RST goes back to its sender (Config.ResetRevoked, reset.go); UDP and ICMP get
//     admin-prohibited (Config.RejectDenied).
//   - Leases are 1:1 address mappings (ports are never rewritten): ov(c) for local clients
//     from the upper half of the overlay prefix, presence IPs for remote (and same-site)
//     clients from the upper half of the VP CIDR.
//   - ICMP errors are decided as part of the flow of the packet they quote (lookups only;
//     an error never creates a lease) and have their quoted header translated too.
//   - ICMP echo to a VIP passes through to the service host for an allowed client. An
//     echo reply carries no port, and one host may run several exposed services, so the
//     service host's gateway remembers, under (presence IP, service IP, echo id), the
//     ov(S) (or, same-site, the VIP) each request was sent to: a bounded table
//     (Config.EchoTable entries), refreshed by requests, expiring after EchoTimeout on the
//     injected clock. The reply is credited to that service (and checked against its
//     policy); a reply matching no remembered request is dropped (icmp-echo-no-request),
//     and so is an ICMP error quoting such a request. When one client pings two services
//     of one host with the same echo id at once, the newer request wins.
//   - Later fragments follow their first fragment's mapping (keyed by addresses, IP ID and
//     protocol, for FragmentTimeout); fragments that arrive before their first are dropped
//     rather than reassembled (fragment-no-mapping), as are tiny first fragments and later
//     fragments overlapping the L4 header (RFC 1858).
//   - Stats() is for status; it is not on the packet path.
package nat
