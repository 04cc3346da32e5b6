package controlplane

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/egw-project/egw/api"
)

// Hubs: every cloud gateway replica is a hub.
//
// Replicas share one store and one cloud site; the cloud site's own gateway (the EGateway
// Config.HubGateway, NAT into the cloud LAN) runs on the replica that is named like it.
// Every replica, that one included, registers itself in the store on start (bucket hubs:
// its name, WireGuard public key, endpoint and overlay address) and every edge's snapshot
// lists every registered hub as a peer with Hub set, so an edge keeps a session to each,
// syncs from one and moves to another when it stops answering (gateway.SyncClient).
//
// The site gateway's replica keeps the hub overlay address (Config.HubOverlayIP, the first
// of the hub prefix). The other replicas take addresses from the top of the hub prefix's
// lower half, downwards (MaxHubs-1 of them): the hub gateway's ov(S) allocation skips those
// addresses, so a cloud-site service never gets one.

// MaxHubs is how many replicas can register as hubs: the site gateway's and MaxHubs-1
// others.
const MaxHubs = 8

// bucketHubs holds, per replica name, its HubInfo (JSON).
const bucketHubs = "hubs"

// HubInfo is one registered hub replica.
type HubInfo struct {
	Name      string     `json:"name"`
	PublicKey string     `json:"publicKey,omitempty"`
	Endpoint  string     `json:"endpoint,omitempty"` // host:port
	OverlayIP netip.Addr `json:"overlayIP"`
}

// hubSlot returns the overlay address of the i-th hub replica other than the site
// gateway's (0 ≤ i < MaxHubs-1): from the top of the hub prefix's lower half, downwards.
func hubSlot(cfg Config, i int) (netip.Addr, bool) {
	_, hi, ok := lowerHalf(cfg.HubPrefix())
	lo, _, _ := lowerHalf(cfg.HubPrefix())
	if !ok || i < 0 || i >= MaxHubs-1 || hi-uint32(i) < lo {
		return netip.Addr{}, false
	}
	return addrOf(hi - uint32(i)), true
}

// hubReserved reports whether a is an address of prefix p kept for hub replicas: an ov(S)
// allocation in the hub prefix skips it.
func hubReserved(cfg Config, p netip.Prefix, a netip.Addr) bool {
	if p != cfg.HubPrefix() {
		return false
	}
	for i := range MaxHubs - 1 {
		if s, ok := hubSlot(cfg, i); ok && s == a {
			return true
		}
	}
	return false
}

// loadHubs reads the hubs bucket (a store made before it existed has none).
func loadHubs(tx Tx) (map[string]HubInfo, error) {
	out := map[string]HubInfo{}
	err := tx.ForEach(bucketHubs, func(key string, val []byte) error {
		var h HubInfo
		if err := json.Unmarshal(val, &h); err != nil {
			return fmt.Errorf("store: hub %s: %w", key, err)
		}
		h.Name = key
		out[key] = h
		return nil
	})
	if err == errNoBucket {
		err = nil
	}
	return out, err
}

// Hubs returns the registered hub replicas, sorted by name.
func (s *Store) Hubs() ([]HubInfo, error) {
	var out []HubInfo
	err := s.read(func(m *model) error {
		out = m.hubList()
		return nil
	})
	return out, err
}

// hubList returns the registered hubs sorted by name.
func (m *model) hubList() []HubInfo {
	out := make([]HubInfo, 0, len(m.hubs))
	for _, n := range sortedKeys(m.hubs) {
		out = append(out, m.hubs[n])
	}
	return out
}

// setHub sets (or, with ok false, removes) the registration of hub name.
func (m *model) setHub(name string, h HubInfo, ok bool) {
	old, had := m.hubs[name]
	m.record(func() {
		if had {
			m.hubs[name] = old
		} else {
			delete(m.hubs, name)
		}
	})
	if ok {
		m.hubs[name] = h
	} else {
		delete(m.hubs, name)
	}
}

