package overlay

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/egw-project/egw/api"
	"github.com/egw-project/egw/overlay/pathbind"
)

func hexKey(k wgtypes.Key) string { return hex.EncodeToString(k[:]) }

// SetPeers makes the device's peers exactly peers: peers no longer present are removed,
// new ones added, changed ones updated (allowed IPs replaced, endpoint, keepalive);
// unchanged peers are not touched, so their sessions continue. keepalive is the persistent
// keepalive for every peer (edges: DefaultKeepalive toward the hub; 0 turns it off).
// Peers without a public key (not yet registered) are skipped. An endpoint may be
// "ip:port" or "host:port"; a host name is resolved now (a failure leaves the peer without
// an endpoint until a later resolution succeeds) and again when handshakes stop (see
// Reresolve). Invalid input is rejected before anything is changed. SetPeers is
// PreparePeers then InstallPeers.
//
// Path peers: on an edge, a peer that is no hub and has an overlay IP is another gateway
// reached on its own session, direct or through a hub's relay (pathbind): its endpoint in
// WireGuard is its identity (pathbind.PeerEndpoint), its candidates go to the bind, and an
// endpoint given for it is ignored. Its persistent keepalive makes a (re)started gateway
// handshake with its linked peers at once, so a peer that restarted never waits for the
// other side's session to time out. The hubs' resolved endpoints are where the bind relays.
func (o *Overlay) SetPeers(peers []api.Peer, keepalive time.Duration) error {
	ps, err := o.PreparePeers(peers, keepalive)
	if err != nil {
		return err
	}
	return o.InstallPeers(ps)
}

// PeerSet is a validated set of peers (PreparePeers), ready for InstallPeers.
type PeerSet struct {
	want  map[wgtypes.Key]*peer
	paths []pathbind.Peer
}

// PreparePeers checks peers and keepalive as SetPeers does, without changing the device.
func (o *Overlay) PreparePeers(peers []api.Peer, keepalive time.Duration) (*PeerSet, error) {
	if keepalive < 0 || keepalive > 65535*time.Second {
		return nil, fmt.Errorf("overlay: keepalive %v: must be 0-65535s", keepalive)
	}
	want := make(map[wgtypes.Key]*peer, len(peers))
	var paths []pathbind.Peer
	for i, p := range peers {
		if p.PublicKey == "" {
			o.log.Debug("overlay: peer has no public key yet; skipped", "peer", p.Name)
			continue
		}
		k, err := wgtypes.ParseKey(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("overlay: peers[%d] (%s): publicKey: %w", i, p.Name, err)
		}
		if _, dup := want[k]; dup {
			return nil, fmt.Errorf("overlay: peers[%d] (%s): publicKey used by two peers", i, p.Name)
		}
		if k == o.cfg.PrivateKey.PublicKey() {
			return nil, fmt.Errorf("overlay: peers[%d] (%s): publicKey is this device's own", i, p.Name)
		}
		np := &peer{name: p.Name, endpoint: p.Endpoint, keepalive: keepalive, overlayIP: p.OverlayIP, hub: p.Hub}
		if !o.cfg.Paths.Hub && !p.Hub && p.OverlayIP.IsValid() {
			np.path, np.endpoint = true, pathbind.PeerEndpoint(p.OverlayIP)
			paths = append(paths, pathbind.Peer{Name: p.Name, OverlayIP: p.OverlayIP, PublicKey: k, Candidates: p.Candidates})
		}
		for j, a := range p.AllowedIPs {
			if !a.IsValid() {
				return nil, fmt.Errorf("overlay: peers[%d] (%s): allowedIPs[%d] is invalid", i, p.Name, j)
			}
			np.allowed = append(np.allowed, a.Masked())
		}
		slices.SortFunc(np.allowed, func(a, b netip.Prefix) int {
			if c := a.Addr().Compare(b.Addr()); c != 0 {
				return c
			}
			return a.Bits() - b.Bits()
		})
		np.allowed = slices.Compact(np.allowed)
		if p.Endpoint != "" && !np.path {
			host, port, err := net.SplitHostPort(p.Endpoint)
			if err != nil {
				return nil, fmt.Errorf("overlay: peers[%d] (%s): endpoint %q: %w", i, p.Name, p.Endpoint, err)
			}
			pn, err := strconv.ParseUint(port, 10, 16)
			if err != nil || pn == 0 {
				return nil, fmt.Errorf("overlay: peers[%d] (%s): endpoint %q: bad port", i, p.Name, p.Endpoint)
			}
			if a, err := netip.ParseAddr(host); err == nil {
				np.resolved = netip.AddrPortFrom(a.Unmap(), uint16(pn))
			} else {
				np.isName = true
			}
		}
		want[k] = np
	}
	if err := o.bind.CheckPeers(paths); err != nil {
		return nil, fmt.Errorf("overlay: %w", err)
	}
	return &PeerSet{want: want, paths: paths}, nil
}

