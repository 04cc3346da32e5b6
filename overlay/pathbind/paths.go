package pathbind

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/egw-project/egw/api"
)

// Timing are the path timers. The defaults meet docs/ARCHITECTURE.md ("Paths"):
// heartbeats ≤ 25 s, back to the relay within 3 s of a loss, re-probe at most every
// 60 s while relayed.
type Timing struct {
	Tick            time.Duration // how often Tick runs (250 ms)
	HeartbeatIdle   time.Duration // ping on a direct path without traffic (20 s)
	HeartbeatActive time.Duration // ping on a direct path carrying traffic (750 ms)
	Active          time.Duration // traffic within this long makes a path active (5 s)
	Retry           time.Duration // ping again when the last is unanswered this long (500 ms)
	Lost            time.Duration // a direct path is lost when two pings, the oldest this old, are unanswered (1.25 s)
	RoundSpacing    time.Duration // between the ping volleys of a probe round (500 ms)
	RoundVolleys    int           // volleys per probe round (5)
	Reprobe         time.Duration // a relayed peer is probed again this long after the last round began (60 s)
	JoinGap         time.Duration // a probe from the peer starts a round of ours only this long after our last one began (10 s)
}

func (t Timing) withDefaults() Timing {
	d := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	d(&t.Tick, 250*time.Millisecond)
	d(&t.HeartbeatIdle, 20*time.Second)
	d(&t.HeartbeatActive, 750*time.Millisecond)
	d(&t.Active, 5*time.Second)
	d(&t.Retry, 500*time.Millisecond)
	d(&t.Lost, 1250*time.Millisecond)
	d(&t.RoundSpacing, 500*time.Millisecond)
	if t.RoundVolleys <= 0 {
		t.RoundVolleys = 5
	}
	d(&t.Reprobe, 60*time.Second)
	d(&t.JoinGap, 10*time.Second)
	return t
}

// Limits on what a peer (or its probes) can make a Bind hold.
const (
	maxCandidates  = 8  // from the snapshot
	maxLearned     = 4  // addresses a valid ping came from
	maxOutstanding = 64 // unanswered pings per peer
	outstandingTTL = 5 * time.Second
	maxSeenTx      = 32 // recent probe ids per peer (replays start no round)
	pongRate       = 10 // pongs per second per peer
	pongBurst      = 20
)

// Peer is a gateway reached on its own WireGuard session (not a hub).
type Peer struct {
	Name       string
	OverlayIP  netip.Addr
	PublicKey  [32]byte
	Candidates []netip.AddrPort // best first (Snapshot Peer.Candidates plus cached ones)
}

type pathMode uint8

const (
	modeRelayed pathMode = iota
	modeDirect
)

// peer is one path peer. route and sent are read on the packet path; everything else is
// guarded by Bind.mu.
type peer struct {
	name string
	ip   netip.Addr
	pub  [32]byte
	key  [32]byte
	ep   *peerEndpoint

	route atomic.Pointer[route]
	sent  atomic.Bool // Send ran since the last Tick
	// lastHandshake is the latest handshake message sent to the peer (see keepHandshake).
	lastHandshake atomic.Pointer[handshake]

	candidates []netip.AddrPort
	learned    []learnedAddr

	mode       pathMode
	since      time.Time
	direct     netip.AddrPort
	directEP   conn.Endpoint
	rtt        time.Duration
	lastActive time.Time

	outstanding []pingRec
	lastPing    time.Time // last heartbeat to the direct path

	roundStart   time.Time // zero: no round running
	lastVolley   time.Time
	volleys      int
	lastRound    time.Time // start of the last round
	nextRound    time.Time
	seenTx       [][txidLen]byte
	pongTokens   float64
	pongRefill   time.Time
	lastPingBack time.Time
	removed      bool
	lostCount    uint64
	directCount  uint64
}

// handshake is the latest handshake message WireGuard sent to a peer.
type handshake struct {
	msg []byte
	at  time.Time
}

// handshakeReplay is how long a kept handshake message is worth sending again:
// WireGuard itself retries after 5 s.
const handshakeReplay = 5 * time.Second

// keepHandshake remembers the latest handshake message (initiation or response) sent to
// the peer. When a new direct path is proven soon after, the same message goes out again
// on it: the first went to a dead relay, or to the address the peer had before it
// restarted, and the session starts without waiting for WireGuard's 5 s retry. A copy
// that already arrived is refused as a replay (an initiation's timestamp is not newer; a
// response finds no initiation waiting), so sending it twice is harmless.
func (p *peer) keepHandshake(msg []byte, now time.Time) {
	p.lastHandshake.Store(&handshake{msg: append([]byte(nil), msg...), at: now})
}