// RegisterHub registers (or updates) the hub replica name with its public key and
// endpoint, giving it an overlay address if it has none, and returns its registration.
// The replica named like the cloud site's gateway (Config.HubGateway) gets the hub overlay
// address; the others a reserved address of the hub prefix (at most MaxHubs in all).
func (s *Store) RegisterHub(name, publicKey, endpoint string) (HubInfo, error) {
	if err := api.CheckName(name); err != nil {
		return HubInfo{}, &Error{Code: CodeBadRequest, Field: "name", Message: err.Error()}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out HubInfo
	_, _, err := s.update(func(tx Tx, m *model) (*change, error) {
		old, had := m.hubs[name]
		h := HubInfo{Name: name, PublicKey: publicKey, Endpoint: endpoint, OverlayIP: old.OverlayIP}
		if name == s.cfg.HubGateway {
			h.OverlayIP = s.cfg.HubOverlayIP()
		} else if !had || !hubReserved(s.cfg, s.cfg.HubPrefix(), h.OverlayIP) {
			ip, ok := m.freeHubSlot(s.cfg)
			if !ok {
				return nil, &Error{Code: CodeExhausted, Object: "hub/" + name,
					Message: fmt.Sprintf("no hub slot left: at most %d cloud gateway replicas can be hubs (registered: %s)", MaxHubs, strings.Join(sortedKeys(m.hubs), ", "))}
			}
			h.OverlayIP = ip
		}
		out = h
		if had && old == h {
			return nil, errNoChange
		}
		ch := &change{rev: m.rev + 1, hubs: []string{name}}
		m.setHub(name, h, true)
		data, err := json.Marshal(h)
		if err != nil {
			return nil, err
		}
		if err := tx.Put(bucketHubs, name, data); err != nil {
			return nil, err
		}
		return ch, writeRevision(tx, ch.rev)
	})
	if err == errNoChange {
		return out, nil
	}
	if err != nil {
		return HubInfo{}, toError(err)
	}
	return out, nil
}

// freeHubSlot returns the highest reserved hub address no hub holds and no service
// (ov(S) of an older store) uses.
func (m *model) freeHubSlot(cfg Config) (netip.Addr, bool) {
	taken := map[netip.Addr]bool{}
	for _, h := range m.hubs {
		taken[h.OverlayIP] = true
	}
	for a := range m.ovOwner[cfg.HubGateway] {
		taken[a] = true
	}
	for i := range MaxHubs - 1 {
		if a, ok := hubSlot(cfg, i); ok && !taken[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// hubPeers returns the peers an edge has for the registered hub replicas other than the
// site gateway's (whose peer the compiler makes from its EGateway): Hub set, AllowedIPs
// the replica's overlay address alone.
func hubPeers(cfg Config, hubs []HubInfo) []api.Peer {
	var out []api.Peer
	for _, h := range hubs {
		if h.Name == cfg.HubGateway || h.PublicKey == "" || !h.OverlayIP.IsValid() {
			continue
		}
		out = append(out, api.Peer{Name: h.Name, Site: cfg.HubSite, PublicKey: h.PublicKey, Endpoint: h.Endpoint,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(h.OverlayIP, 32)}, OverlayIP: h.OverlayIP, Hub: true})
	}
	slices.SortFunc(out, func(a, b api.Peer) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// RegisterHub registers this replica as a hub (Store.RegisterHub) and recompiles the
// edges' snapshots, which list every hub.
func (s *Server) RegisterHub(name, publicKey, endpoint string) (HubInfo, error) {
	h, err := s.store.RegisterHub(name, publicKey, endpoint)
	if err != nil {
		return HubInfo{}, s.after(err)
	}
	s.log.Info("hub registered", "name", name, "overlayIP", h.OverlayIP, "endpoint", endpoint)
	return h, s.after(nil)
}

// Hubs returns the registered hub replicas, sorted by name.
func (s *Server) Hubs() ([]HubInfo, error) { return s.store.Hubs() }
