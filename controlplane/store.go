package controlplane

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/egw-project/egw/api"
)

// Labels the control plane puts on the VirtualPresences it manages.
const (
	LabelManaged = "egw.io/managed" // "true" on managed VirtualPresences
	LabelExpose  = "egw.io/expose"  // the ServiceExpose a managed VirtualPresence belongs to
)

// IPAM is the allocation state kept in the store beside the objects and written in the
// same transaction. VIPs are not here: each lives in its VirtualPresence object.
type IPAM struct {
	// Gateways maps an EGateway name to its overlay prefix.
	Gateways map[string]netip.Prefix `json:"gateways,omitempty"`
	// Services maps an exposed EService name to its overlay address ov(S).
	Services map[string]ServiceAddr `json:"services,omitempty"`
}

// ServiceAddr is the overlay address of an exposed service in its home gateway's prefix.
type ServiceAddr struct {
	Gateway string     `json:"gateway"`
	Addr    netip.Addr `json:"addr"`
}

func (m IPAM) clone() IPAM {
	c := IPAM{Gateways: map[string]netip.Prefix{}, Services: map[string]ServiceAddr{}}
	for k, v := range m.Gateways {
		c.Gateways[k] = v
	}
	for k, v := range m.Services {
		c.Services[k] = v
	}
	return c
}

func (m IPAM) equal(o IPAM) bool {
	if len(m.Gateways) != len(o.Gateways) || len(m.Services) != len(o.Services) {
		return false
	}
	for k, v := range m.Gateways {
		if o.Gateways[k] != v {
			return false
		}
	}
	for k, v := range m.Services {
		if o.Services[k] != v {
			return false
		}
	}
	return true
}

// State is the whole store at one revision: every object (without status) and the IPAM
// state. Objects are keyed by api.Key ("Kind/name").
type State struct {
	Revision int64
	Objects  map[string]api.Object
	IPAM     IPAM
	// Endpoints are the gateways' known UDP endpoints (bucket endpoints).
	Endpoints map[string]GatewayEndpoints
}

// List returns the objects of kind, sorted by name; every kind if kind is "".
func (st *State) List(kind string) []api.Object {
	var out []api.Object
	for _, o := range st.Objects {
		if kind == "" || o.GetKind() == kind {
			out = append(out, o)
		}
	}
	slices.SortFunc(out, func(a, b api.Object) int {
		if c := strings.Compare(kindOrder(a.GetKind()), kindOrder(b.GetKind())); c != 0 {
			return c
		}
		return strings.Compare(a.GetMeta().Name, b.GetMeta().Name)
	})
	return out
}

func kindOrder(k string) string {
	return fmt.Sprintf("%02d", slices.Index(api.Kinds, k))
}

// Result is what a write did to one object.
type Result struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Action string `json:"action"` // created, configured, unchanged, deleted
}

// Ref names one object.
type Ref struct{ Kind, Name string }

// Store keeps EGW's objects and IPAM state in a Backend, and the decoded state with its
// indexes in memory (model). Every write method is one transaction that applies the
// change to the model, validates what it touches (validateDelta), reconciles the
// allocations it touches (reconcileDelta: overlay prefixes, ov(S), managed
// VirtualPresences), writes the changed objects and allocations, and bumps the global
// revision only if something changed; if anything fails, the model is reverted and
// nothing is stored. Objects returned by the Store are the caller's to modify.
//
// The model follows the backend: a reader or writer that finds the backend at another
// revision (another replica wrote) brings it forward by the keys that changed when the
// backend reports them (KeyFeed, see feed.go), else reloads it whole.
type Store struct {
	b   Backend
	cfg Config

	// mu guards m: a write holds it for its whole transaction, readers share it.
	mu sync.RWMutex
	m  *model

	// chMu guards changes: what the committed writes changed, not yet taken by a Server
	// (takeChanges).
	chMu    sync.Mutex
	changes []*change

	// idMu guards id, the store's ID once read (ID).
	idMu sync.Mutex
	id   string

	// feed queues the other writers' transactions (a KeyFeed backend; nil otherwise).
	feed *storeFeed
}

// change is what one committed write changed: what a Server needs to find the snapshots
// to recompile.
type change struct {
	rev int64
	// full: the model was (re)loaded whole; every snapshot is recompiled.
	full bool
	objs []objChange
	// prefixes are the gateways whose overlay prefix changed, services those whose ov(S)
	// changed, endpoints the gateways whose endpoints changed.
	prefixes, services, endpoints []string
	// pinPairs are the (service, site) pairs whose pinned VIP changed.
	pinPairs [][2]string
	// hubs are the hub replicas whose registration changed (every edge lists every hub).
	hubs []string
	// validated is how many objects the write validated.
	validated int
}

