//go:build netns && linux

package netnstests

// The relay wire format as the tests build it. This file is the only place the suite knows
// it: the relay-filter scenario (paths_test.go) sends frames built here from raw sockets,
// so a change of the format changes relayFrame and relayHeaderLen and nothing else.
//
// A relay frame is one UDP datagram to the hub's WireGuard port: a 12-byte header — a
// little-endian uint32 message type (relayMsgType, outside WireGuard's 1–4, so the hub tells
// the two apart by the first word, as WireGuard itself does), the sender's overlay IPv4
// address, the destination's overlay IPv4 address — then the sender's WireGuard message,
// which the hub forwards to the destination without reading it.

import (
	"encoding/binary"
	"net/netip"
)

const (
	relayMsgType   = 0x45475752 // "RWGE" on the wire, little-endian
	relayHeaderLen = 12
)

// relayFrame wraps payload (a WireGuard message of the sender) for the hub to relay from
// src to dst (overlay IPs of gateways).
func relayFrame(src, dst netip.Addr, payload []byte) []byte {
	b := make([]byte, relayHeaderLen+len(payload))
	binary.LittleEndian.PutUint32(b[0:], relayMsgType)
	s, d := src.As4(), dst.As4()
	copy(b[4:8], s[:])
	copy(b[8:12], d[:])
	copy(b[relayHeaderLen:], payload)
	return b
}

// malformedRelayFrames are datagrams that start like a relay frame but whose header is cut
// short: the hub cannot tell sender or destination.
func malformedRelayFrames(src, dst netip.Addr) [][]byte {
	full := relayFrame(src, dst, nil)
	return [][]byte{full[:4], full[:7], full[:relayHeaderLen-1]}
}

// fakeTransport is a WireGuard transport-data message (type 4) with a receiver index and
// counter nobody holds: what a relay would carry, undecryptable by anyone.
func fakeTransport(n int) []byte {
	b := make([]byte, 16+max(n, 16))
	binary.LittleEndian.PutUint32(b[0:], 4)
	binary.LittleEndian.PutUint32(b[4:], 0xdeadbeef)
	for i := 16; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}
