package controlplane

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/egw-project/egw/api"
)

// How a replica's model follows the writes of the others.
//
// Several cloud gateway replicas share one etcd store; each keeps the decoded state in
// memory (model). A backend that other processes write to reports every committed
// transaction by key (KeyFeed); the Store queues those batches and, when it finds the
// backend at a later revision than its model (a read or a write reads the revision first),
// applies the queued batches up to that revision: only the changed keys are decoded, and
// the change is queued for the Server like a local write, so it recompiles only the
// snapshots the change affects. The model reloads whole only when the feed cannot say
// what changed: its queue overflowed (maxFeedQueue), a revision is missing, a batch does
// not decode, or the batch does not arrive within the feed wait.
//
// A write that loses a race in etcd runs again: the model is reverted to where it was
// before the attempt (model.rollback), brought forward by the feed, and the write is
// applied to it again; the objects the write carries are copied on every attempt, so no
// attempt sees the stamps of the one before.

// KeyFeed is implemented by a Backend that other processes write to (EtcdBackend). Feed
// calls fn with every committed transaction under the store, in commit order, from the
// time of the call until ctx ends, and, after the backend lost track (a watch that fell
// behind a compaction or was cut), with one batch holding every key that differs since.
// fn must return quickly.
type KeyFeed interface {
	Feed(ctx context.Context, fn func(FeedBatch))
}

// FeedBatch is one committed transaction, or (Relist) the difference found by a relist.
type FeedBatch struct {
	// Rev is the backend's revision of the batch.
	Rev     int64
	Relist  bool
	Changes []FeedChange
}

// FeedChange is one key written (Value) or deleted.
type FeedChange struct {
	Bucket, Key string
	Value       []byte
	Deleted     bool
}

// maxFeedQueue bounds the changes queued for the model; past it the queue is dropped and
// the next read or write reloads the model whole.
const maxFeedQueue = 50_000

// DefaultFeedWait bounds how long a read or write waits for the feed to deliver a revision
// the backend already reported, before it reloads the model whole instead.
const DefaultFeedWait = 2 * time.Second

// storeFeed is the Store's queue of the batches its backend reported.
type storeFeed struct {
	cancel context.CancelFunc
	wait   time.Duration
	sig    chan struct{}

	mu     sync.Mutex
	queue  []FeedBatch
	queued int  // changes in queue
	lost   bool // the queue overflowed

	applied atomic.Int64 // batches applied to the model
	reloads atomic.Int64 // whole reloads because the feed could not say what changed

	// other takes the changes of otherBucket, a bucket the model does not hold (reports
	// shared between replicas), instead of the queue.
	otherBucket string
	other       atomic.Pointer[func([]FeedChange)]
}

// setOther hands the changes of bucket to fn from now on (fn must return quickly).
func (f *storeFeed) setOther(bucket string, fn func([]FeedChange)) {
	f.mu.Lock()
	f.otherBucket = bucket
	f.mu.Unlock()
	f.other.Store(&fn)
}

// startFeed subscribes the Store to its backend's feed, if it has one.
func (s *Store) startFeed() {
	kf, ok := s.b.(KeyFeed)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.feed = &storeFeed{cancel: cancel, wait: DefaultFeedWait, sig: make(chan struct{}, 1)}
	kf.Feed(ctx, s.feed.add)
}

// SetFeedWait sets how long a read or write waits for the feed (DefaultFeedWait); for
// tests.
func (s *Store) SetFeedWait(d time.Duration) {
	if s.feed != nil {
		s.feed.wait = d
	}
}

// FeedStats returns how many batches of other writers the model applied, and how many
// times it reloaded whole because the feed could not say what changed.
func (s *Store) FeedStats() (applied, reloads int64) {
	if s.feed == nil {
		return 0, 0
	}
	return s.feed.applied.Load(), s.feed.reloads.Load()
}

func (f *storeFeed) add(b FeedBatch) {
	f.mu.Lock()
	if fn := f.other.Load(); fn != nil {
		var mine, rest []FeedChange
		for _, c := range b.Changes {
			if c.Bucket == f.otherBucket {
				mine = append(mine, c)
			} else {
				rest = append(rest, c)
			}
		}
		if len(mine) > 0 {
			(*fn)(mine)
			b.Changes = rest
		}
	}
	if len(b.Changes) == 0 {
		f.mu.Unlock()
		return
	}
	if !f.lost {
		f.queue = append(f.queue, b)
		f.queued += len(b.Changes)
		if f.queued > maxFeedQueue {
			f.queue, f.queued, f.lost = nil, 0, true
		}
	}
	f.mu.Unlock()
	select {
	case f.sig <- struct{}{}:
	default:
	}
}