type learnedAddr struct {
	addr netip.AddrPort
	at   time.Time
}

type pingRec struct {
	txid      [txidLen]byte
	to        netip.AddrPort
	sent      time.Time
	heartbeat bool // sent on the direct path in use (else: a probe round)
}

// preparedPeer is a checked Peer with its probe key.
type preparedPeer struct {
	Peer
	key [32]byte
}

// CheckPeers reports what SetPeers would refuse in peers, changing nothing.
func (b *Bind) CheckPeers(peers []Peer) error {
	b.mu.Lock()
	priv := b.cfg.PrivateKey
	b.mu.Unlock()
	_, err := b.preparePeers(peers, priv)
	return err
}

func (b *Bind) preparePeers(peers []Peer, priv [32]byte) (map[uint32]preparedPeer, error) {
	want := make(map[uint32]preparedPeer, len(peers))
	for i, p := range peers {
		k := ip4(p.OverlayIP)
		if k == 0 {
			return nil, fmt.Errorf("pathbind: peers[%d] (%s): overlay IP %v is not IPv4", i, p.Name, p.OverlayIP)
		}
		if p.OverlayIP == b.cfg.Self {
			return nil, fmt.Errorf("pathbind: peers[%d] (%s): overlay IP %v is this gateway's", i, p.Name, p.OverlayIP)
		}
		if _, dup := want[k]; dup {
			return nil, fmt.Errorf("pathbind: peers[%d] (%s): overlay IP %v listed twice", i, p.Name, p.OverlayIP)
		}
		key, err := pairKey(priv, p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("pathbind: peers[%d] (%s): public key: %w", i, p.Name, err)
		}
		var cands []netip.AddrPort
		for _, c := range p.Candidates {
			c = netip.AddrPortFrom(c.Addr().Unmap(), c.Port())
			if !c.IsValid() || c.Port() == 0 || c.Addr().IsUnspecified() || c.Addr().IsMulticast() || slices.Contains(cands, c) {
				continue
			}
			if len(cands) == maxCandidates {
				break
			}
			cands = append(cands, c)
		}
		p.Candidates = cands
		want[k] = preparedPeer{Peer: p, key: key}
	}
	return want, nil
}

// SetPeers makes the bind's path peers exactly peers (by overlay IP). A peer that stays
// keeps its path; a new one starts relayed and, with direct paths on and candidates
// known, probes at once. Invalid input (see CheckPeers) changes nothing.
func (b *Bind) SetPeers(peers []Peer) error {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	want, err := b.preparePeers(peers, b.cfg.PrivateKey)
	if err != nil {
		return err
	}
	next := make(map[uint32]*peer, len(want))
	for k, w := range want {
		p := b.peers[k]
		if p != nil && p.pub != w.PublicKey {
			// Re-keyed: a new identity; the old path proof is not its.
			b.removeLocked(p)
			p = nil
		}
		if p == nil {
			p = &peer{ip: w.OverlayIP, pub: w.PublicKey, key: w.key, since: now}
			p.ep = &peerEndpoint{p: p}
			p.pongTokens, p.pongRefill = pongBurst, now
			b.setRelayedLocked(p)
		}
		p.name = w.Name
		if !slices.Equal(p.candidates, w.Candidates) {
			added := false
			for _, c := range w.Candidates {
				if !slices.Contains(p.candidates, c) {
					added = true
				}
			}
			p.candidates = w.Candidates
			// New addresses are worth a round sooner than the re-probe interval.
			if added && p.mode == modeRelayed {
				p.nextRound = later(p.lastRound.Add(b.cfg.Timing.JoinGap), now)
			}
		}
		next[k] = p
	}
	for k, p := range b.peers {
		if next[k] != p {
			b.removeLocked(p)
		}
	}
	b.peers = next
	b.publishLocked()
	return nil
}

