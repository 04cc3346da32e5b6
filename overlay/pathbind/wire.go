package pathbind

import (
	"crypto/ecdh"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"net/netip"
)

// Datagrams on a gateway's WireGuard port, told apart by their first four bytes:
//
//	WireGuard message  [type 1..4][0 0 0] ...                       (wireguard-go)
//	probe              [kind 0xE1..0xE3][0 0 0] src dst txid mac    (probeLen bytes)
//	relayed            [type or kind][0xEE 'R' 1] ... [src dst]     (trailer of TrailerLen)
//
// WireGuard keeps bytes 1..3 of every message zero (reserved), so a relayed datagram is
// the inner message with those three bytes set to relayMark and an 8-byte trailer naming
// the sending and the receiving gateway by overlay IPv4 address. Writing the mark and the
// trailer in place — the trailer in the spare capacity of wireguard-go's message buffers —
// costs no copy and keeps every datagram of a batch the same length, so UDP GSO still
// coalesces them. The receiver restores the three zero bytes and cuts the trailer off.

// TrailerLen is the length of the relay trailer: source and destination overlay IPv4.
const TrailerLen = 8

// relayMark is what bytes 1..3 of a relayed datagram carry (version 1).
var relayMark = [3]byte{0xEE, 'R', 1}

// Probe kinds (first byte of a probe). Pings and pongs travel only on a candidate
// direct path; a call travels only through the relay and asks the peer to probe now.
const (
	kindPing byte = 0xE1
	kindPong byte = 0xE2
	kindCall byte = 0xE3
)

// WireGuard message types (wireguard-go's device package) and the smallest message
// (a transport message with no payload: a keepalive).
const (
	wgInitiation = 1
	wgResponse   = 2
	wgCookie     = 3
	wgTransport  = 4
	wgMinMessage = 32
	// Sizes of the handshake messages.
	wgInitiationLen = 148
	wgResponseLen   = 92
)

// isHandshake reports whether m is a WireGuard handshake initiation or response.
func isHandshake(m []byte) bool {
	return (len(m) == wgInitiationLen && m[0] == wgInitiation) || (len(m) == wgResponseLen && m[0] == wgResponse)
}

// Probe layout: [kind][0 0 0][src 4][dst 4][txid 12][mac 16].
const (
	txidLen  = 12
	macLen   = 16
	probeLen = 4 + 4 + 4 + txidLen + macLen
	macStart = probeLen - macLen
)

// Errors of the parsers (constant, so a drop is counted without allocating).
var (
	errShort    = errors.New("short datagram")
	errMark     = errors.New("not a relayed datagram")
	errInner    = errors.New("relayed datagram carries an unknown message type")
	errSameEnds = errors.New("relay source equals destination")
	errProbe    = errors.New("malformed probe")
	errMAC      = errors.New("probe authentication failed")
)

// isRelayed reports whether b carries the relay mark.
func isRelayed(b []byte) bool {
	return len(b) >= 4 && b[1] == relayMark[0] && b[2] == relayMark[1] && b[3] == relayMark[2]
}

// isPlain reports whether bytes 1..3 of b are zero (a WireGuard message or a probe).
func isPlain(b []byte) bool { return len(b) >= 4 && b[1] == 0 && b[2] == 0 && b[3] == 0 }

// innerKindOK reports whether k may be relayed: a WireGuard message or a call.
func innerKindOK(k byte) bool { return (k >= wgInitiation && k <= wgTransport) || k == kindCall }

// ParseRelayed checks a relayed datagram and returns its source and destination
// gateways and the length of the inner message (everything before the trailer). It
// reads b only.
func ParseRelayed(b []byte) (src, dst netip.Addr, inner int, err error) {
	if len(b) < wgMinMessage+TrailerLen {
		return src, dst, 0, errShort
	}
	if !isRelayed(b) {
		return src, dst, 0, errMark
	}
	if !innerKindOK(b[0]) {
		return src, dst, 0, errInner
	}
	inner = len(b) - TrailerLen
	src = netip.AddrFrom4([4]byte(b[inner : inner+4]))
	dst = netip.AddrFrom4([4]byte(b[inner+4 : inner+8]))
	if src == dst {
		return src, dst, 0, errSameEnds
	}
	return src, dst, inner, nil
}

// markRelayed turns msg (len ≥ 4, with TrailerLen bytes of room after it inside out) into
// a relayed datagram in out[:len(msg)+TrailerLen]; msg and out may share memory.
func markRelayed(out, msg []byte, src, dst netip.Addr) []byte {
	n := len(msg)
	out = out[:n+TrailerLen]
	if &out[0] != &msg[0] {
		copy(out, msg)
	}
	out[1], out[2], out[3] = relayMark[0], relayMark[1], relayMark[2]
	s, d := src.As4(), dst.As4()
	copy(out[n:], s[:])
	copy(out[n+4:], d[:])
	return out
}

// unmarkRelayed restores bytes 1..3 of a relayed datagram's inner message.
func unmarkRelayed(b []byte) { b[1], b[2], b[3] = 0, 0, 0 }

// probe is a parsed probe message.
type probe struct {
	kind     byte
	src, dst netip.Addr
	txid     [txidLen]byte
}

// parseProbe parses a probe (bytes 1..3 already zero) without checking its MAC.
func parseProbe(b []byte) (probe, error) {
	if len(b) != probeLen || !isPlain(b) || (b[0] != kindPing && b[0] != kindPong && b[0] != kindCall) {
		return probe{}, errProbe
	}
	p := probe{
		kind: b[0],
		src:  netip.AddrFrom4([4]byte(b[4:8])),
		dst:  netip.AddrFrom4([4]byte(b[8:12])),
	}
	copy(p.txid[:], b[12:12+txidLen])
	if p.src == p.dst {
		return probe{}, errProbe
	}
	return p, nil
}

// appendProbe appends p, authenticated with key, to b.
func appendProbe(b []byte, p probe, key *[32]byte) []byte {
	start := len(b)
	s, d := p.src.As4(), p.dst.As4()
	b = append(b, p.kind, 0, 0, 0)
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = append(b, p.txid[:]...)
	return append(b, probeMAC(key, b[start:])...)
}

// verifyProbe checks the MAC of a probe of probeLen bytes.
func verifyProbe(b []byte, key *[32]byte) bool {
	return len(b) == probeLen && hmac.Equal(probeMAC(key, b[:macStart]), b[macStart:])
}

func probeMAC(key *[32]byte, msg []byte) []byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(msg)
	return m.Sum(nil)[:macLen]
}

// pairKey derives the probe key two gateways share: HMAC-SHA256 over a label, keyed with
// their static-static X25519 secret (the same on both sides, known to no one else —
// neither to the hub nor to a gateway that is not one of the two).
func pairKey(private, peerPublic [32]byte) ([32]byte, error) {
	var out [32]byte
	priv, err := ecdh.X25519().NewPrivateKey(private[:])
	if err != nil {
		return out, err
	}
	pub, err := ecdh.X25519().NewPublicKey(peerPublic[:])
	if err != nil {
		return out, err
	}
	secret, err := priv.ECDH(pub)
	if err != nil {
		return out, err
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("egw path probe v1"))
	copy(out[:], m.Sum(nil))
	return out, nil
}

// ip4 returns a's four bytes as a map key (zero for a non-IPv4 address).
func ip4(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}
