package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/egw-project/egw/internal/secret"
)

// The hub learns its edges' endpoints from their handshakes (edges dial out, often from
// behind NAT). It keeps the last known ones on disk so that after a restart it can start the
// handshakes itself instead of waiting up to ~25 s for each edge to notice that its session
// is gone: on start, cached endpoints seed the peers, and a persistent keepalive makes
// wireguard-go initiate a handshake at once.

func endpointsPath(stateDir string) string { return filepath.Join(stateDir, "peer-endpoints.json") }

// loadEndpoints returns the cached public key → "ip:port" map (empty when there is none).
func loadEndpoints(stateDir string) (map[string]string, error) {
	b, err := os.ReadFile(endpointsPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return map[string]string{}, err
	}
	m := map[string]string{}
	if err := json.Unmarshal(b, &m); err != nil {
		return map[string]string{}, err
	}
	return m, nil
}

// currentEndpoints reads the peers' endpoints from the device.
func (n *Node) currentEndpoints() map[string]string {
	out := map[string]string{}
	stats, err := n.ov.PeerStats()
	if err != nil {
		return out
	}
	for _, s := range stats {
		if s.Endpoint.IsValid() {
			out[s.PublicKey.String()] = s.Endpoint.String()
		}
	}
	return out
}

// saveEndpointsLoop writes the endpoints whenever they changed, every interval, until stop.
func (n *Node) saveEndpointsLoop(interval time.Duration) {
	last := map[string]string{}
	save := func() {
		cur := n.currentEndpoints()
		if len(cur) == 0 || maps.Equal(cur, last) {
			return
		}
		b, _ := json.Marshal(cur)
		if err := secret.Write(endpointsPath(n.cfg.StateDir), b); err != nil {
			n.log.Warn("peer endpoints not saved", "err", err)
			return
		}
		last = cur
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			save()
			return
		case <-t.C:
			save()
		}
	}
}

// An edge keeps the direct endpoints it proved (path-endpoints.json, overlay IP →
// ip:port), so after a restart with every hub gone it probes its linked peers where they
// last answered, before any snapshot could tell it.

func pathEndpointsPath(stateDir string) string {
	return filepath.Join(stateDir, "path-endpoints.json")
}

// loadPathEndpoints returns the cached direct endpoints (empty when there are none).
func loadPathEndpoints(stateDir string) (map[netip.Addr]netip.AddrPort, error) {
	out := map[netip.Addr]netip.AddrPort{}
	b, err := os.ReadFile(pathEndpointsPath(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return map[netip.Addr]netip.AddrPort{}, fmt.Errorf("%s: %w", pathEndpointsPath(stateDir), err)
	}
	return out, nil
}

// savePathEndpointsLoop adds newly proven direct endpoints to the cache file every
// interval, until stop. Endpoints of peers that went back to the relay are kept: they are
// the best guess for the next start.
func (n *Node) savePathEndpointsLoop(interval time.Duration) {
	known := maps.Clone(n.pathEndpoints)
	if known == nil {
		known = map[netip.Addr]netip.AddrPort{}
	}
	save := func() {
		cur := n.ov.DirectEndpoints()
		changed := false
		for ip, ep := range cur {
			if known[ip] != ep {
				known[ip] = ep
				changed = true
			}
		}
		if !changed {
			return
		}
		b, _ := json.Marshal(known)
		if err := secret.Write(pathEndpointsPath(n.cfg.StateDir), b); err != nil {
			n.log.Warn("path endpoints not saved", "err", err)
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			save()
			return
		case <-t.C:
			save()
		}
	}
}