// pending reports whether batches wait to be looked at.
func (f *storeFeed) pending() bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.queue) > 0 || f.lost
}

// batchRevision returns the store revision a batch writes (meta/revision), if it does.
func batchRevision(b FeedBatch) (int64, bool) {
	for _, c := range b.Changes {
		if c.Bucket == bucketMeta && c.Key == keyRevision && !c.Deleted && len(c.Value) == 8 {
			return int64(binary.BigEndian.Uint64(c.Value)), true
		}
	}
	return 0, false
}

// errFeedGap says the feed cannot bring the model forward; it reloads whole.
var errFeedGap = errors.New("feed: a revision is missing")

// syncFeedLocked brings the model to revision target with the queued batches, waiting up to
// the feed wait for those not delivered yet. It returns false when the model must reload
// whole. s.mu is held exclusively; s.m is not nil.
func (s *Store) syncFeedLocked(target int64) bool {
	f := s.feed
	deadline := time.Now().Add(f.wait)
	for {
		if ok, done := s.drainLocked(target); !ok {
			return false
		} else if done {
			return true
		}
		d := time.Until(deadline)
		if d <= 0 {
			return false
		}
		t := time.NewTimer(d)
		select {
		case <-f.sig:
		case <-t.C:
		}
		t.Stop()
	}
}

// drainLocked applies the queued batches up to revision target, drops those the model
// already holds and those that do not concern it, and keeps the later ones. ok is false
// when the model must reload whole; done when it is at target.
func (s *Store) drainLocked(target int64) (ok, done bool) {
	f := s.feed
	f.mu.Lock()
	if f.lost {
		f.mu.Unlock()
		return false, false
	}
	q := f.queue
	f.queue, f.queued = nil, 0
	f.mu.Unlock()
	i := 0
	for ; i < len(q) && s.m.rev < target; i++ {
		b := q[i]
		rev, has := batchRevision(b)
		if !has || rev <= s.m.rev {
			continue // not the model's (store ID, locks), or this replica's own write
		}
		if rev > target {
			break
		}
		if rev != s.m.rev+1 && !b.Relist {
			s.requeue(q[i:])
			return false, false
		}
		ch, err := applyBatch(s.m, b, rev)
		if err != nil {
			s.requeue(q[i+1:])
			return false, false
		}
		f.applied.Add(1)
		s.addChange(ch)
	}
	// Keep what comes after target (and, when at target, whatever is left) for later.
	rest := q[i:]
	if s.m.rev >= target {
		rest = slices.DeleteFunc(rest, func(b FeedBatch) bool {
			rev, has := batchRevision(b)
			return !has || rev <= s.m.rev
		})
	}
	s.requeue(rest)
	return true, s.m.rev >= target
}

// requeue puts batches back at the front of the queue.
func (s *Store) requeue(q []FeedBatch) {
	if len(q) == 0 {
		return
	}
	f := s.feed
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lost {
		return
	}
	n := 0
	for _, b := range q {
		n += len(b.Changes)
	}
	f.queue = append(slices.Clone(q), f.queue...)
	f.queued += n
}

// resetFeedLocked forgets the queued batches the model, just reloaded whole at revision
// rev, holds. s.mu is held exclusively.
func (s *Store) resetFeedLocked(rev int64) {
	f := s.feed
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lost = false
	f.queue = slices.DeleteFunc(f.queue, func(b FeedBatch) bool {
		r, has := batchRevision(b)
		return !has || r <= rev
	})
	f.queued = 0
	for _, b := range f.queue {
		f.queued += len(b.Changes)
	}
}

