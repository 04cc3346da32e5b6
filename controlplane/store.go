package controlplane

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
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

// Store keeps EGW's objects and IPAM state in a Backend. Every write method is one
// transaction that validates the resulting state as a whole, reconciles IPAM (creating,
// updating and deleting managed VirtualPresences), and bumps the global revision only if
// something changed. Objects returned by the Store are the caller's to modify.
type Store struct {
	b   Backend
	cfg Config

	// cacheMu guards cache: the decoded state at cache.Revision, whose objects are never
	// modified (writes replace objects, readers get copies). It saves decoding every
	// object on every transaction; a revision mismatch (another writer, another
	// replica) falls back to decoding.
	cacheMu sync.Mutex
	cache   *State

	// idMu guards id, the store's ID once read (ID).
	idMu sync.Mutex
	id   string
}

// NewStore returns a Store over b. cfg must be valid (Config.WithDefaults, Validate).
func NewStore(b Backend, cfg Config) *Store { return &Store{b: b, cfg: cfg} }

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
func (s *Store) Close() error { return s.b.Close() }

// Backend returns the backend under the store.
func (s *Store) Backend() Backend { return s.b }

// Load returns the whole state at the latest revision. The objects are the caller's.
func (s *Store) Load() (*State, error) {
	st, err := s.loadShared()
	if err != nil {
		return nil, err
	}
	for k, o := range st.Objects {
		st.Objects[k] = api.DeepCopy(o)
	}
	return st, nil
}

// loadShared returns the latest state; its objects may be shared with the cache and
// must not be modified.
func (s *Store) loadShared() (*State, error) {
	var st *State
	err := s.b.View(func(tx Tx) error {
		var err error
		st, err = s.load(tx)
		return err
	})
	return st, err
}

// load reads the state in tx, from the cache if it holds that revision. The map and the
// IPAM state are fresh; the objects may be shared.
func (s *Store) load(tx Tx) (*State, error) {
	rev := readRevision(tx)
	s.cacheMu.Lock()
	c := s.cache
	s.cacheMu.Unlock()
	if c != nil && c.Revision == rev {
		return c.clone(), nil
	}
	st, err := load(tx)
	if err != nil {
		return nil, err
	}
	s.setCache(st.clone())
	return st, nil
}

// setCache remembers st unless the cache holds a later revision already.
func (s *Store) setCache(st *State) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.cache == nil || s.cache.Revision <= st.Revision {
		s.cache = st
	}
}

