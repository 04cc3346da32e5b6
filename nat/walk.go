package nat

// A packet's walk through the engine (docs/ARCHITECTURE.md, "A packet's walk"):
//
//  FromSite (read from vp0):
//   1. parse (malformed → counted drop); later fragments follow their first (frag table)
//   2. ICMP errors are decided as the flow they belong to: the reverse of the quoted packet
//   3. decide, against the current policy (one atomic load per packet):
//      (o) src is our own overlay IP: control traffic (Config.ControlPeer/ControlPort)
//          untranslated, ToOverlay; anything else from it denied (denied-control)
//      (a) dst is a VIP here:   ACL(client, proto/port | echo) → remote: lease ov(c),
//          c→VIP ⇒ ov(c)→ov(S), ToOverlay; local: lease presence p, c→VIP ⇒ p→S, ToSite
//          (an echo request also records (p, S, id) → VIP in the echo table)
//      (b) dst is a presence IP: its peer ov(c): S→p ⇒ ov(S)→ov(c), ToOverlay;
//          its peer a local client c: S→p ⇒ VIP→c, ToSite. The service is found by
//          (S, proto, sport); an echo reply (no port) by the echo table instead: the
//          service its request was sent to, else drop (icmp-echo-no-request)
//      (c) else drop
//   4. TTL: decrement when forwarding; expiring → drop + time-exceeded into reply
//   5. rewrite addresses in place, checksums incrementally (RFC 1624), MSS clamp on SYN
//   (3') a TCP segment denied by policy, of a flow that still has its mappings (it was
//        passing before the change), becomes a RST for the other end and a RST goes back
//        to the sender (reset.go; Config.ResetRevoked)
//
//  FromOverlay (decrypted by WireGuard): the same steps, deciding
//      (o) dst is our own overlay IP: control traffic untranslated, ToSite; anything
//          else to it denied (denied-control)
//      (a) dst is a hosted ov(S): ACL(source site, proto/port | echo), lease presence p
//          for ov(c): ov(c)→ov(S) ⇒ p→S, ToSite (an echo request also records
//          (p, S, id) → ov(S) in the echo table)
//      (b) dst is a leased ov(c): reply from ov(S) consumed here: ov(S)→ov(c) ⇒ VIP→c
//      (c) else drop (not-for-this-gateway). The hub too: edges reach each other on
//          their own WireGuard sessions, the hub relaying only ciphertext (overlay/pathbind),
//          so a decrypted packet for another gateway's prefix is never forwarded.
//
// Ports are never rewritten: leases are 1:1 address mappings.

import (
	"time"

	"github.com/egw-project/egw/internal/ip4"
	"github.com/egw-project/egw/policy"
	"github.com/egw-project/egw/vpresence"
)

// flow is what a decision looks at.
type flow struct {
	src, dst     uint32
	proto        uint8
	sport, dport uint16
	echoReq      bool // ICMP echo request
	echoReply    bool // ICMP echo reply
	// force skips the policy checks: the translation the flow had while it was allowed,
	// used only to send a revoked TCP flow's RST to its other end (reset.go).
	force bool
}

// verdict is v, or Allow for a forced decision.
func (f *flow) verdict(v policy.Verdict) policy.Verdict {
	if f.force {
		return policy.Allow
	}
	return v
}

// xlat is a decision: the new addresses and where the packet goes.
type xlat struct {
	src, dst uint32
	action   Action
	clamp    bool   // clamp the MSS of a SYN (crosses the tunnel)
	decTTL   bool   // forwarded (not the gateway's own traffic)
	icmpSrc  uint32 // source of ICMP messages the gateway sends about this packet
}

// FromSite translates a packet read from the vp0 TUN in place. reply may receive an ICMP
// message for the sender (see Result).
func (e *Engine) FromSite(pkt, reply []byte) Result {
	return e.walk(dirSite, pkt, reply)
}

// FromOverlay translates a packet decrypted by WireGuard in place.
func (e *Engine) FromOverlay(pkt, reply []byte) Result {
	return e.walk(dirOverlay, pkt, reply)
}

func (e *Engine) drop(dir int, r Reason) Result {
	e.drops[r].Add(1)
	e.dirs[dir].dropped.Add(1)
	return Result{Action: Drop, Reason: r}
}