// applyBatch applies one batch that writes store revision rev to m and returns the change
// for the Server. If a key does not decode, m is left as it was.
func applyBatch(m *model, b FeedBatch, rev int64) (_ *change, err error) {
	// The final value of every object: a managed VirtualPresence moves between the vips
	// and objects buckets in one transaction (a put in one, a delete in the other).
	objs := map[string]api.Object{}
	objPut := map[string]bool{}
	type prefixSet struct {
		p  netip.Prefix
		ok bool
	}
	type addrSet struct {
		a  ServiceAddr
		ok bool
	}
	prefixes := map[string]prefixSet{}
	addrs := map[string]addrSet{}
	eps := map[string]GatewayEndpoints{}
	type hubSet struct {
		h  HubInfo
		ok bool
	}
	hubs := map[string]hubSet{}
	for _, c := range b.Changes {
		switch c.Bucket {
		case bucketObjects, bucketVIPs:
			key := c.Key
			if c.Bucket == bucketVIPs {
				key = api.KindVirtualPresence + "/" + c.Key
			}
			if c.Deleted {
				if !objPut[key] {
					objs[key] = nil
				}
				continue
			}
			var o api.Object
			if c.Bucket == bucketVIPs {
				o, err = decodeCompactVP(c.Key, c.Value)
			} else {
				o, err = decodeObject(key, c.Value)
			}
			if err != nil {
				return nil, err
			}
			objs[key], objPut[key] = o, true
		case bucketIPAM:
			switch {
			case strings.HasPrefix(c.Key, "g/"):
				ps := prefixSet{}
				if !c.Deleted {
					if ps.p, err = netip.ParsePrefix(string(c.Value)); err != nil {
						return nil, fmt.Errorf("store: overlay prefix of %s: %w", c.Key[2:], err)
					}
					ps.ok = true
				}
				prefixes[c.Key[2:]] = ps
			case strings.HasPrefix(c.Key, "s/"):
				as := addrSet{}
				if !c.Deleted {
					if err := json.Unmarshal(c.Value, &as.a); err != nil {
						return nil, fmt.Errorf("store: overlay address of %s: %w", c.Key[2:], err)
					}
					as.ok = true
				}
				addrs[c.Key[2:]] = as
			default:
				return nil, fmt.Errorf("store: bad IPAM key %q", c.Key)
			}
		case bucketEndpoints:
			var e GatewayEndpoints
			if !c.Deleted {
				if err := json.Unmarshal(c.Value, &e); err != nil {
					return nil, fmt.Errorf("store: endpoints of %s: %w", c.Key, err)
				}
			}
			eps[c.Key] = e
		case bucketHubs:
			hs := hubSet{}
			if !c.Deleted {
				if err := json.Unmarshal(c.Value, &hs.h); err != nil {
					return nil, fmt.Errorf("store: hub %s: %w", c.Key, err)
				}
				hs.h.Name, hs.ok = c.Key, true
			}
			hubs[c.Key] = hs
		case bucketMeta:
			if c.Key == keyIPAM && !c.Deleted {
				return nil, errFeedGap // the single IPAM blob of older stores: reload
			}
		}
	}

	m.begin()
	defer func() {
		if err != nil {
			m.rollback()
		} else {
			m.commit()
		}
	}()
	oldPins := m.pins
	ch := &change{rev: rev}
	for _, k := range sortedKeys(objs) {
		o := objs[k]
		old, had := m.get(k)
		if !had && o == nil {
			continue
		}
		m.set(k, o)
		ch.objs = append(ch.objs, objChange{old, o})
	}
	for _, gw := range sortedKeys(prefixes) {
		ps := prefixes[gw]
		m.setGatewayPrefix(gw, ps.p, ps.ok)
		ch.prefixes = append(ch.prefixes, gw)
	}
	for _, svc := range sortedKeys(addrs) {
		as := addrs[svc]
		m.setServiceAddr(svc, as.a, as.ok)
		ch.services = append(ch.services, svc)
	}
	for _, gw := range sortedKeys(eps) {
		m.setEndpoints(gw, eps[gw])
		ch.endpoints = append(ch.endpoints, gw)
	}
	for _, n := range sortedKeys(hubs) {
		m.setHub(n, hubs[n].h, hubs[n].ok)
		ch.hubs = append(ch.hubs, n)
	}
	m.resolvePins()
	ch.pinPairs = pinChanges(oldPins, m.pins)
	oldRev := m.rev
	m.record(func() { m.rev = oldRev })
	m.rev = rev
	return ch, nil
}

// decodeObject decodes the stored JSON of the object under key ("Kind/name").
func decodeObject(key string, val []byte) (api.Object, error) {
	kind, name, ok := strings.Cut(key, "/")
	if !ok {
		return nil, fmt.Errorf("store: bad key %q", key)
	}
	o, err := api.New(kind)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", key, err)
	}
	if err := json.Unmarshal(val, o); err != nil {
		return nil, fmt.Errorf("store: %s: %w", key, err)
	}
	if o.GetMeta().Name != name {
		return nil, fmt.Errorf("store: %s: holds an object named %q", key, o.GetMeta().Name)
	}
	return o, nil
}

// decodeCompactVP decodes a managed VirtualPresence of the vips bucket (compactVP).
func decodeCompactVP(name string, val []byte) (*api.VirtualPresence, error) {
	f := strings.Split(string(val), "\x00")
	if len(f) != 7 || f[0] != "1" {
		return nil, fmt.Errorf("store: VirtualPresence/%s: bad compact form", name)
	}
	rv, err1 := strconv.ParseInt(f[5], 10, 64)
	crev, err2 := strconv.ParseInt(f[6], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("store: VirtualPresence/%s: bad revisions", name)
	}
	vp := managedVP(labelsOf(f[1]), name, f[2], f[3], f[4])
	vp.Metadata.ResourceVersion, vp.Metadata.CreationRevision = rv, crev
	return vp, nil
}