func (st *State) clone() *State {
	c := &State{Revision: st.Revision, Objects: make(map[string]api.Object, len(st.Objects)), IPAM: st.IPAM.clone()}
	for k, o := range st.Objects {
		c.Objects[k] = o
	}
	return c
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

func load(tx Tx) (*State, error) {
	st := &State{Revision: readRevision(tx), Objects: map[string]api.Object{}}
	if v := tx.Get(bucketMeta, keyIPAM); v != nil {
		if err := json.Unmarshal(v, &st.IPAM); err != nil {
			return nil, fmt.Errorf("store: IPAM state: %w", err)
		}
	}
	st.IPAM = st.IPAM.clone()
	err := tx.ForEach(bucketObjects, func(key string, val []byte) error {
		kind, _, ok := strings.Cut(key, "/")
		if !ok {
			return fmt.Errorf("store: bad key %q", key)
		}
		o, err := api.New(kind)
		if err != nil {
			return fmt.Errorf("store: %s: %w", key, err)
		}
		if err := json.Unmarshal(val, o); err != nil {
			return fmt.Errorf("store: %s: %w", key, err)
		}
		st.Objects[key] = o
		return nil
	})
	return st, err
}

// errNoChange rolls a write transaction back when nothing changed.
var errNoChange = errors.New("no change")

// write runs mut on the latest state inside one Backend transaction, then validates,
// reconciles IPAM and writes what changed. mut must replace objects in st.Objects rather
// than modify them.
func (s *Store) write(mut func(st *State) ([]Result, error)) (int64, []Result, error) {
	var rev int64
	var results []Result
	var committed *State
	err := s.b.Update(func(tx Tx) error {
		st, err := s.load(tx)
		if err != nil {
			return err
		}
		rev = st.Revision
		orig := make(map[string]api.Object, len(st.Objects))
		for k, o := range st.Objects {
			orig[k] = o
		}
		origIPAM := st.IPAM.clone()
		if results, err = mut(st); err != nil {
			return err
		}
		ix := indexState(st) // validation and reconcile share it: neither modifies st before reconcile
		if err := validateIndex(ix, s.cfg); err != nil {
			return err
		}
		reconcileIndex(st, ix, s.cfg)

		newRev := st.Revision + 1
		changed := false
		for k, o := range st.Objects {
			old, ok := orig[k]
			if ok && (old == o || api.Equal(old, o)) {
				st.Objects[k] = old
				continue
			}
			changed = true
			// A copy: the caller's object stays as given, for a backend that runs the
			// transaction again (etcd, after losing a race) runs mut on it again.
			o = api.DeepCopy(o)
			st.Objects[k] = o
			m := o.GetMeta()
			m.ResourceVersion = newRev
			if ok {
				m.CreationRevision = old.GetMeta().CreationRevision
			} else {
				m.CreationRevision = newRev
			}
			data, err := encodeStored(o)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketObjects, k, data); err != nil {
				return err
			}
		}
		for k := range orig {
			if _, ok := st.Objects[k]; !ok {
				changed = true
				if err := tx.Delete(bucketObjects, k); err != nil {
					return err
				}
			}
		}
		if !st.IPAM.equal(origIPAM) {
			changed = true
			data, err := json.Marshal(st.IPAM)
			if err != nil {
				return err
			}
			if err := tx.Put(bucketMeta, keyIPAM, data); err != nil {
				return err
			}
		}
		if !changed {
			return errNoChange
		}
		var rb [8]byte
		binary.BigEndian.PutUint64(rb[:], uint64(newRev))
		if err := tx.Put(bucketMeta, keyRevision, rb[:]); err != nil {
			return err
		}
		rev = newRev
		st.Revision = newRev
		committed = st
		return nil
	})
	if err == nil && committed != nil {
		s.setCache(committed)
	}
	if errors.Is(err, errNoChange) {
		err = nil
	}
	if err != nil {
		return 0, nil, toError(err)
	}
	return rev, results, nil
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
	return s.write(func(st *State) ([]Result, error) {
		var res []Result
		for _, o := range prepared {
			k := api.Key(o)
			r := Result{Kind: o.GetKind(), Name: o.GetMeta().Name}
			old, ok := st.Objects[k]
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
			st.Objects[k] = o
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

// Create stores a new object; it is a conflict if one of that kind and name exists.
func (s *Store) Create(o api.Object) (api.Object, error) {
	c, err := prepare(o)
	if err != nil {
		return nil, toError(err)
	}
	k := api.Key(c)
	_, _, err = s.write(func(st *State) ([]Result, error) {
		if _, ok := st.Objects[k]; ok {
			return nil, &Error{Code: CodeConflict, Object: k, Message: "already exists"}
		}
		st.Objects[k] = c
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
	_, _, err = s.write(func(st *State) ([]Result, error) {
		old, ok := st.Objects[k]
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
		st.Objects[k] = c
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
	return s.write(func(st *State) ([]Result, error) {
		var res []Result
		for _, r := range refs {
			kind, err := api.ParseKind(r.Kind)
			if err != nil {
				return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
			}
			k := kind + "/" + r.Name
			old, ok := st.Objects[k]
			if !ok {
				return nil, &Error{Code: CodeNotFound, Object: k, Message: "not found"}
			}
			if err := checkManaged(old, "deleted"); err != nil {
				return nil, err
			}
			delete(st.Objects, k)
			res = append(res, Result{Kind: kind, Name: r.Name, Action: "deleted"})
		}
		return res, nil
	})
}

// Get returns one object with its status (conditions and allocations) filled in.
func (s *Store) Get(kind, name string) (api.Object, error) {
	st, err := s.Load()
	if err != nil {
		return nil, err
	}
	k, err := api.ParseKind(kind)
	if err != nil {
		return nil, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	o, ok := st.Objects[k+"/"+name]
	if !ok {
		return nil, &Error{Code: CodeNotFound, Object: k + "/" + name, Message: "not found"}
	}
	fillStatus(st, s.cfg)
	return o, nil
}

// List returns every object of kind with its status, sorted by name, and the revision.
func (s *Store) List(kind string) ([]api.Object, int64, error) {
	st, err := s.Load()
	if err != nil {
		return nil, 0, err
	}
	k, err := api.ParseKind(kind)
	if err != nil {
		return nil, 0, &Error{Code: CodeBadRequest, Message: err.Error()}
	}
	fillStatus(st, s.cfg)
	return st.List(k), st.Revision, nil
}