func (e *Engine) walk(dir int, b, reply []byte) Result {
	dc := &e.dirs[dir]
	dc.packets.Add(1)
	dc.bytes.Add(uint64(len(b)))
	st := e.st.Load()
	if st == nil {
		return e.drop(dir, ReasonNoSnapshot)
	}
	var p packet
	if r := parse(b, &p); r != ReasonOK {
		return e.drop(dir, r)
	}
	now := e.cfg.Now()
	nowNS := now.UnixNano()
	if p.later() {
		return e.followFragment(dir, st, &p, nowNS)
	}
	if p.isErr {
		return e.icmpError(dir, st, &p, now)
	}
	if p.proto == ip4.ProtoICMP && p.icmpType != icmpEchoRequest && p.icmpType != icmpEchoReply {
		return e.drop(dir, ReasonICMPUnsupported)
	}
	f := flow{src: p.src, dst: p.dst, proto: p.proto, sport: p.sport, dport: p.dport,
		echoReq:   p.proto == ip4.ProtoICMP && p.icmpType == icmpEchoRequest,
		echoReply: p.proto == ip4.ProtoICMP && p.icmpType == icmpEchoReply}
	x, r := e.decide(dir, st, &f, true, now)
	if r != ReasonOK {
		if e.resetOn && p.proto == ip4.ProtoTCP && r.revokes() {
			if res, ok := e.resetFlow(dir, st, &p, &f, r, reply, now); ok {
				return res
			}
		}
		res := e.drop(dir, r)
		if e.reject && (r.denied() || r == ReasonPoolExhausted) {
			code := uint8(13) // communication administratively prohibited
			if r == ReasonPoolExhausted {
				code = 1 // host unreachable
			}
			res.ReplyLen, res.ReplyAction = e.sendICMP(dir, reply, &p, icmpUnreachable, code, x.icmpSrc, nowNS)
		}
		return res
	}
	if x.decTTL && p.ttl <= 1 {
		res := e.drop(dir, ReasonTTLExpired)
		res.ReplyLen, res.ReplyAction = e.sendICMP(dir, reply, &p, icmpTimeExceeded, 0, x.icmpSrc, nowNS)
		return res
	}
	if p.first() {
		e.frags.put(fragKey{p.src, p.dst, p.id, p.proto, uint8(dir)},
			fragVal{src: x.src, dst: x.dst, action: x.action, decTTL: x.decTTL, st: st}, nowNS)
	}
	rewrite(&p, x.src, x.dst, x.decTTL)
	if x.clamp && p.proto == ip4.ProtoTCP && p.tcpFlags&tcpSYN != 0 {
		clampMSS(&p, e.mss)
	}
	return Result{Action: x.action}
}

// verdictReason maps a policy verdict to a drop reason.
func verdictReason(v policy.Verdict) Reason {
	switch v {
	case policy.DenyClient:
		return ReasonDeniedClient
	case policy.DenyPort:
		return ReasonDeniedPort
	case policy.DenyUnknownSrc:
		return ReasonDeniedSource
	case policy.DenyNoRule:
		return ReasonNotServiceReply
	}
	return ReasonOK
}

// lease finds (create: or makes) the lease of key in pool.
func lease(pool *vpresence.Pool, key uint64, create bool, now time.Time) (uint32, Reason) {
	if create {
		a, err := pool.Lease(key, now)
		if err != nil {
			return 0, ReasonPoolExhausted
		}
		return a, ReasonOK
	}
	a, ok := pool.Get(key, now)
	if !ok {
		return 0, ReasonNoMapping
	}
	return a, ReasonOK
}

