//go:build netns && linux

package netnstests

// The relay wire format as the tests build it. This file is the only place the suite knows
// it: the relay-filter scenario (paths_test.go) sends frames built here from raw sockets,
// so a change of the format changes this file and nothing else. It mirrors the format of
// overlay/pathbind (wire.go: markRelayed, ParseRelayed), built independently so that the
// test does not trust the code it tests.
//
// A relayed datagram goes to the hub's WireGuard port. It is the sender's WireGuard message
// (first byte its type, 1..4) with the three reserved bytes 1..3 set to the relay mark
// 0xEE 'R' 1, followed by an 8-byte trailer: the sending and the receiving gateway's
// overlay IPv4 addresses. The hub forwards it unchanged, without reading the message.

import (
	"encoding/binary"
	"net/netip"
)

const (
	relayTrailerLen = 8  // source and destination overlay IPv4
	wgMinMessage    = 32 // a WireGuard transport message without payload (keepalive)
)

// relayMark is what bytes 1..3 of a relayed datagram carry (version 1).
var relayMark = [3]byte{0xEE, 'R', 1}

// relayFrame wraps msg (a WireGuard message of the sender, len ≥ 4) for the hub to relay
// from src to dst (overlay IPs of gateways).
func relayFrame(src, dst netip.Addr, msg []byte) []byte {
	b := make([]byte, len(msg)+relayTrailerLen)
	copy(b, msg)
	copy(b[1:4], relayMark[:])
	s, d := src.As4(), dst.As4()
	copy(b[len(msg):], s[:])
	copy(b[len(msg)+4:], d[:])
	return b
}

// malformedRelayFrames are datagrams that carry the relay mark but that the hub cannot
// relay: cut short (shorter than a keepalive plus the trailer, or the bare mark), an inner
// message of no WireGuard type, and a source equal to the destination.
func malformedRelayFrames(src, dst netip.Addr) [][]byte {
	short := relayFrame(src, dst, fakeTransport(16)[:wgMinMessage-4])
	bare := relayFrame(src, dst, fakeTransport(16))[:4]
	badType := relayFrame(src, dst, fakeTransport(64))
	badType[0] = 0x77
	same := relayFrame(src, src, fakeTransport(64))
	return [][]byte{short, bare, badType, same}
}

// fakeTransport is a WireGuard transport-data message (type 4) of 16+n bytes (n ≥ 16) with
// a receiver index and counter nobody holds: what a relay would carry, undecryptable by
// anyone.
func fakeTransport(n int) []byte {
	b := make([]byte, 16+max(n, 16))
	binary.LittleEndian.PutUint32(b[0:], 4)
	binary.LittleEndian.PutUint32(b[4:], 0xdeadbeef)
	for i := 16; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	return b
}
