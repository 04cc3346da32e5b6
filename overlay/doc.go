// Package overlay provides a gateway's WireGuard side: the userspace wireguard-go device
// (keys, peers, endpoints, the UAPI socket), the vp0 TUN device behind one of two drivers
// (wireguard-go's own tun with the virtio-net header, batches and GSO/GRO — the default — or
// github.com/songgao/water, one packet per call), and the seam between the NAT engine and
// WireGuard: Wrapper, a tun.Device around the real TUN that translates every batch in
// place on its way through (docs/ARCHITECTURE.md, "The NAT seam").
//
// The packet's walk through the seam:
//
//	site ──▶ vp0 TUN ──Read──▶ Wrapper.Read: FromSite ──┬─ ToOverlay ─▶ WireGuard (encrypt, send)
//	                                                      ├─ ToSite ────▶ vp0 TUN (same-site hairpin)
//	                                                      └─ Drop
//	peer ──▶ WireGuard (decrypt) ──Write──▶ Wrapper.Write: FromOverlay ──┬─ ToSite ────▶ vp0 TUN
//	                                                                      └─ Drop (ToOverlay too)
//
// Replies the engine writes (ICMP errors, a revoked flow's resets) go where
// Result.ReplyAction says: to the TUN, or through a bounded queue to the next Read. The Wrapper holds no
// policy: the engine decides every packet, the gateway's own control traffic included
// (nat.Config.ControlPeer/ControlPort). A packet that does not go to WireGuard keeps its
// slot in Read's batch with size 0, which wireguard-go skips.
//
// Overlay ties it together: New creates the TUN, addresses it (vp0 gets the VP address
// with the VP CIDR route and the overlay IP with a route to the overlay CIDR), starts the
// device and serves /var/run/wireguard/<name>.sock; SetPeers (PreparePeers, then
// InstallPeers) applies api.Peers; PeerStats reads handshakes and traffic back; Close
// removes all of it.
//
// Under WireGuard, the device's UDP bind is overlay/pathbind's (paths.go): an edge's peers
// other than the hub are path peers, each reached on a proven direct path or through the
// hub's relay; the hub's bind forwards that relayed ciphertext between linked gateways.
// Edge-to-edge packets therefore never reach the hub's Wrapper, and nothing WireGuard
// decrypted is sent back into the overlay: a packet the hub decrypts for another
// gateway's prefix is dropped (nat's not-for-this-gateway).
package overlay