// decideSite decides a flow that arrived from the site. create is false for flows seen
// only through an ICMP error (an error never makes a lease).
func (e *Engine) decideSite(st *state, f *flow, create bool, now time.Time) (xlat, Reason) {
	t, pol := st.table, st.pol
	// (o) the gateway's own overlay IP carries its control traffic and nothing else.
	if f.src == t.OverlayIP && f.src != 0 {
		if !e.control(f, f.dst, f.sport) {
			return xlat{icmpSrc: f.dst}, ReasonDeniedControl
		}
		return xlat{src: f.src, dst: f.dst, action: ToOverlay}, ReasonOK
	}
	// (a) to a VIP of this site.
	if v, ok := t.VIP(f.dst); ok {
		x := xlat{icmpSrc: f.dst}
		if vr := f.verdict(pol.CheckVIP(f.dst, f.src, f.proto, f.dport, f.echoReq)); vr != policy.Allow {
			return x, verdictReason(vr)
		}
		if v.Local {
			key := peerLocal | uint64(f.src)
			p, r := lease(st.presence, key, create, now)
			if r != ReasonOK {
				return x, r
			}
			if f.echoReq && create {
				e.echo.Put(vpresence.EchoKey{Presence: p, ServiceIP: v.ServiceIP, ID: f.dport},
					vpresence.EchoTarget{Peer: key, Target: f.dst}, now)
			}
			return xlat{src: p, dst: v.ServiceIP, action: ToSite, decTTL: true, icmpSrc: f.dst}, ReasonOK
		}
		oc, r := lease(st.client, uint64(f.src), create, now)
		if r != ReasonOK {
			return x, r
		}
		return xlat{src: oc, dst: v.Overlay, action: ToOverlay, clamp: true, decTTL: true, icmpSrc: f.dst}, ReasonOK
	}
	// (b) to a presence IP: a reply from a service hosted here.
	if st.presence.Contains(f.dst) {
		x := xlat{icmpSrc: t.VPAddr}
		key, ok := st.presence.Peer(f.dst, now)
		if !ok {
			return x, ReasonNoMapping
		}
		peer := uint32(key)
		// An echo reply carries no port: it belongs to the service its request was
		// sent to (the host may run several exposed services).
		var target uint32
		if f.echoReply {
			et, ok := e.echo.Get(vpresence.EchoKey{Presence: f.dst, ServiceIP: f.src, ID: f.sport}, now)
			if !ok || et.Peer != key {
				return x, ReasonEchoNoRequest
			}
			target = et.Target
		}
		if key&^0xffffffff == peerOverlay {
			var h *vpresence.Service
			if f.echoReply {
				h, ok = t.Hosted(target)
				ok = ok && h.ServiceIP == f.src
			} else {
				h, ok = t.HostedByService(f.src, f.proto, f.sport)
			}
			if !ok {
				return x, ReasonNotServiceReply
			}
			if vr := f.verdict(pol.CheckHosted(h.Overlay, peer, f.proto, f.sport, f.echoReply)); vr != policy.Allow {
				return x, verdictReason(vr)
			}
			return xlat{src: h.Overlay, dst: peer, action: ToOverlay, clamp: true, decTTL: true, icmpSrc: t.VPAddr}, ReasonOK
		}
		var v *vpresence.Service
		if f.echoReply {
			v, ok = t.VIP(target)
			ok = ok && v.Local && v.ServiceIP == f.src
		} else {
			v, ok = t.LocalByService(f.src, f.proto, f.sport)
		}
		if !ok {
			return x, ReasonNotServiceReply
		}
		if vr := f.verdict(pol.CheckVIP(v.VIP, peer, f.proto, f.sport, f.echoReply)); vr != policy.Allow {
			return x, verdictReason(vr)
		}
		return xlat{src: v.VIP, dst: peer, action: ToSite, decTTL: true, icmpSrc: t.VPAddr}, ReasonOK
	}
	// (c) nothing else leaves the site.
	if t.InOverlay(f.dst) {
		return xlat{icmpSrc: t.VPAddr}, ReasonDeniedOverlay
	}
	return xlat{icmpSrc: t.VPAddr}, ReasonDeniedNoRoute
}

// decideOverlay decides a flow that arrived from WireGuard.
func (e *Engine) decideOverlay(st *state, f *flow, create bool, now time.Time) (xlat, Reason) {
	t, pol := st.table, st.pol
	// (o) control traffic to this gateway, and nothing else to its overlay IP.
	if f.dst == t.OverlayIP && f.dst != 0 {
		if !e.control(f, f.src, f.dport) {
			return xlat{icmpSrc: f.dst}, ReasonDeniedControl
		}
		return xlat{src: f.src, dst: f.dst, action: ToSite}, ReasonOK
	}
	// (a) to a service hosted here.
	if h, ok := t.Hosted(f.dst); ok {
		x := xlat{icmpSrc: f.dst}
		if vr := f.verdict(pol.CheckHosted(f.dst, f.src, f.proto, f.dport, f.echoReq)); vr != policy.Allow {
			return x, verdictReason(vr)
		}
		key := peerOverlay | uint64(f.src)
		p, r := lease(st.presence, key, create, now)
		if r != ReasonOK {
			return x, r
		}
		if f.echoReq && create {
			e.echo.Put(vpresence.EchoKey{Presence: p, ServiceIP: h.ServiceIP, ID: f.dport},
				vpresence.EchoTarget{Peer: key, Target: f.dst}, now)
		}
		return xlat{src: p, dst: h.ServiceIP, action: ToSite, clamp: true, decTTL: true, icmpSrc: f.dst}, ReasonOK
	}
	// (b) to a client overlay address leased here: a reply from a remote service.
	if st.client.Contains(f.dst) {
		x := xlat{icmpSrc: t.OverlayIP}
		key, ok := st.client.Peer(f.dst, now)
		if !ok {
			return x, ReasonNoMapping
		}
		c := uint32(key)
		v, ok := t.RemoteByOverlay(f.src)
		if !ok {
			return x, ReasonNotServiceReply
		}
		if vr := f.verdict(pol.CheckVIP(v.VIP, c, f.proto, f.sport, f.echoReply)); vr != policy.Allow {
			return x, verdictReason(vr)
		}
		if !f.echoReply && f.proto != v.Proto && v.Proto != ip4.ProtoAny {
			return x, ReasonNotServiceReply
		}
		return xlat{src: v.VIP, dst: c, action: ToSite, clamp: true, decTTL: true, icmpSrc: t.OverlayIP}, ReasonOK
	}
	// (c) nothing else: another gateway's traffic is not decrypted here, even at the hub.
	return xlat{icmpSrc: t.OverlayIP}, ReasonNotForUs
}

