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
	return loadCache[string, string](endpointsPath(stateDir))
}

// loadCache reads the JSON map in the file at path: empty when there is none, empty with
// an error naming the file when it cannot be read or parsed.
func loadCache[K comparable, V any](path string) (map[K]V, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[K]V{}, nil
	}
	if err != nil {
		return map[K]V{}, err
	}
	m := map[K]V{}
	if err := json.Unmarshal(b, &m); err != nil {
		return map[K]V{}, fmt.Errorf("%s: %w", path, err)
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
	n.every(interval, save)
}

// An edge keeps the direct endpoints it proved (path-endpoints.json, overlay IP →
// ip:port), so after a restart with every hub gone it probes its linked peers where they
// last answered, before any snapshot could tell it.

func pathEndpointsPath(stateDir string) string {
	return filepath.Join(stateDir, "path-endpoints.json")
}

// loadPathEndpoints returns the cached direct endpoints (empty when there are none).
func loadPathEndpoints(stateDir string) (map[netip.Addr]netip.AddrPort, error) {
	return loadCache[netip.Addr, netip.AddrPort](pathEndpointsPath(stateDir))
}

// savePathEndpointsLoop adds newly proven direct endpoints to the cache file every
// interval, until stop. Endpoints of peers that went back to the relay are kept: they are
// the best guess for the next start.
func (n *Node) savePathEndpointsLoop(interval time.Duration) {
	known := maps.Clone(n.pathEndpoints)
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
	n.every(interval, save)
}

// every calls f every interval until stop, and once more at stop.
func (n *Node) every(interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			f()
			return
		case <-t.C:
			f()
		}
	}
}
