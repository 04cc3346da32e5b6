// Package nat translates IPv4 packets in place between site addresses and the overlay, as
// DESIGN.md §4 walks them: outbound at the client's gateway, inbound at the service's
// gateway, both reply directions, the check at the hub relay, and the same-site case.
// It is pure: no sockets, no devices, no goroutines.
package nat