// SetPrivateKey replaces this gateway's private key (key rotation): every pair's probe
// key is derived again, and paths stay as they are. Nothing changes on error.
func (b *Bind) SetPrivateKey(k [32]byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	keys := make(map[*peer][32]byte, len(b.peers))
	for _, p := range b.peers {
		pk, err := pairKey(k, p.pub)
		if err != nil {
			return fmt.Errorf("pathbind: peer %s: %w", p.name, err)
		}
		keys[p] = pk
	}
	b.cfg.PrivateKey = k
	for p, pk := range keys {
		p.key = pk
	}
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (b *Bind) removeLocked(p *peer) {
	p.removed = true
	p.route.Store(nil)
}

// publishLocked replaces the receive path's peer table.
func (b *Bind) publishLocked() {
	m := make(map[uint32]*peer, len(b.peers))
	for k, p := range b.peers {
		m[k] = p
	}
	b.peersByIP.Store(&m)
}

// setRelayedLocked routes p through the preferred hub (no route without one).
func (b *Bind) setRelayedLocked(p *peer) {
	if len(b.hubs) == 0 {
		p.route.Store(nil)
		return
	}
	h := b.hubs[0]
	p.route.Store(&route{addr: h.addr, ep: h.ep})
}

// outMsg is a datagram built under mu and sent after it is released.
type outMsg struct {
	pkt []byte
	ep  conn.Endpoint
}

func (b *Bind) flushOut(out []outMsg) {
	for _, m := range out {
		_ = b.sendTo(m.pkt, m.ep)
	}
}

// Tick runs the path timers: heartbeats and loss detection on direct paths, probe rounds
// for relayed peers. The bind calls it every Timing.Tick (unless ManualTick).
func (b *Bind) Tick() {
	now := b.now()
	b.mu.Lock()
	var out []outMsg
	for _, p := range b.peers {
		out = b.tickPeerLocked(p, now, out)
	}
	b.mu.Unlock()
	b.flushOut(out)
}

func (b *Bind) tickPeerLocked(p *peer, now time.Time, out []outMsg) []outMsg {
	t := &b.cfg.Timing
	if p.sent.Swap(false) {
		p.lastActive = now
	}
	// Forget pings nobody will answer any more.
	p.outstanding = slices.DeleteFunc(p.outstanding, func(r pingRec) bool { return now.Sub(r.sent) > outstandingTTL })

	if p.mode == modeDirect {
		var unanswered int
		var oldest time.Time
		for _, r := range p.outstanding {
			if r.heartbeat && r.to == p.direct {
				if unanswered == 0 || r.sent.Before(oldest) {
					oldest = r.sent
				}
				unanswered++
			}
		}
		if unanswered >= 2 && now.Sub(oldest) >= t.Lost {
			b.log.Info("pathbind: direct path lost; relaying", "peer", p.name, "endpoint", p.direct)
			p.mode, p.since, p.lostCount = modeRelayed, now, p.lostCount+1
			p.direct, p.directEP, p.rtt = netip.AddrPort{}, nil, 0
			b.setRelayedLocked(p)
			p.nextRound = now.Add(t.Reprobe)
			p.outstanding = p.outstanding[:0]
			return out
		}
		interval := t.HeartbeatIdle
		if now.Sub(p.lastActive) < t.Active {
			interval = t.HeartbeatActive
		}
		if (unanswered > 0 && now.Sub(p.lastPing) >= t.Retry) || now.Sub(p.lastPing) >= interval {
			out = b.pingLocked(p, p.direct, p.directEP, true, now, out)
			p.lastPing = now
		}
	}
	if !b.cfg.Direct {
		return out
	}
	if p.roundStart.IsZero() {
		if p.mode == modeRelayed && !now.Before(p.nextRound) && len(p.targets()) > 0 {
			out = b.startRoundLocked(p, now, out)
		}
		return out
	}
	if now.Sub(p.lastVolley) >= t.RoundSpacing {
		if p.volleys >= t.RoundVolleys {
			p.roundStart = time.Time{} // round over; a success switched the path already
			return out
		}
		out = b.volleyLocked(p, now, out)
	}
	return out
}

// targets are the addresses a probe round pings: candidates, then learned addresses.
func (p *peer) targets() []netip.AddrPort {
	t := slices.Clone(p.candidates)
	for _, l := range p.learned {
		if !slices.Contains(t, l.addr) {
			t = append(t, l.addr)
		}
	}
	return t
}

// startRoundLocked begins a probe round: a call through the relay asks the peer to probe
// too, and the first volley of pings goes out.
func (b *Bind) startRoundLocked(p *peer, now time.Time, out []outMsg) []outMsg {
	p.roundStart, p.lastRound, p.volleys = now, now, 0
	p.nextRound = now.Add(b.cfg.Timing.Reprobe)
	if len(b.hubs) > 0 {
		pr := probe{kind: kindCall, src: b.cfg.Self, dst: p.ip}
		rand.Read(pr.txid[:])
		msg := appendProbe(make([]byte, 0, probeLen+TrailerLen), pr, &p.key)
		out = append(out, outMsg{pkt: markRelayed(msg[:probeLen+TrailerLen], msg, b.cfg.Self, p.ip), ep: b.hubs[0].ep})
		b.stats.calls.Add(1)
	}
	return b.volleyLocked(p, now, out)
}

func (b *Bind) volleyLocked(p *peer, now time.Time, out []outMsg) []outMsg {
	p.volleys++
	p.lastVolley = now
	for _, a := range p.targets() {
		ep, err := b.inner.ParseEndpoint(a.String())
		if err != nil {
			continue
		}
		out = b.pingLocked(p, a, ep, false, now, out)
	}
	return out
}

func (b *Bind) pingLocked(p *peer, to netip.AddrPort, ep conn.Endpoint, heartbeat bool, now time.Time, out []outMsg) []outMsg {
	if ep == nil {
		return out
	}
	pr := probe{kind: kindPing, src: b.cfg.Self, dst: p.ip}
	rand.Read(pr.txid[:])
	if len(p.outstanding) == maxOutstanding {
		p.outstanding = slices.Delete(p.outstanding, 0, 1)
	}
	p.outstanding = append(p.outstanding, pingRec{txid: pr.txid, to: to, sent: now, heartbeat: heartbeat})
	b.stats.pings.Add(1)
	return append(out, outMsg{pkt: appendProbe(make([]byte, 0, probeLen), pr, &p.key), ep: ep})
}

// handleProbe handles a ping or pong from `from` (relayed false), or a call through the
// relay (relayed true). pkt's bytes 1..3 are zero.
func (b *Bind) handleProbe(pkt []byte, from netip.AddrPort, relayed bool, now time.Time) {
	pr, err := parseProbe(pkt)
	if err != nil || pr.dst != b.cfg.Self || (relayed != (pr.kind == kindCall)) {
		b.stats.probeBad.Add(1)
		return
	}
	b.mu.Lock()
	p := b.peers[ip4(pr.src)]
	if p == nil || !verifyProbe(pkt, &p.key) {
		b.mu.Unlock()
		b.stats.probeBad.Add(1)
		return
	}
	var out []outMsg
	switch pr.kind {
	case kindPong:
		out = b.pongLocked(p, pr, from, now, out)
	case kindPing:
		if !b.cfg.Direct || !from.IsValid() {
			break
		}
		if b.takePongLocked(p, now) {
			if ep, err := b.inner.ParseEndpoint(from.String()); err == nil {
				reply := probe{kind: kindPong, src: b.cfg.Self, dst: p.ip, txid: pr.txid}
				out = append(out, outMsg{pkt: appendProbe(make([]byte, 0, probeLen), reply, &p.key), ep: ep})
				b.stats.pongs.Add(1)
			}
		}
		b.learnLocked(p, from, now)
		out = b.pingBackLocked(p, from, now, out)
		out = b.joinLocked(p, pr.txid, now, out)
	case kindCall:
		if b.cfg.Direct {
			out = b.joinLocked(p, pr.txid, now, out)
		}
	}
	b.mu.Unlock()
	b.flushOut(out)
}

// pongLocked matches a pong to its ping: a heartbeat's keeps the direct path; a probe
// round's proves its address both ways and, while relayed, makes it the path.
func (b *Bind) pongLocked(p *peer, pr probe, from netip.AddrPort, now time.Time, out []outMsg) []outMsg {
	i := slices.IndexFunc(p.outstanding, func(r pingRec) bool { return r.txid == pr.txid })
	if i < 0 || p.outstanding[i].to != from {
		return out // not ours, already answered, or from elsewhere: proves nothing
	}
	rec := p.outstanding[i]
	p.outstanding = slices.Delete(p.outstanding, i, i+1)
	rtt := now.Sub(rec.sent)
	if p.mode == modeDirect {
		if from == p.direct {
			// Every older heartbeat to this path is answered as far as loss goes.
			p.outstanding = slices.DeleteFunc(p.outstanding, func(r pingRec) bool {
				return r.heartbeat && r.to == from && !r.sent.After(rec.sent)
			})
			p.rtt = rtt
		}
		return out
	}
	ep, err := b.inner.ParseEndpoint(from.String())
	if err != nil || p.removed {
		return out
	}
	b.log.Info("pathbind: direct path proven", "peer", p.name, "endpoint", from, "rtt", rtt)
	p.mode, p.since, p.direct, p.directEP, p.rtt = modeDirect, now, from, ep, rtt
	p.directCount++
	p.lastPing = now
	p.outstanding = slices.DeleteFunc(p.outstanding, func(r pingRec) bool { return !r.heartbeat })
	p.roundStart = time.Time{}
	p.route.Store(&route{direct: true, addr: from, ep: ep})
	if h := p.lastHandshake.Swap(nil); h != nil && now.Sub(h.at) < handshakeReplay {
		out = append(out, outMsg{pkt: h.msg, ep: ep})
	}
	return out
}

// takePongLocked is the per-peer pong rate limit (bounds reflection of replayed pings).
func (b *Bind) takePongLocked(p *peer, now time.Time) bool {
	if dt := now.Sub(p.pongRefill).Seconds(); dt > 0 {
		p.pongTokens = min(pongBurst, p.pongTokens+dt*pongRate)
	}
	p.pongRefill = now
	if p.pongTokens < 1 {
		return false
	}
	p.pongTokens--
	return true
}

// learnLocked remembers an address a valid ping came from: the peer's mapping toward us,
// which its candidates may not list (a NAT's port for this destination).
func (b *Bind) learnLocked(p *peer, from netip.AddrPort, now time.Time) {
	if slices.Contains(p.candidates, from) {
		return
	}
	for i := range p.learned {
		if p.learned[i].addr == from {
			p.learned[i].at = now
			return
		}
	}
	if len(p.learned) == maxLearned {
		oldest := 0
		for i := range p.learned {
			if p.learned[i].at.Before(p.learned[oldest].at) {
				oldest = i
			}
		}
		p.learned = slices.Delete(p.learned, oldest, oldest+1)
	}
	p.learned = append(p.learned, learnedAddr{addr: from, at: now})
}

// pingBackLocked answers a valid ping that arrives while the peer is relayed with a ping
// of ours to the address it came from (at most one a second): the peer is there now —
// after a restart on a new port, a NAT rebinding, or a direct path we lost — and our pong
// from it proves the path without waiting for our next round.
//
// While direct on another address, it checks that path at once instead (a heartbeat,
// unless one is unanswered): if the peer moved, the old path is found lost within
// Timing.Lost, and the peer's next ping is answered with ours.
func (b *Bind) pingBackLocked(p *peer, from netip.AddrPort, now time.Time, out []outMsg) []outMsg {
	if now.Sub(p.lastPingBack) < pingBackGap || (p.mode == modeDirect && from == p.direct) {
		return out
	}
	if p.mode == modeDirect {
		for _, r := range p.outstanding {
			if r.heartbeat && r.to == p.direct {
				return out
			}
		}
		p.lastPingBack, p.lastPing = now, now
		return b.pingLocked(p, p.direct, p.directEP, true, now, out)
	}
	ep, err := b.inner.ParseEndpoint(from.String())
	if err != nil {
		return out
	}
	p.lastPingBack = now
	return b.pingLocked(p, from, ep, false, now, out)
}

// pingBackGap bounds the pings a peer's pings make us send back.
const pingBackGap = time.Second

// joinLocked starts a round of ours when the peer probes (its ping or call) and our last
// round began at least JoinGap ago; a probe id seen before starts nothing (replay).
func (b *Bind) joinLocked(p *peer, txid [txidLen]byte, now time.Time, out []outMsg) []outMsg {
	if slices.Contains(p.seenTx, txid) {
		return out
	}
	if len(p.seenTx) == maxSeenTx {
		p.seenTx = slices.Delete(p.seenTx, 0, 1)
	}
	p.seenTx = append(p.seenTx, txid)
	if !p.roundStart.IsZero() || (!p.lastRound.IsZero() && now.Sub(p.lastRound) < b.cfg.Timing.JoinGap) {
		return out
	}
	if len(p.targets()) == 0 {
		return out
	}
	return b.startRoundLocked(p, now, out)
}

// Paths returns every path peer's path, sorted by peer name.
func (b *Bind) Paths() []api.PathStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]api.PathStatus, 0, len(b.peers))
	for _, p := range b.peers {
		s := api.PathStatus{Peer: p.name, Mode: "relayed", Since: p.since}
		if r := p.route.Load(); r != nil {
			s.Endpoint = r.addr.String()
		}
		if p.mode == modeDirect {
			s.Mode = "direct"
			s.RTTMS = float64(p.rtt.Microseconds()) / 1000
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b api.PathStatus) int {
		switch {
		case a.Peer < b.Peer:
			return -1
		case a.Peer > b.Peer:
			return 1
		}
		return 0
	})
	return out
}

// DirectEndpoints returns the proven direct endpoint of every peer on a direct path, by
// overlay IP: worth caching, so a restarted gateway can probe them with every hub gone.
func (b *Bind) DirectEndpoints() map[netip.Addr]netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := map[netip.Addr]netip.AddrPort{}
	for _, p := range b.peers {
		if p.mode == modeDirect {
			m[p.ip] = p.direct
		}
	}
	return m
}