type objChange struct{ old, new api.Object }

// NewStore returns a Store over b. cfg must be valid (Config.WithDefaults, Validate).
func NewStore(b Backend, cfg Config) *Store {
	s := &Store{b: b, cfg: cfg}
	s.startFeed()
	return s
}

// Open opens the bbolt store in stateDir.
func Open(stateDir string, cfg Config) (*Store, error) {
	b, err := OpenBolt(stateDir)
	if err != nil {
		return nil, err
	}
	return NewStore(b, cfg), nil
}

// ID returns the store's ID: 32 random hex digits made once, when the store is first used,
// and kept in the store itself (bucket meta, key storeID). Every compiled snapshot carries
// it (api.Snapshot.StoreID): a store that was reset (a new file) has a new ID and its
// revisions start over, which tells a gateway to accept a lower revision.
//
// A byte-for-byte copy of the file (a restored backup) keeps the ID of the store it was
// copied from; RotateID gives such a store a new one.
func (s *Store) ID() (string, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.id != "" {
		return s.id, nil
	}
	var id string
	err := s.b.View(func(tx Tx) error {
		id = string(tx.Get(bucketMeta, keyStoreID))
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("store: reading its ID: %w", err)
	}
	if id == "" {
		err = s.b.Update(func(tx Tx) error {
			if v := tx.Get(bucketMeta, keyStoreID); len(v) > 0 {
				id = string(v) // another process made it first
				return nil
			}
			id = newStoreID()
			return tx.Put(bucketMeta, keyStoreID, []byte(id))
		})
		if err != nil {
			return "", fmt.Errorf("store: writing its ID: %w", err)
		}
	}
	s.id = id
	return id, nil
}

// RotateID gives the store a new random ID and returns it: for a store restored from a
// backup, so that gateways that applied later revisions of the original follow it back.
// A Server made over the store before the rotation keeps the old ID until it is made anew.
func (s *Store) RotateID() (string, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	id := newStoreID()
	if err := s.b.Update(func(tx Tx) error { return tx.Put(bucketMeta, keyStoreID, []byte(id)) }); err != nil {
		return "", fmt.Errorf("store: writing its ID: %w", err)
	}
	s.id = id
	return id, nil
}

// newStoreID returns 16 random bytes in hex.
func newStoreID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Close closes the backend.
func (s *Store) Close() error {
	if s.feed != nil {
		s.feed.cancel()
	}
	return s.b.Close()
}

// Backend returns the backend under the store.
func (s *Store) Backend() Backend { return s.b }

// addChange queues a committed change for the Server.
func (s *Store) addChange(c *change) {
	s.chMu.Lock()
	if c.full {
		s.changes = s.changes[:0] // a full reload covers everything before it
	}
	s.changes = append(s.changes, c)
	s.chMu.Unlock()
}

// takeChanges returns and forgets the queued changes.
func (s *Store) takeChanges() []*change {
	s.chMu.Lock()
	defer s.chMu.Unlock()
	c := s.changes
	s.changes = nil
	return c
}

// syncLocked makes the model the state at tx's revision: by the feed's batches if the
// backend has one (another replica wrote), else by loading it whole (the first use, or
// another process wrote). s.mu is held exclusively.
func (s *Store) syncLocked(tx Tx) error {
	rev := readRevision(tx)
	if s.m != nil && s.feed != nil {
		if s.m.rev >= rev {
			// Current, or ahead of a read of the last watched state (etcd away): drop the
			// batches the model holds (this replica's own writes).
			if ok, _ := s.drainLocked(s.m.rev); !ok {
				s.resetFeedLocked(s.m.rev)
			}
			return nil
		}
		if s.syncFeedLocked(rev) {
			return nil
		}
		s.feed.reloads.Add(1)
	} else if s.m != nil && s.m.rev == rev {
		return nil
	}
	m, err := loadModel(tx, s.cfg)
	if err != nil {
		return err
	}
	s.m = m
	s.resetFeedLocked(m.rev)
	s.addChange(&change{rev: m.rev, full: true})
	return nil
}

// sync reloads the model if the backend is at another revision.
func (s *Store) sync() error {
	var rev int64
	if err := s.b.View(func(tx Tx) error { rev = readRevision(tx); return nil }); err != nil {
		return err
	}
	s.mu.RLock()
	ok := s.m != nil && s.m.rev == rev && !s.feed.pending()
	s.mu.RUnlock()
	if ok {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.View(func(tx Tx) error { return s.syncLocked(tx) })
}

// read runs fn on the latest model, shared with other readers (fn must not modify it).
func (s *Store) read(fn func(*model) error) error {
	if err := s.sync(); err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return fn(s.m)
}

// Load returns the whole state at the latest revision. The objects are the caller's. It
// copies every object: for tests and tools, not for a path that runs per request.
func (s *Store) Load() (*State, error) {
	var st *State
	err := s.read(func(m *model) error {
		st = m.state()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for k, o := range st.Objects {
		st.Objects[k] = api.DeepCopy(o)
	}
	return st, nil
}

// loadShared returns the latest state but the managed VirtualPresences the model keeps
// compactly (a state for looking the user's objects up); its objects are shared with the
// model and must not be modified. It builds a map of every object: for a path that runs
// per request, SiteGateway answers what it is mostly asked.
func (s *Store) loadShared() (*State, error) {
	var st *State
	err := s.read(func(m *model) error {
		st = &State{Revision: m.rev, Objects: make(map[string]api.Object, m.count()-len(m.mvps)), IPAM: m.ipam.clone(),
			Endpoints: make(map[string]GatewayEndpoints, len(m.eps))}
		m.forEachButCompact(func(o api.Object) { st.Objects[api.Key(o)] = o })
		for k, e := range m.eps {
			st.Endpoints[k] = e
		}
		return nil
	})
	return st, err
}

// SiteGateway reports whether site exists and returns the gateway serving it, if any (a
// copy).
func (s *Store) SiteGateway(site string) (*api.EGateway, bool, error) {
	var g *api.EGateway
	exists := false
	err := s.read(func(m *model) error {
		_, exists = m.sites[site]
		if sg, ok := m.siteGateway(site); ok {
			g = api.DeepCopy(sg).(*api.EGateway)
		}
		return nil
	})
	return g, exists, err
}

// Revision returns the latest revision.
func (s *Store) Revision() (int64, error) {
	var rev int64
	err := s.b.View(func(tx Tx) error {
		rev = readRevision(tx)
		return nil
	})
	return rev, err
}

func readRevision(tx Tx) int64 {
	if v := tx.Get(bucketMeta, keyRevision); len(v) == 8 {
		return int64(binary.BigEndian.Uint64(v))
	}
	return 0
}

func writeRevision(tx Tx, rev int64) error {
	var rb [8]byte
	binary.BigEndian.PutUint64(rb[:], uint64(rev))
	return tx.Put(bucketMeta, keyRevision, rb[:])
}

// loadModel reads the whole state in tx. The objects are decoded by GOMAXPROCS workers.
func loadModel(tx Tx, cfg Config) (*model, error) {
	m := newModel(cfg)
	m.rev = readRevision(tx)
	type raw struct {
		key string
		val []byte
		obj api.Object
		err error
	}
	var raws []raw
	err := tx.ForEach(bucketObjects, func(key string, val []byte) error {
		raws = append(raws, raw{key: key, val: val})
		return nil
	})
	if err != nil {
		return nil, err
	}
	decode := func(r *raw) {
		kind, _, ok := strings.Cut(r.key, "/")
		if !ok {
			r.err = fmt.Errorf("store: bad key %q", r.key)
			return
		}
		o, err := api.New(kind)
		if err != nil {
			r.err = fmt.Errorf("store: %s: %w", r.key, err)
			return
		}
		if err := json.Unmarshal(r.val, o); err != nil {
			r.err = fmt.Errorf("store: %s: %w", r.key, err)
			return
		}
		r.obj, r.val = o, nil
	}
	workers := min(runtime.GOMAXPROCS(0), 8)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(raws); i += workers {
				decode(&raws[i])
			}
		}()
	}
	wg.Wait()
	for i := range raws {
		r := &raws[i]
		if r.err != nil {
			return nil, r.err
		}
		m.setRaw(r.key, r.obj)
	}
	raws = nil
	if err := loadCompactVPs(tx, m); err != nil {
		return nil, err
	}
	ipam, legacy, err := loadIPAM(tx)
	if err != nil {
		return nil, err
	}
	m.legacyIPAM = legacy
	for _, gw := range sortedKeys(ipam.Gateways) {
		m.setGatewayPrefixRaw(gw, ipam.Gateways[gw], true)
	}
	for _, svc := range sortedKeys(ipam.Services) {
		m.setServiceAddrRaw(svc, ipam.Services[svc], true)
	}
	if m.eps, err = loadEndpoints(tx); err != nil {
		return nil, err
	}
	if m.hubs, err = loadHubs(tx); err != nil {
		return nil, err
	}
	m.resolvePins()
	m.checkFit()
	return m, nil
}

// errNoChange rolls a write transaction back when nothing changed.
var errNoChange = errors.New("no change")

// writeTx is one write in progress: the objects it touched with their values before it.
type writeTx struct {
	m *model
	// before holds, for every key put or deleted, the object before the write (nil:
	// absent).
	before map[string]api.Object
	// prefixesBefore and servicesBefore hold the allocations before the write of the
	// gateways and services whose allocation reconcileDelta changed.
	prefixesBefore map[string]opt[netip.Prefix]
	servicesBefore map[string]opt[ServiceAddr]
	// needPrefix names a gateway the write must give an overlay prefix (Create), or
	// fail.
	needPrefix string
	// full asks for a full validation and reconcile (the configuration changed the
	// address plan under stored allocations).
	full bool
	// validated counts the objects validated.
	validated int
}

// opt is an allocation before a write: v if ok, else none.
type opt[V any] struct {
	v  V
	ok bool
}

func newWriteTx(m *model) *writeTx {
	return &writeTx{m: m, before: map[string]api.Object{}, prefixesBefore: map[string]opt[netip.Prefix]{},
		servicesBefore: map[string]opt[ServiceAddr]{}}
}

func (w *writeTx) get(key string) (api.Object, bool) {
	return w.m.get(key)
}

func (w *writeTx) touch(key string) {
	if _, seen := w.before[key]; !seen {
		w.before[key], _ = w.m.get(key)
	}
}

// put stores o (which the write owns: a fresh object) under its key.
func (w *writeTx) put(o api.Object) {
	k := api.Key(o)
	w.touch(k)
	w.m.set(k, o)
}

func (w *writeTx) del(key string) {
	w.touch(key)
	w.m.set(key, nil)
}

func (w *writeTx) setPrefix(gw string, p netip.Prefix, ok bool) {
	if _, seen := w.prefixesBefore[gw]; !seen {
		old, had := w.m.ipam.Gateways[gw]
		w.prefixesBefore[gw] = opt[netip.Prefix]{old, had}
	}
	w.m.setGatewayPrefix(gw, p, ok)
}

func (w *writeTx) setServiceAddr(svc string, a ServiceAddr, ok bool) {
	if _, seen := w.servicesBefore[svc]; !seen {
		old, had := w.m.ipam.Services[svc]
		w.servicesBefore[svc] = opt[ServiceAddr]{old, had}
	}
	w.m.setServiceAddr(svc, a, ok)
}

// update runs fn on the model inside one Backend transaction and returns the model and
// fn's change. fn changes the model through its undo log: when the backend runs the
// transaction again (etcd lost a race) or it fails, the model is rolled back; when it
// commits, the model keeps the change, takes its revision and the change is queued for the
// server. errNoChange from fn rolls back and is returned as is. Must hold s.mu.
func (s *Store) update(fn func(tx Tx, m *model) (*change, error)) (*model, *change, error) {
	var m *model
	var ch *change
	err := s.b.Update(func(tx Tx) error {
		if m != nil && m.logging {
			m.rollback() // a backend runs the transaction again (etcd: it lost a race)
		}
		if err := s.syncLocked(tx); err != nil {
			return err
		}
		m = s.m
		m.begin()
		var err error
		ch, err = fn(tx, m)
		return err
	})
	if m != nil && m.logging {
		if err == nil {
			m.commit()
			m.rev = ch.rev
			s.addChange(ch)
		} else {
			m.rollback()
		}
	}
	return m, ch, err
}

// write runs mut on the model inside one Backend transaction, then validates, reconciles
// and writes what changed (see Store).
func (s *Store) write(mut func(w *writeTx) ([]Result, error)) (int64, []Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var results []Result
	var w *writeTx
	m, ch, err := s.update(func(tx Tx, m *model) (*change, error) {
		w = newWriteTx(m)
		w.full = m.needFull
		var err error
		if results, err = mut(w); err != nil {
			return nil, err
		}
		return s.commitWrite(tx, w)
	})
	if err == nil {
		m.legacyIPAM = false // commitWrite stored it per key
		if w.full {
			m.needFull = false
		}
	}
	if errors.Is(err, errNoChange) {
		return m.rev, results, nil
	}
	if err != nil {
		return 0, nil, toError(err)
	}
	return ch.rev, results, nil
}

// commitWrite validates and reconciles the write, then writes what changed into tx.
func (s *Store) commitWrite(tx Tx, w *writeTx) (*change, error) {
	m := w.m
	oldPins := m.pins
	m.resolvePins()
	if w.full {
		if err := fullValidateReconcile(w); err != nil {
			return nil, err
		}
	} else {
		if err := validateDelta(w); err != nil {
			return nil, err
		}
		reconcileDelta(w, oldPins)
	}
	if w.needPrefix != "" {
		if _, ok := m.ipam.Gateways[w.needPrefix]; !ok {
			return nil, &Error{Code: CodeExhausted, Object: api.KindEGateway + "/" + w.needPrefix,
				Message: fmt.Sprintf("no overlay prefix left: every /%d of the overlay CIDR %s is taken (%d gateways at most); nothing was stored. Delete unused gateways, or choose a larger overlayCIDR or a longer overlayPrefixLen for the cloud gateway",
					s.cfg.OverlayPrefixLen, s.cfg.OverlayCIDR, prefixCount(s.cfg))}
		}
	}

	newRev := m.rev + 1
	ch := &change{rev: newRev, validated: w.validated}
	for _, k := range sortedKeys(w.before) {
		old := w.before[k]
		cur, _ := m.get(k)
		if old == cur {
			continue
		}
		if old != nil && cur != nil && sameObject(old, cur) {
			m.set(k, old)
			continue
		}
		ch.objs = append(ch.objs, objChange{old, cur})
		if cur == nil {
			if err := deleteObject(tx, k); err != nil {
				return nil, err
			}
			// A gateway's endpoints go with it.
			if g, ok := old.(*api.EGateway); ok {
				if _, had := m.eps[g.Metadata.Name]; had {
					m.setEndpoints(g.Metadata.Name, GatewayEndpoints{})
					ch.endpoints = append(ch.endpoints, g.Metadata.Name)
					if err := tx.Delete(bucketEndpoints, g.Metadata.Name); err != nil {
						return nil, err
					}
				}
			}
			continue
		}
		meta := cur.GetMeta()
		meta.ResourceVersion = newRev
		if old != nil {
			meta.CreationRevision = old.GetMeta().CreationRevision
		} else {
			meta.CreationRevision = newRev
		}
		if c, ok := m.mvps[meta.Name]; ok && cur.GetKind() == api.KindVirtualPresence {
			c.rv, c.crev = meta.ResourceVersion, meta.CreationRevision // cur is a copy of it
		}
		if err := putObject(tx, k, cur); err != nil {
			return nil, err
		}
	}
	var err error
	if ch.prefixes, err = putChanged(tx, ch.prefixes, w.prefixesBefore, m.ipam.Gateways, putGatewayPrefix); err != nil {
		return nil, err
	}
	if ch.services, err = putChanged(tx, ch.services, w.servicesBefore, m.ipam.Services, putServiceAddr); err != nil {
		return nil, err
	}
	ch.pinPairs = pinChanges(oldPins, m.pins)
	if len(ch.objs) == 0 && len(ch.prefixes) == 0 && len(ch.services) == 0 && len(ch.endpoints) == 0 && !m.legacyIPAM {
		return nil, errNoChange
	}
	if m.legacyIPAM {
		if err := storeIPAMPerKey(tx, m.ipam); err != nil {
			return nil, err
		}
	}
	if err := writeRevision(tx, newRev); err != nil {
		return nil, err
	}
	return ch, nil
}

// putChanged writes with put, in key order, every allocation of before that differs in
// now (put removes one no longer there), and returns changed with their keys appended.
func putChanged[V comparable](tx Tx, changed []string, before map[string]opt[V], now map[string]V, put func(Tx, string, V, bool) error) ([]string, error) {
	for _, k := range sortedKeys(before) {
		old := before[k]
		v, ok := now[k]
		if old.ok == ok && old.v == v {
			continue
		}
		changed = append(changed, k)
		if err := put(tx, k, v, ok); err != nil {
			return nil, err
		}
	}
	return changed, nil
}

// pinChanges returns the (service, site) pairs whose pin differs between two resolutions.
func pinChanges(before, after []*pin) [][2]string {
	type val struct {
		ip, gw string
	}
	state := func(ps []*pin) map[[2]string]val {
		out := map[[2]string]val{}
		for _, p := range ps {
			if p.site == "" {
				continue
			}
			k := [2]string{p.vp.EServiceName, p.site}
			if _, dup := out[k]; !dup {
				out[k] = val{p.ip.String(), p.gateway.Metadata.Name + "|" + p.gateway.VirtualPresenceIPcidr}
			}
		}
		return out
	}
	b, a := state(before), state(after)
	var out [][2]string
	for k, v := range b {
		if w, ok := a[k]; !ok || w != v {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// bucketVIPs holds the managed VirtualPresences in a compact form (compactVP), one key
// per name: there are many (one per exposure and site), and decoding them as JSON
// dominated loading the store. Those that do not have exactly the managed form, and
// those of stores made before the bucket existed, stay JSON in the objects bucket.
const bucketVIPs = "vips"

// compactVP encodes a managed VirtualPresence of the managed form (isManagedAs), or
// reports false.
func compactVP(o api.Object) ([]byte, bool) {
	vp, ok := o.(*api.VirtualPresence)
	if !ok || !isManagedAs(vp, vp.VirtualIP, vp.EServiceName, vp.ESiteName, vp.Metadata.Labels[LabelExpose]) {
		return nil, false
	}
	m := vp.Metadata
	return []byte(strings.Join([]string{"1", m.Labels[LabelExpose], vp.EServiceName, vp.ESiteName, vp.VirtualIP,
		strconv.FormatInt(m.ResourceVersion, 10), strconv.FormatInt(m.CreationRevision, 10)}, "\x00")), true
}

// putObject stores o under key k: compact if it is a managed VirtualPresence of the
// managed form, else as JSON without its status (and not in the other bucket).
func putObject(tx Tx, k string, o api.Object) error {
	if data, ok := compactVP(o); ok {
		if err := tx.Put(bucketVIPs, o.GetMeta().Name, data); err != nil {
			return err
		}
		return tx.Delete(bucketObjects, k)
	}
	data, err := encodeStored(o)
	if err != nil {
		return err
	}
	if err := tx.Put(bucketObjects, k, data); err != nil {
		return err
	}
	if o.GetKind() == api.KindVirtualPresence {
		return tx.Delete(bucketVIPs, o.GetMeta().Name)
	}
	return nil
}

// deleteObject removes the object stored under key k.
func deleteObject(tx Tx, k string) error {
	if err := tx.Delete(bucketObjects, k); err != nil {
		return err
	}
	if name, ok := strings.CutPrefix(k, api.KindVirtualPresence+"/"); ok {
		return tx.Delete(bucketVIPs, name)
	}
	return nil
}

// loadCompactVPs reads the vips bucket into m (after the objects, whose names its
// strings share).
func loadCompactVPs(tx Tx, m *model) error {
	err := tx.ForEach(bucketVIPs, func(name string, val []byte) error {
		f := strings.Split(string(val), "\x00")
		if len(f) != 7 || f[0] != "1" {
			return fmt.Errorf("store: VirtualPresence/%s: bad compact form", name)
		}
		rv, err1 := strconv.ParseInt(f[5], 10, 64)
		crev, err2 := strconv.ParseInt(f[6], 10, 64)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("store: VirtualPresence/%s: bad revisions", name)
		}
		c := &mvp{expose: f[1], service: f[2], site: f[3], rv: rv, crev: crev}
		if f[4] != "" {
			ip, err := netip.ParseAddr(f[4])
			if err != nil || !ip.Is4() {
				return fmt.Errorf("store: VirtualPresence/%s: bad VIP %q", name, f[4])
			}
			c.vip = u32(ip)
		}
		m.share(c)
		if m.hasVP(name) {
			m.setVP(name, nil) // also stored as JSON by a version before the bucket
		}
		m.mvps[name] = c
		ip, _ := c.vipAddr()
		m.indexManaged(name, pairKey{c.expose, c.site}, ip)
		return nil
	})
	if errors.Is(err, errNoBucket) {
		err = nil
	}
	return err
}

// sameObject reports whether a and b are the same object as a user wrote it (api.Equal),
// comparing two managed VirtualPresences of the managed form field by field.
func sameObject(a, b api.Object) bool {
	va, ok1 := a.(*api.VirtualPresence)
	vb, ok2 := b.(*api.VirtualPresence)
	if ok1 && ok2 && va.Metadata.Name == vb.Metadata.Name &&
		isManagedAs(va, va.VirtualIP, va.EServiceName, va.ESiteName, va.Metadata.Labels[LabelExpose]) &&
		isManagedAs(vb, vb.VirtualIP, vb.EServiceName, vb.ESiteName, vb.Metadata.Labels[LabelExpose]) {
		return va.VirtualIP == vb.VirtualIP && va.EServiceName == vb.EServiceName && va.ESiteName == vb.ESiteName &&
			va.Metadata.Labels[LabelExpose] == vb.Metadata.Labels[LabelExpose]
	}
	return api.Equal(a, b)
}

// encodeStored marshals o without its status.
func encodeStored(o api.Object) ([]byte, error) {
	c := api.DeepCopy(o)
	*c.GetStatus() = api.Status{}
	return json.Marshal(c)
}

// prepare normalizes and validates one object given to a write, returning a copy.
func prepare(o api.Object) (api.Object, error) {
	if o == nil {
		return nil, &Error{Code: CodeBadRequest, Message: "no object"}
	}
	c := api.DeepCopy(o)
	if c == nil {
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("unknown object type %T", o)}
	}
	api.Normalize(c)
	if err := api.Validate(c); err != nil {
		return nil, err
	}
	*c.GetStatus() = api.Status{}
	return c, nil
}

// checkManaged refuses a hand change of a managed VirtualPresence.
func checkManaged(old api.Object, verb string) error {
	if vp, ok := old.(*api.VirtualPresence); ok && vp.Metadata.Labels[LabelManaged] == "true" {
		return &Error{Code: CodeInvalid, Object: api.Key(old), Field: "metadata.labels",
			Message: fmt.Sprintf("is managed by ServiceExpose %q and cannot be %s by hand; change the exposure, or apply a VirtualPresence of your own with a virtualIp to pin the VIP",
				vp.Metadata.Labels[LabelExpose], verb)}
	}
	return nil
}

// Apply creates or updates every object, all or nothing. An object whose
// metadata.resourceVersion is set must match the stored one. Applying objects equal to
// the stored ones changes nothing and keeps the revision.
func (s *Store) Apply(objs []api.Object) (int64, []Result, error) {
	prepared := make([]api.Object, 0, len(objs))
	seen := map[string]bool{}
	for _, o := range objs {
		c, err := prepare(o)
		if err != nil {
			return 0, nil, toError(err)
		}
		k := api.Key(c)
		if seen[k] {
			return 0, nil, &Error{Code: CodeBadRequest, Object: k, Message: "appears twice in one request"}
		}
		seen[k] = true
		prepared = append(prepared, c)
	}
	return s.write(func(w *writeTx) ([]Result, error) {
		res := make([]Result, 0, len(prepared))
		for _, o := range prepared {
			k := api.Key(o)
			r := Result{Kind: o.GetKind(), Name: o.GetMeta().Name}
			old, ok := w.get(k)
			switch {
			case !ok:
				r.Action = "created"
			case api.Equal(old, o):
				r.Action = "unchanged"
				res = append(res, r)
				continue
			default:
				if err := checkRV(old, o.GetMeta().ResourceVersion); err != nil {
					return nil, err
				}
				if err := checkManaged(old, "changed"); err != nil {
					return nil, err
				}
				r.Action = "configured"
			}
			w.put(api.DeepCopy(o)) // a copy per attempt: the commit stamps it
			res = append(res, r)
		}
		return res, nil
	})
}

func checkRV(old api.Object, rv int64) error {
	if rv != 0 && rv != old.GetMeta().ResourceVersion {
		return &Error{Code: CodeConflict, Object: api.Key(old), Field: "metadata.resourceVersion",
			Message: fmt.Sprintf("is %d but the stored object is at %d: it changed since you read it", rv, old.GetMeta().ResourceVersion)}
	}
	return nil
}

// Create stores a new object; it is a conflict if one of that kind and name exists. A new
// EGateway must get an overlay prefix: when none is left, Create fails (CodeExhausted)
// and stores nothing (Apply stores it and reports Allocated=False instead).
func (s *Store) Create(o api.Object) (api.Object, error) {
	c, err := prepare(o)
	if err != nil {
		return nil, toError(err)
	}
	k := api.Key(c)
	_, _, err = s.write(func(w *writeTx) ([]Result, error) {
		if _, ok := w.get(k); ok {
			return nil, &Error{Code: CodeConflict, Object: k, Message: "already exists"}
		}
		if c.GetKind() == api.KindEGateway {
			w.needPrefix = c.GetMeta().Name
		}
		w.put(api.DeepCopy(c)) // a copy per attempt: the commit stamps it
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return s.Get(c.GetKind(), c.GetMeta().Name)
}

// Update replaces an existing object. If expectedRV is not 0 it must equal the stored
// resourceVersion, else the update is a conflict (the object changed since it was read).
func (s *Store) Update(o api.Object, expectedRV int64) (api.Object, error) {
	c, err := prepare(o)
	if err != nil {
		return nil, toError(err)
	}
	k := api.Key(c)
	_, _, err = s.write(func(w *writeTx) ([]Result, error) {
		old, ok := w.get(k)
		if !ok {
			return nil, &Error{Code: CodeNotFound, Object: k, Message: "not found"}
		}
		if err := checkRV(old, expectedRV); err != nil {
			return nil, err
		}
		if api.Equal(old, c) {
			return nil, nil
		}
		if err := checkManaged(old, "changed"); err != nil {
			return nil, err
		}
		w.put(api.DeepCopy(c)) // a copy per attempt: the commit stamps it
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return s.Get(c.GetKind(), c.GetMeta().Name)
}

// Delete removes one object; it is NotFound if absent.
func (s *Store) Delete(kind, name string) (int64, error) {
	rev, _, err := s.DeleteAll([]Ref{{kind, name}})
	return rev, err
}

// DeleteAll removes every named object, all or nothing.
func (s *Store) DeleteAll(refs []Ref) (int64, []Result, error) {
	return s.write(func(w *writeTx) ([]Result, error) {
		var res []Result
		for _, r := range refs {
			kind, err := api.ParseKind(r.Kind)
			if err != nil {
				return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
			}
			k := kind + "/" + r.Name
			old, ok := w.get(k)
			if !ok {
				return nil, &Error{Code: CodeNotFound, Object: k, Message: "not found"}
			}
			if err := checkManaged(old, "deleted"); err != nil {
				return nil, err
			}
			w.del(k)
			res = append(res, Result{Kind: kind, Name: r.Name, Action: "deleted"})
		}
		return res, nil
	})
}

// Get returns one object with its status (conditions and allocations) filled in.
func (s *Store) Get(kind, name string) (api.Object, error) {
	k, err := api.ParseKind(kind)
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	var out api.Object
	err = s.read(func(m *model) error {
		o, ok := m.lookup(k, name)
		if !ok {
			return &Error{Code: CodeNotFound, Object: k + "/" + name, Message: "not found"}
		}
		out = api.DeepCopy(o)
		fillObjectStatus(m, out)
		return nil
	})
	return out, err
}

// List returns every object of kind with its status, sorted by name, and the revision.
func (s *Store) List(kind string) ([]api.Object, int64, error) {
	items, rev, _, err := s.ListPage(kind, 0, "")
	return items, rev, err
}

// MaxPageSize bounds the objects one page of a list holds (ListPage).
const MaxPageSize = 5000

// ListPage returns up to limit objects of kind (0: all; at most MaxPageSize when set),
// sorted by name, starting after the position cont names ("" for the first page), with
// their status, the revision and the token of the next page ("" after the last). Each
// page is read at the latest revision: an object created or deleted between two pages
// shows or not depending on its name, but an object that exists throughout is listed
// exactly once.
func (s *Store) ListPage(kind string, limit int, cont string) ([]api.Object, int64, string, error) {
	k, err := api.ParseKind(kind)
	if err != nil {
		return nil, 0, "", &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	after := ""
	if cont != "" {
		if after, err = decodeContinue(k, cont); err != nil {
			return nil, 0, "", err
		}
	}
	if limit < 0 {
		return nil, 0, "", &Error{Code: CodeBadRequest, Field: "limit", Message: fmt.Sprintf("%d is negative", limit)}
	}
	limit = min(limit, MaxPageSize)
	var out []api.Object
	var rev int64
	var next string
	err = s.read(func(m *model) error {
		rev = m.rev
		names := m.sortedNames(k)
		i := 0
		if cont != "" {
			i, _ = slices.BinarySearch(names, after)
			if i < len(names) && names[i] == after {
				i++
			}
		}
		end := len(names)
		if limit > 0 && i+limit < end {
			end = i + limit
			next = encodeContinue(k, names[end-1])
		}
		out = make([]api.Object, 0, end-i)
		for _, n := range names[i:end] {
			o, _ := m.lookup(k, n)
			c := api.DeepCopy(o)
			fillObjectStatus(m, c)
			out = append(out, c)
		}
		return nil
	})
	return out, rev, next, err
}

// continueToken is the decoded form of a list's continue token.
type continueToken struct {
	Kind  string `json:"k"`
	After string `json:"a"`
}

func encodeContinue(kind, after string) string {
	b, _ := json.Marshal(continueToken{Kind: kind, After: after})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(kind, tok string) (string, error) {
	bad := &Error{Code: CodeBadRequest, Field: "continue", Message: "is not a continue token of this list; start again without it"}
	if len(tok) > 1024 {
		return "", bad
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", bad
	}
	var c continueToken
	if json.Unmarshal(b, &c) != nil || c.Kind != kind || c.After == "" {
		return "", bad
	}
	return c.After, nil
}

// Count returns how many objects of kind the store holds, and the revision.
func (s *Store) Count(kind string) (int, int64, error) {
	k, err := api.ParseKind(kind)
	if err != nil {
		return 0, 0, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	var n int
	var rev int64
	err = s.read(func(m *model) error {
		rev = m.rev
		n, _ = m.kindNames(k)
		return nil
	})
	return n, rev, err
}

// AllocatedGateways returns how many gateways have an overlay prefix, and how many more
// the address plan has room for.
func (s *Store) AllocatedGateways() (allocated int, free uint64, err error) {
	err = s.read(func(m *model) error {
		allocated = len(m.ipam.Gateways)
		total := prefixCount(m.cfg)
		used := uint64(len(m.prefixOwner))
		if _, ok := m.prefixOwner[m.cfg.HubPrefix()]; !ok {
			used++ // the hub's is reserved
		}
		if used < total {
			free = total - used
		}
		return nil
	})
	return allocated, free, err
}
