package controlplane

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
)

// bucketEndpoints holds, per gateway name, its GatewayEndpoints (JSON). It is written only
// when a gateway's endpoints change, in a transaction that bumps the global revision (the
// snapshots of its linked gateways carry them), so every replica sharing the store sees
// them.
const bucketEndpoints = "endpoints"

// MaxCandidates bounds the LAN candidates kept per gateway (api.Report.Candidates); a
// report with more keeps the first MaxCandidates usable ones.
const MaxCandidates = 8

// GatewayEndpoints are the UDP endpoints at which one gateway may be reached directly.
type GatewayEndpoints struct {
	// Observed is the endpoint a hub saw on its authenticated WireGuard session with the
	// gateway (Server.SetObservedEndpoint).
	Observed netip.AddrPort `json:"observed,omitzero"`
	// Reported are the LAN endpoints the gateway reported (api.Report.Candidates),
	// cleaned by cleanCandidates.
	Reported []netip.AddrPort `json:"reported,omitempty"`
}

// Candidates are the endpoints in the order api.Peer.Candidates lists them: the observed
// one, then the reported ones (without a repeat of the observed one). Nil when none.
func (e GatewayEndpoints) Candidates() []netip.AddrPort {
	var out []netip.AddrPort
	if e.Observed.IsValid() {
		out = append(out, e.Observed)
	}
	for _, c := range e.Reported {
		if c != e.Observed {
			out = append(out, c)
		}
	}
	return out
}

func (e GatewayEndpoints) equal(o GatewayEndpoints) bool {
	return e.Observed == o.Observed && slices.Equal(e.Reported, o.Reported)
}

func (e GatewayEndpoints) empty() bool { return !e.Observed.IsValid() && len(e.Reported) == 0 }

// usableEndpoint reports whether ap may be a peer's UDP endpoint: a unicast address and a
// port.
func usableEndpoint(ap netip.AddrPort) bool {
	a := ap.Addr()
	return ap.IsValid() && ap.Port() != 0 && a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() &&
		!(a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255}))
}

// cleanCandidates returns the usable endpoints of cands (IPv4-mapped ones unmapped, zones
// dropped), without repeats, in their order, at most MaxCandidates.
func cleanCandidates(cands []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, c := range cands {
		if len(out) == MaxCandidates {
			break
		}
		c = netip.AddrPortFrom(c.Addr().Unmap().WithZone(""), c.Port())
		if usableEndpoint(c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// loadEndpoints reads the endpoints bucket (a store made before it existed has none).
func loadEndpoints(tx Tx) (map[string]GatewayEndpoints, error) {
	out := map[string]GatewayEndpoints{}
	err := tx.ForEach(bucketEndpoints, func(key string, val []byte) error {
		var e GatewayEndpoints
		if err := json.Unmarshal(val, &e); err != nil {
			return fmt.Errorf("store: endpoints of %s: %w", key, err)
		}
		out[key] = e
		return nil
	})
	if err == errNoBucket {
		err = nil
	}
	return out, err
}

// Endpoints returns the known endpoints of every gateway that has any.
func (s *Store) Endpoints() (map[string]GatewayEndpoints, error) {
	out := map[string]GatewayEndpoints{}
	err := s.read(func(m *model) error {
		for k, e := range m.eps {
			out[k] = e
		}
		return nil
	})
	return out, err
}

// endpointsOf returns the stored endpoints of one gateway as the model holds them,
// without reading the backend.
func (s *Store) endpointsOf(gw string) GatewayEndpoints {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.m == nil {
		return GatewayEndpoints{}
	}
	return s.m.eps[gw]
}

// endpointChange is one pending change of a gateway's endpoints: the new observed
// endpoint and/or the new reported candidates.
type endpointChange struct {
	observed    netip.AddrPort
	setObserved bool
	reported    []netip.AddrPort
	setReported bool
}

// setEndpoints applies changes in one transaction and returns the new revision (0: nothing
// changed). Entries of gateways that do not exist are not stored.
func (s *Store) setEndpoints(changes map[string]endpointChange) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ch, err := s.update(func(tx Tx, m *model) (*change, error) {
		ch := &change{rev: m.rev + 1}
		for _, gw := range sortedKeys(changes) {
			c := changes[gw]
			if _, ok := m.gateways[gw]; !ok {
				continue
			}
			old := m.eps[gw]
			next := old
			if c.setObserved {
				next.Observed = c.observed
			}
			if c.setReported {
				next.Reported = c.reported
			}
			if next.equal(old) {
				continue
			}
			ch.endpoints = append(ch.endpoints, gw)
			m.setEndpoints(gw, next)
			if next.empty() {
				if err := tx.Delete(bucketEndpoints, gw); err != nil {
					return nil, err
				}
				continue
			}
			data, err := json.Marshal(next)
			if err != nil {
				return nil, err
			}
			if err := tx.Put(bucketEndpoints, gw, data); err != nil {
				return nil, err
			}
		}
		if len(ch.endpoints) == 0 {
			return nil, errNoChange
		}
		return ch, writeRevision(tx, ch.rev)
	})
	if err == errNoChange {
		return 0, nil
	}
	if err != nil {
		return 0, toError(err)
	}
	return ch.rev, nil
}

func keyGateway(name string) string { return "EGateway/" + name }
