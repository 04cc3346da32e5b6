// Package pathbind provides the path choice under WireGuard (docs/ARCHITECTURE.md,
// "Paths"): a conn.Bind that wireguard-go sends and receives through, over one UDP socket
// (conn.StdNetBind in production, so GSO/GRO batching and 7 MiB socket buffers stay).
//
// On an edge, every gateway the edge exchanges traffic with is a path peer (SetPeers).
// WireGuard holds one endpoint per path peer — the peer's identity (PeerEndpoint), not
// an address — and Send routes each batch:
//
//	WireGuard ──Send──▶ peer's route ──┬─ direct: the peer's proven UDP endpoint
//	                                   └─ relayed: mark + trailer in place ─▶ hub
//
//	socket ──receive──▶ demux ──┬─ WireGuard message ──────────────▶ WireGuard
//	                            ├─ relayed (from a hub, for us) ─ unmark ─▶ WireGuard (as from the peer)
//	                            ├─ relayed call ───────────────────▶ prober: probe now
//	                            └─ ping / pong ────────────────────▶ prober
//
// Direct paths are proven, not assumed: both ends ping every candidate address at the
// same time (a call through the relay starts the other end's round); a path carries
// traffic only after a pong came back from the address the ping went to. Probes carry a
// MAC keyed from the pair's static-static X25519 secret, so neither the hub nor a third
// gateway can steer a path. Heartbeats keep a direct path (and its NAT mappings) alive;
// two unanswered pings send the peer back to the relay; a relayed peer is probed again
// after Timing.Reprobe. A path change needs no WireGuard reconfiguration. WireGuard's own
// roaming must be off for path peers (device.DisableSomeRoamingForBrokenMobileSemantics)
// so a packet from an unexpected address never replaces the peer endpoint.
//
// On the hub, the Bind runs a Relay: relayed datagrams are checked (sender's
// authenticated endpoint, link, rate) and forwarded as they are, batched per
// destination, without decryption; everything else goes to the hub's WireGuard.
//
// Nothing on the packet path allocates per packet or panics on input; malformed
// datagrams are counted and dropped.
package pathbind