// InstallPeers makes the device's peers exactly ps: see SetPeers. A DNS endpoint is
// resolved here. Only the device can refuse (an error of wireguard-go's IpcSet).
func (o *Overlay) InstallPeers(ps *PeerSet) error {
	want := ps.want
	o.mu.Lock()
	defer o.mu.Unlock()
	// The bind learns new path peers first: their UAPI endpoint names them.
	if err := o.bind.SetPeers(ps.paths); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	now := o.cfg.Now()
	var b strings.Builder
	var deferred []wgtypes.Key
	for k := range o.peers {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "public_key=%s\nremove=true\n", hexKey(k))
		}
	}
	for k, np := range want {
		old := o.peers[k]
		if np.path {
			if old != nil && old.path && old.overlayIP == np.overlayIP && slices.Equal(old.allowed, np.allowed) && old.keepalive == np.keepalive {
				continue
			}
		} else if np.isName {
			if old != nil && old.endpoint == np.endpoint && old.resolved.IsValid() {
				np.resolved, np.resolvedAt = old.resolved, old.resolvedAt
			} else {
				np.resolved = o.resolve(np.endpoint) // invalid on failure; logged
				np.resolvedAt = now
			}
		}
		if !np.path && old != nil && !old.path && slices.Equal(old.allowed, np.allowed) && old.resolved == np.resolved && old.keepalive == np.keepalive {
			continue
		}
		fmt.Fprintf(&b, "public_key=%s\n", hexKey(k))
		if old == nil || !slices.Equal(old.allowed, np.allowed) {
			b.WriteString("replace_allowed_ips=true\n")
			for _, a := range np.allowed {
				fmt.Fprintf(&b, "allowed_ip=%s\n", a)
			}
		}
		switch {
		case np.path && (old == nil || !old.path || old.overlayIP != np.overlayIP):
			fmt.Fprintf(&b, "endpoint=%s\n", np.endpoint)
		case !np.path && np.resolved.IsValid() && (old == nil || old.path || old.resolved != np.resolved):
			fmt.Fprintf(&b, "endpoint=%s\n", np.resolved)
		}
		switch {
		case old == nil && np.path && np.keepalive > 0 && o.cfg.Address.OverlayIP.Compare(np.overlayIP) > 0:
			// Both ends of a pair create their peers at about the same time (the same
			// revision links them), and two handshake initiations that cross make
			// WireGuard wait 5 s to retry: the end with the higher overlay IP turns its
			// keepalive (and with it its first initiation) on a little later.
			b.WriteString("persistent_keepalive_interval=0\n")
			deferred = append(deferred, k)
		case old == nil || old.keepalive != np.keepalive:
			fmt.Fprintf(&b, "persistent_keepalive_interval=%d\n", int(np.keepalive/time.Second))
		}
	}
	// The hubs before the device: a new path peer's first handshake goes out at once.
	o.setHubs(want)
	if b.Len() > 0 {
		if err := o.dev.IpcSet(b.String()); err != nil {
			return fmt.Errorf("overlay: apply peers: %w", err)
		}
	}
	o.peers = want
	for _, k := range deferred {
		time.AfterFunc(keepaliveDefer, func() { o.startKeepalive(k) })
	}
	return nil
}

// keepaliveDefer is how long the higher end of a new pair waits before its keepalive.
const keepaliveDefer = 1500 * time.Millisecond

// startKeepalive turns on the deferred keepalive of a new path peer, if it is still a
// peer (turning on a keepalive that is on changes nothing).
func (o *Overlay) startKeepalive(k wgtypes.Key) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.peers[k]
	if p == nil || p.keepalive == 0 {
		return // removed since
	}
	select {
	case <-o.stopc:
		return
	default:
	}
	if err := o.dev.IpcSet(fmt.Sprintf("public_key=%s\nupdate_only=true\npersistent_keepalive_interval=%d\n", hexKey(k), int(p.keepalive/time.Second))); err != nil {
		o.log.Warn("overlay: keepalive not turned on", "peer", p.name, "err", err)
	}
}

// resolve turns host:port into an address, or an invalid AddrPort (logged) on failure.
func (o *Overlay) resolve(endpoint string) netip.AddrPort {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return netip.AddrPort{}
	}
	pn, _ := strconv.ParseUint(port, 10, 16)
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	addrs, err := o.cfg.LookupHost(ctx, host)
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("no addresses")
	}
	if err != nil {
		o.log.Warn("overlay: resolve peer endpoint", "endpoint", endpoint, "err", err)
		return netip.AddrPort{}
	}
	// Prefer IPv4; the overlay's underlay is IPv4 in every deployment we know of.
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(pn))
}

