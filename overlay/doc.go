// Package overlay provides a gateway's WireGuard side: the userspace wireguard-go device
// (keys, peers, endpoints, the UAPI socket), the vp0 TUN device behind one of two drivers
// (wireguard-go's own tun with the virtio-net header, batches and GSO/GRO — the default — or
// github.com/songgao/water, one packet per call), and the seam between the NAT engine and
// WireGuard: Wrapper, a tun.Device around the real TUN that translates every batch in
// place on its way through (DESIGN.md §5).
//
// The packet's walk through the seam:
//
//	site ──▶ vp0 TUN ──Read──▶ Wrapper.Read: FromSite ──┬─ ToOverlay ─▶ WireGuard (encrypt, send)
//	                                                      ├─ ToSite ────▶ vp0 TUN (same-site hairpin)
//	                                                      └─ Drop
//	peer ──▶ WireGuard (decrypt) ──Write──▶ Wrapper.Write: FromOverlay ──┬─ ToSite ────▶ vp0 TUN
//	                                                                      ├─ ToOverlay ─▶ re-queue ─▶ next Read (hub relay)
//	                                                                      └─ Drop
//
// ICMP replies the engine writes go where Result.ReplyAction says. Packets whose source
// (site side) or destination (overlay side) is the gateway's own overlay IP are the
// gateway's control traffic (DESIGN.md §6) and pass untranslated.
//
// Overlay ties it together: New creates the TUN, addresses it (vp0 gets the VP address
// with the VP CIDR route and the overlay IP with a route to the overlay CIDR), starts the
// device and serves /var/run/wireguard/<name>.sock; SetPeers applies api.Peers; PeerStats
// reads handshakes and traffic back; Close removes all of it.
package overlay