// control reports whether f, between the gateway's own overlay IP and peer (port: the
// overlay IP's side), is the gateway's control traffic (Config.ControlPeer/ControlPort).
func (e *Engine) control(f *flow, peer uint32, port uint16) bool {
	if e.ctlPeer != 0 && peer == e.ctlPeer {
		return true
	}
	if ps := e.ctlPeers.Load(); ps != nil {
		for _, p := range *ps {
			if peer == p {
				return true
			}
		}
	}
	return e.ctlPort != 0 && f.proto == ip4.ProtoTCP && port == e.ctlPort
}

// decide runs the walk step for a packet arriving from dir (docs/ARCHITECTURE.md, "A
// packet's walk"). create says whether it may make leases (an ICMP error may not).
func (e *Engine) decide(dir int, st *state, f *flow, create bool, now time.Time) (xlat, Reason) {
	if dir == dirSite {
		return e.decideSite(st, f, create, now)
	}
	return e.decideOverlay(st, f, create, now)
}

// icmpError translates an ICMP error. It belongs to the flow of the packet it quotes:
// that packet went the other way, so the error is decided as the reverse of the quoted
// packet (lookups only: an error never makes a lease), the outer header is rewritten
// like that flow, and the quoted header like the quoted packet's own reverse. An error the
// flow's decision refuses is counted as that denial, as not-for-this-gateway (addressed to
// a flow another gateway serves), or else as icmp-error-no-mapping.
func (e *Engine) icmpError(dir int, st *state, p *packet, now time.Time) Result {
	if p.dst != p.inSrc {
		return e.drop(dir, ReasonICMPMismatch)
	}
	f := flow{src: p.inDst, dst: p.inSrc, proto: p.inProto, sport: p.inDport, dport: p.inSport,
		echoReq:   p.inProto == ip4.ProtoICMP && p.inType == icmpEchoReply,
		echoReply: p.inProto == ip4.ProtoICMP && p.inType == icmpEchoRequest}
	x, r := e.decide(dir, st, &f, false, now)
	if r != ReasonOK {
		if !r.denied() && r != ReasonNotForUs {
			r = ReasonICMPNoMapping
		}
		return e.drop(dir, r)
	}
	if x.decTTL && p.ttl <= 1 {
		return e.drop(dir, ReasonTTLExpired) // never an error about an error
	}
	if p.first() {
		e.frags.put(fragKey{p.src, p.dst, p.id, p.proto, uint8(dir)},
			fragVal{src: x.src, dst: x.dst, action: x.action, decTTL: x.decTTL, st: st}, now.UnixNano())
	}
	// The outer source is whoever reported (the service, a router, a gateway): it is
	// shown as the address the flow's reply comes from.
	rewriteInner(p, x.dst, x.src)
	rewrite(p, x.src, x.dst, x.decTTL)
	return Result{Action: x.action}
}

// followFragment translates a later fragment the way its first fragment was.
func (e *Engine) followFragment(dir int, st *state, p *packet, now int64) Result {
	v, ok := e.frags.get(fragKey{p.src, p.dst, p.id, p.proto, uint8(dir)}, now)
	if !ok {
		return e.drop(dir, ReasonFragmentNoMapping)
	}
	if v.st != st {
		return e.drop(dir, ReasonFragmentStale)
	}
	if v.decTTL && p.ttl <= 1 {
		return e.drop(dir, ReasonTTLExpired)
	}
	rewrite(p, v.src, v.dst, v.decTTL)
	return Result{Action: v.action}
}