// Reresolve resolves again the DNS endpoints of peers that had no handshake for
// Config.ReresolveAfter (and were not resolved within that time), or whose name never
// resolved, and sets a changed address on the device. It runs every 15 s on its own;
// tests call it directly.
func (o *Overlay) Reresolve() error {
	stats, err := o.PeerStats()
	if err != nil {
		return err
	}
	hs := make(map[wgtypes.Key]time.Time, len(stats))
	for _, s := range stats {
		hs[s.PublicKey] = s.LastHandshake
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.cfg.Now()
	var b strings.Builder
	for k, p := range o.peers {
		if !p.isName {
			continue
		}
		// Never resolved (DNS was down when the peer was set): retry at every check.
		// Else only when the peer has been quiet and was not resolved recently.
		if p.resolved.IsValid() &&
			(now.Sub(hs[k]) < o.cfg.ReresolveAfter || now.Sub(p.resolvedAt) < o.cfg.ReresolveAfter) {
			continue
		}
		p.resolvedAt = now
		a := o.resolve(p.endpoint)
		if !a.IsValid() || a == p.resolved {
			continue
		}
		o.log.Info("overlay: peer endpoint re-resolved", "peer", p.name, "endpoint", p.endpoint, "old", p.resolved, "new", a)
		p.resolved = a
		fmt.Fprintf(&b, "public_key=%s\nupdate_only=true\nendpoint=%s\n", hexKey(k), a)
	}
	if b.Len() == 0 {
		return nil
	}
	o.setHubs(o.peers)
	if err := o.dev.IpcSet(b.String()); err != nil {
		return fmt.Errorf("overlay: set re-resolved endpoints: %w", err)
	}
	return nil
}

// PeerStat is one peer as the device reports it.
type PeerStat struct {
	PublicKey     wgtypes.Key
	Endpoint      netip.AddrPort // invalid when not known yet
	LastHandshake time.Time      // zero when never
	RxBytes       uint64
	TxBytes       uint64
	AllowedIPs    []netip.Prefix
	Keepalive     time.Duration
}

// PeerStats returns every peer's endpoint, last handshake and traffic (from IpcGet).
func (o *Overlay) PeerStats() ([]PeerStat, error) {
	s, err := o.dev.IpcGet()
	if err != nil {
		return nil, fmt.Errorf("overlay: read device: %w", err)
	}
	return parsePeerStats(s)
}

// parsePeerStats parses the peers of a UAPI "get" answer.
func parsePeerStats(s string) ([]PeerStat, error) {
	var (
		out    []PeerStat
		cur    *PeerStat
		hsSec  int64
		hsNsec int64
	)
	flush := func() {
		if cur != nil {
			if hsSec != 0 || hsNsec != 0 {
				cur.LastHandshake = time.Unix(hsSec, hsNsec)
			}
			out = append(out, *cur)
		}
		hsSec, hsNsec = 0, 0
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		if l == "" {
			continue
		}
		key, val, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("overlay: UAPI line %d: %q has no '='", line, l)
		}
		if key == "public_key" {
			flush()
			b, err := hex.DecodeString(val)
			if err != nil || len(b) != wgtypes.KeyLen {
				return nil, fmt.Errorf("overlay: UAPI line %d: bad public_key", line)
			}
			cur = &PeerStat{}
			copy(cur.PublicKey[:], b)
			continue
		}
		if cur == nil {
			continue // device-level keys (private_key, listen_port, fwmark)
		}
		var err error
		switch key {
		case "endpoint":
			cur.Endpoint, err = netip.ParseAddrPort(val)
		case "last_handshake_time_sec":
			hsSec, err = strconv.ParseInt(val, 10, 64)
		case "last_handshake_time_nsec":
			hsNsec, err = strconv.ParseInt(val, 10, 64)
		case "rx_bytes":
			cur.RxBytes, err = strconv.ParseUint(val, 10, 64)
		case "tx_bytes":
			cur.TxBytes, err = strconv.ParseUint(val, 10, 64)
		case "persistent_keepalive_interval":
			var n uint64
			n, err = strconv.ParseUint(val, 10, 16)
			cur.Keepalive = time.Duration(n) * time.Second
		case "allowed_ip":
			var p netip.Prefix
			p, err = netip.ParsePrefix(val)
			cur.AllowedIPs = append(cur.AllowedIPs, p)
		}
		if err != nil {
			return nil, fmt.Errorf("overlay: UAPI line %d: %s: %w", line, key, err)
		}
	}
	flush()
	return out, sc.Err()
}

func parseListenPort(s string) (int, error) {
	for l := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(l, "listen_port="); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("overlay: UAPI answer has no listen_port")
}
