package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Defaults of the etcd backend.
const (
	DefaultEtcdPrefix         = "/egw/"
	DefaultEtcdDialTimeout    = 5 * time.Second
	DefaultEtcdRequestTimeout = 5 * time.Second
	DefaultEtcdProbeInterval  = 2 * time.Second
)

// etcdStampDir holds one key per bucket, rewritten by every transaction that writes to
// the bucket: a transaction that iterated a bucket compares the stamp's mod revision, which
// catches keys added, changed and deleted since it read. Bucket names never start with ".".
const etcdStampDir = ".stamp/"

// etcdMaxAttempts bounds how often Update reruns a transaction that lost a race.
const etcdMaxAttempts = 32

// etcdLockAfter is how many races in a row an Update loses before it queues for the write
// lock (etcdLockDir): optimistic writers cannot commit while anyone holds or waits for it,
// so a replica that keeps losing to a faster one gets its turn, in arrival order.
// etcdLockTTL (seconds) is the lease of the lock: how long a replica that dies holding or
// awaiting it blocks the others.
const (
	etcdLockAfter = 3
	etcdLockTTL   = 5
	etcdLockDir   = ".lock"
	// lockWait bounds the wait for the lock: the replicas ahead in the queue, and one that
	// died there (its lease).
	lockWait = 2*etcdLockTTL*time.Second + DefaultEtcdRequestTimeout
)

// etcdMaxCompares is how many per-key compares a commit carries before it compares the
// stamps of the keys' buckets instead (etcd's --max-txn-ops bounds compares too).
const etcdMaxCompares = 64

// Watcher is implemented by a Backend that other processes write to (EtcdBackend). Watch
// calls fn with the backend's revision after every change under the store, whoever made
// it, and after every relist (the watch fell behind a compaction or was cut), until ctx
// ends. fn runs on the backend's watch goroutine: it must return quickly.
type Watcher interface {
	Watch(ctx context.Context, fn func(rev int64))
}

// StoreHealth is what a backend knows of its own availability.
type StoreHealth struct {
	Backend string `json:"backend"`
	// Up is false while writes cannot be stored (etcd unreachable or without quorum).
	Up bool `json:"up"`
	// Since is when the backend was last found down (zero while up); Reason says why.
	Since  time.Time `json:"since,omitzero"`
	Reason string    `json:"reason,omitempty"`
	// Revision is the backend's own revision of the state reads are served from while
	// down (etcd: the revision this replica last watched).
	Revision int64 `json:"revision"`
}

// HealthReporter is implemented by backends that can become unavailable (EtcdBackend).
type HealthReporter interface {
	Health() StoreHealth
}

// EtcdOptions configure OpenEtcd.
type EtcdOptions struct {
	// Endpoints are the client URLs of the etcd members (http://host:port or https://).
	Endpoints []string
	// Prefix is put before every key (default DefaultEtcdPrefix).
	Prefix string
	// TLS, if not nil, is used to reach the members.
	TLS *tls.Config
	// DialTimeout bounds connecting and the first read (default DefaultEtcdDialTimeout);
	// RequestTimeout bounds each later read and commit (default DefaultEtcdRequestTimeout).
	DialTimeout    time.Duration
	RequestTimeout time.Duration
	// ProbeInterval is how often availability is checked (default DefaultEtcdProbeInterval).
	ProbeInterval time.Duration
	Logger        *slog.Logger
}

// EtcdBackend is the etcd implementation of Backend: bucket b's key k is the etcd key
// <prefix><b>/<k>. Every transaction reads at one etcd revision (a consistent snapshot);
// Update commits its writes in one etcd Txn that compares the mod revision of every key
// it read (and the stamp of every bucket it iterated), and runs the transaction again
// when another writer got there first, so Updates are serializable across processes.
// One etcd Txn is all or nothing; a write larger than the server allows (--max-txn-ops,
// --max-request-bytes) is refused whole with CodeTooLarge, never split.
//
// A watch keeps a mirror of every key under the prefix. While etcd is unreachable or has
// no quorum, writes fail with CodeUnavailable and View serves the mirror: the last state
// this process saw (Health says so).
type EtcdBackend struct {
	cli       *clientv3.Client
	prefix    string
	endpoints string
	timeout   time.Duration
	probe     time.Duration
	log       *slog.Logger

	// updMu makes the Updates of one process queue rather than race each other; it
	// guards sess, the lease session of the write lock (nil until first needed).
	updMu sync.Mutex
	sess  *concurrency.Session

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// kick makes the watch loop restart its watch from the mirror's revision (tests).
	kick chan struct{}

	// mu guards the mirror and the subscribers.
	mu        sync.RWMutex
	mirror    map[string][]byte // key without the prefix -> value
	mirrorRev int64
	subs      map[uint64]func(int64)
	feeds     map[uint64]func(FeedBatch)
	nextSub   uint64

	// hmu guards the health state.
	hmu       sync.Mutex
	downSince time.Time
	downWhy   string

	conflicts atomic.Int64
	relists   atomic.Int64
}

// OpenEtcd connects to etcd, reads every key under the prefix and starts watching it. It
// fails if no member answers within the dial timeout.
func OpenEtcd(opts EtcdOptions) (*EtcdBackend, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd: no endpoints")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultEtcdPrefix
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = DefaultEtcdDialTimeout
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultEtcdRequestTimeout
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = DefaultEtcdProbeInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	eps := strings.Join(opts.Endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            opts.Endpoints,
		DialTimeout:          opts.DialTimeout,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: opts.RequestTimeout,
		TLS:                  opts.TLS,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", eps, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &EtcdBackend{cli: cli, prefix: opts.Prefix, endpoints: eps, timeout: opts.RequestTimeout,
		probe: opts.ProbeInterval, log: opts.Logger, ctx: ctx, cancel: cancel,
		kick: make(chan struct{}, 1), subs: map[uint64]func(int64){}, feeds: map[uint64]func(FeedBatch){}}
	if err := b.relist(opts.DialTimeout); err != nil {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("etcd %s: no answer within %s (store.etcd.dialTimeout): %w", eps, opts.DialTimeout, err)
	}
	b.wg.Add(2)
	go b.watchLoop()
	go b.probeLoop()
	return b, nil
}

// Close stops the watch and closes the client.
func (b *EtcdBackend) Close() error {
	b.updMu.Lock()
	if b.sess != nil {
		b.sess.Close() // revokes the lease: a lock key of ours goes at once
	}
	b.updMu.Unlock()
	b.cancel()
	b.wg.Wait()
	return b.cli.Close()
}

// Prefix is the key prefix of the store.
func (b *EtcdBackend) Prefix() string { return b.prefix }

// Client is the etcd client (for tools and tests).
func (b *EtcdBackend) Client() *clientv3.Client { return b.cli }

// Conflicts is how many transactions were run again because another writer got there
// first.
func (b *EtcdBackend) Conflicts() int64 { return b.conflicts.Load() }

// Health reports whether etcd answered the last probe, read or commit.
func (b *EtcdBackend) Health() StoreHealth {
	b.mu.RLock()
	rev := b.mirrorRev
	b.mu.RUnlock()
	b.hmu.Lock()
	defer b.hmu.Unlock()
	return StoreHealth{Backend: "etcd", Up: b.downSince.IsZero(), Since: b.downSince, Reason: b.downWhy, Revision: rev}
}

func (b *EtcdBackend) up() bool {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	return b.downSince.IsZero()
}

func (b *EtcdBackend) markDown(err error) {
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.New("no answer in time: etcd down, unreachable or without quorum")
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if b.downSince.IsZero() {
		b.downSince = time.Now()
		b.log.Warn("etcd unavailable: writes are refused, reads come from the last state watched", "endpoints", b.endpoints, "err", err)
	}
	b.downWhy = err.Error()
}

func (b *EtcdBackend) markUp() {
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if !b.downSince.IsZero() {
		b.log.Info("etcd available again", "endpoints", b.endpoints, "downFor", time.Since(b.downSince).Round(time.Millisecond))
		b.downSince, b.downWhy = time.Time{}, ""
	}
}

// Watch implements Watcher.
func (b *EtcdBackend) Watch(ctx context.Context, fn func(rev int64)) {
	b.mu.Lock()
	id := b.nextSub
	b.nextSub++
	b.subs[id] = fn
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	})
}

// Feed implements KeyFeed. The batches are delivered while the mirror is locked, so a View
// of the mirror never sees a revision whose batch was not delivered yet.
func (b *EtcdBackend) Feed(ctx context.Context, fn func(FeedBatch)) {
	b.mu.Lock()
	id := b.nextSub
	b.nextSub++
	b.feeds[id] = fn
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		delete(b.feeds, id)
		b.mu.Unlock()
	})
}

// feedLocked delivers one batch to every feed. b.mu is held.
func (b *EtcdBackend) feedLocked(batch FeedBatch) {
	for _, fn := range b.feeds {
		fn(batch)
	}
}

// splitKey returns the bucket and the key of a key without the prefix.
func splitKey(k string) (bucket, key string) {
	bucket, key, _ = strings.Cut(k, "/")
	return bucket, key
}

// notify calls every subscriber with rev. b.mu is not held.
func (b *EtcdBackend) notify(rev int64) {
	b.mu.RLock()
	fns := slices.Collect(maps.Values(b.subs))
	b.mu.RUnlock()
	for _, fn := range fns {
		fn(rev)
	}
}

// relist reads every key under the prefix into the mirror.
func (b *EtcdBackend) relist(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	resp, err := b.cli.Get(ctx, b.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	m := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		m[string(kv.Key[len(b.prefix):])] = kv.Value
	}
	b.mu.Lock()
	if b.mirror != nil && len(b.feeds) > 0 {
		// What changed while the watch was not looking (it fell behind a compaction, or
		// etcd was away): the difference between the old mirror and the new one.
		batch := FeedBatch{Rev: resp.Header.Revision, Relist: true}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if old, ok := b.mirror[k]; !ok || !bytes.Equal(old, m[k]) {
				bk, key := splitKey(k)
				batch.Changes = append(batch.Changes, FeedChange{Bucket: bk, Key: key, Value: m[k]})
			}
		}
		for _, k := range slices.Sorted(maps.Keys(b.mirror)) {
			if _, ok := m[k]; !ok {
				bk, key := splitKey(k)
				batch.Changes = append(batch.Changes, FeedChange{Bucket: bk, Key: key, Deleted: true})
			}
		}
		b.feedLocked(batch)
	}
	b.mirror, b.mirrorRev = m, resp.Header.Revision
	b.mu.Unlock()
	b.relists.Add(1)
	b.markUp()
	b.notify(resp.Header.Revision)
	return nil
}

// watchLoop keeps the mirror current: it watches from the mirror's revision and relists
// when the watch falls behind a compaction or is cut (no leader, etcd gone).
func (b *EtcdBackend) watchLoop() {
	defer b.wg.Done()
	for b.ctx.Err() == nil {
		b.mu.RLock()
		from := b.mirrorRev + 1
		b.mu.RUnlock()
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(b.ctx))
		wch := b.cli.Watch(wctx, b.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		reason := b.follow(wch)
		wcancel()
		if b.ctx.Err() != nil {
			return
		}
		if reason != nil {
			b.log.Info("etcd watch interrupted; relisting", "reason", reason)
		}
		for delay := 100 * time.Millisecond; b.ctx.Err() == nil; delay = min(2*delay, 2*time.Second) {
			if reason == nil {
				break // kicked: resume from the mirror's revision
			}
			err := b.relist(b.timeout)
			if err == nil {
				break
			}
			b.markDown(err)
			select {
			case <-b.ctx.Done():
			case <-time.After(delay):
			}
		}
	}
}

// follow applies the watch's events to the mirror until the watch ends; it returns why
// (nil: kicked or closing).
func (b *EtcdBackend) follow(wch clientv3.WatchChan) error {
	for {
		select {
		case <-b.kick:
			return nil
		case resp, ok := <-wch:
			if !ok {
				return errors.New("watch closed")
			}
			if resp.CompactRevision != 0 {
				return fmt.Errorf("watch fell behind a compaction at revision %d", resp.CompactRevision)
			}
			if err := resp.Err(); err != nil {
				return err
			}
			if len(resp.Events) == 0 {
				continue
			}
			b.mu.Lock()
			var batch FeedBatch
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key[len(b.prefix):])
				if ev.Kv.ModRevision != batch.Rev {
					// One batch per etcd revision: one transaction.
					if len(batch.Changes) > 0 {
						b.feedLocked(batch)
					}
					batch = FeedBatch{Rev: ev.Kv.ModRevision}
				}
				bk, key := splitKey(k)
				if ev.Type == clientv3.EventTypeDelete {
					delete(b.mirror, k)
					batch.Changes = append(batch.Changes, FeedChange{Bucket: bk, Key: key, Deleted: true})
				} else {
					b.mirror[k] = ev.Kv.Value
					batch.Changes = append(batch.Changes, FeedChange{Bucket: bk, Key: key, Value: ev.Kv.Value})
				}
			}
			if len(batch.Changes) > 0 {
				b.feedLocked(batch)
			}
			// The last event's revision, not the header's: the watch resumes from here.
			rev := resp.Events[len(resp.Events)-1].Kv.ModRevision
			b.mirrorRev = rev
			b.mu.Unlock()
			b.notify(rev)
		}
	}
}

// probeLoop checks every probe interval that etcd serves a linearizable read (which
// needs a quorum), so reads go back to etcd once it is back.
func (b *EtcdBackend) probeLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.probe)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
		_, err := b.cli.Get(ctx, b.prefix+bucketMeta+"/"+keyRevision, clientv3.WithCountOnly())
		cancel()
		switch {
		case b.ctx.Err() != nil:
			return
		case err != nil:
			b.markDown(err)
		default:
			b.markUp()
		}
	}
}

// View runs fn on a consistent snapshot of etcd, or on the mirror while etcd is down.
func (b *EtcdBackend) View(fn func(Tx) error) error {
	if !b.up() {
		return b.viewMirror(fn)
	}
	for attempt := 0; ; attempt++ {
		t := b.newTx(false)
		err := fn(t)
		if t.err == nil {
			return err
		}
		if errors.Is(t.err, rpctypes.ErrCompacted) && attempt < 3 {
			continue // the snapshot's revision was compacted under it: take a newer one
		}
		e := b.classify(t.err, 0)
		if e.Code == CodeUnavailable {
			return b.viewMirror(fn)
		}
		return e
	}
}

// Update runs fn in a serializable transaction: it reads at one revision, and its writes
// commit only if nothing it read changed since; else it runs again.
func (b *EtcdBackend) Update(fn func(Tx) error) error {
	b.updMu.Lock()
	defer b.updMu.Unlock()
	if h := b.Health(); !h.Up {
		// Fail at once; the probe finds out when etcd is back.
		return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("the store is unavailable (etcd %s, since %s: %s): writes are refused until etcd answers with a quorum again; reads are served from the last state this cloud gateway saw",
			b.endpoints, h.Since.UTC().Format(time.RFC3339), h.Reason)}
	}
	var mu *concurrency.Mutex
	defer func() {
		if mu != nil {
			ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
			mu.Unlock(ctx) // if this fails, the lease expires
			cancel()
		}
	}()
	for attempt := 1; ; attempt++ {
		if mu == nil && attempt > etcdLockAfter {
			var err error
			if mu, err = b.lock(); err != nil {
				if errors.Is(err, context.DeadlineExceeded) {
					// A long queue, not necessarily an outage: the probe judges that.
					return &Error{Code: CodeConflict, Message: fmt.Sprintf("waited %s for the write lock (other replicas writing at the same time); nothing was written: try again", lockWait)}
				}
				return b.classify(err, 0)
			}
		}
		t := b.newTx(true)
		t.mu = mu
		err := fn(t)
		if t.err != nil {
			if errors.Is(t.err, rpctypes.ErrCompacted) && attempt < etcdMaxAttempts {
				continue
			}
			return b.classify(t.err, 0)
		}
		if err != nil {
			return err
		}
		ok, err := t.commit()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		b.conflicts.Add(1)
		if mu != nil {
			select {
			case <-b.sess.Done():
				return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("etcd %s: the write lock's lease expired (etcd unreachable or slow); nothing was written: try again", b.endpoints)}
			default:
			}
		}
		if attempt >= etcdMaxAttempts {
			return &Error{Code: CodeConflict, Message: fmt.Sprintf("the store changed under this write %d times in a row (other replicas writing at the same time); nothing was written: try again", attempt)}
		}
		// Jittered backoff, so that replicas racing for the same keys spread out.
		d := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 7)))
		select {
		case <-time.After(d):
		case <-b.ctx.Done():
			return errors.New("etcd: backend closed")
		}
	}
}

// lock queues for the write lock and returns it held. b.updMu is held.
func (b *EtcdBackend) lock() (*concurrency.Mutex, error) {
	if b.sess != nil {
		select {
		case <-b.sess.Done():
			b.sess = nil
		default:
		}
	}
	if b.sess == nil {
		ctx, cancel := context.WithTimeout(b.ctx, b.timeout)
		lease, err := b.cli.Grant(ctx, etcdLockTTL)
		cancel()
		if err != nil {
			return nil, err
		}
		if b.sess, err = concurrency.NewSession(b.cli, concurrency.WithLease(lease.ID), concurrency.WithContext(b.ctx)); err != nil {
			return nil, err
		}
	}
	mu := concurrency.NewMutex(b.sess, b.prefix+etcdLockDir)
	ctx, cancel := context.WithTimeout(b.ctx, lockWait)
	defer cancel()
	if err := mu.Lock(ctx); err != nil {
		return nil, err
	}
	return mu, nil
}

// classify turns an etcd error into an *Error: CodeTooLarge for a transaction beyond the
// server's limits, CodeUnavailable (and the backend marked down) for anything that says
// etcd cannot answer. ops is the size of the transaction (0: a read).
func (b *EtcdBackend) classify(err error, ops int) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	switch {
	case errors.Is(err, errBadBucket), errors.Is(err, errReadOnly):
		return &Error{Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("this write needs %d operations in one etcd transaction, more than the etcd server allows (--max-txn-ops, 128 by default); a write is all or nothing and is never split, so nothing was written: apply fewer objects at once, or raise --max-txn-ops on every etcd member", ops)}
	case errors.Is(err, rpctypes.ErrRequestTooLarge), status.Code(err) == codes.ResourceExhausted:
		return &Error{Code: CodeTooLarge, Message: "this write is larger than one etcd request may be (--max-request-bytes, 1.5 MiB by default); a write is all or nothing and is never split, so nothing was written: apply fewer or smaller objects at once"}
	case errors.Is(err, rpctypes.ErrPermissionDenied), errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken):
		return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("etcd %s refused the request: %v (check the client certificate's permissions on %s)", b.endpoints, err, b.prefix)}
	}
	b.markDown(err)
	return &Error{Code: CodeUnavailable, Message: fmt.Sprintf("the store is unavailable (etcd %s: %v): writes are refused until etcd answers with a quorum again; reads are served from the last state this cloud gateway saw", b.endpoints, err)}
}

func (b *EtcdBackend) newTx(write bool) *etcdTx {
	return &etcdTx{b: b, write: write, vals: map[string][]byte{}, modRev: map[string]int64{},
		ranged: map[string]map[string][]byte{}, stamps: map[string]int64{},
		puts: map[string][]byte{}, dels: map[string]bool{}}
}

// etcdTx is one transaction. Reads happen at rev (the first read's revision); writes are
// buffered until commit. Keys are full etcd keys unless said otherwise.
type etcdTx struct {
	b     *EtcdBackend
	write bool
	rev   int64
	err   error // the first read error; the transaction's result is void

	vals   map[string][]byte            // key read with Get -> value (nil: absent)
	modRev map[string]int64             // key read with Get -> its mod revision (0: absent)
	ranged map[string]map[string][]byte // bucket iterated -> key in bucket -> value
	stamps map[string]int64             // bucket iterated -> its stamp's mod revision

	puts map[string][]byte
	dels map[string]bool

	mu *concurrency.Mutex // the write lock, if held
}

func (t *etcdTx) key(bucket, key string) string { return t.b.prefix + bucket + "/" + key }

// errBadBucket is a caller's mistake, never a sign of etcd trouble.
var errBadBucket = errors.New("bad bucket name")

func checkBucket(bucket string) error {
	if bucket == "" || strings.ContainsRune(bucket, '/') || bucket[0] == '.' {
		return fmt.Errorf("etcd: %w %q (empty, with \"/\" or starting with \".\")", errBadBucket, bucket)
	}
	return nil
}

func (t *etcdTx) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

// readOpts returns the options that read at the transaction's revision.
func (t *etcdTx) readOpts(opts ...clientv3.OpOption) []clientv3.OpOption {
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	return opts
}

func (t *etcdTx) Get(bucket, key string) []byte {
	if t.err != nil {
		return nil
	}
	if err := checkBucket(bucket); err != nil {
		t.fail(err)
		return nil
	}
	k := t.key(bucket, key)
	if t.dels[k] {
		return nil
	}
	if v, ok := t.puts[k]; ok {
		return bytes.Clone(v)
	}
	if m, ok := t.ranged[bucket]; ok {
		return bytes.Clone(m[key])
	}
	if v, ok := t.vals[k]; ok {
		return bytes.Clone(v)
	}
	ctx, cancel := context.WithTimeout(t.b.ctx, t.b.timeout)
	defer cancel()
	resp, err := t.b.cli.Get(ctx, k, t.readOpts()...)
	if err != nil {
		t.fail(err)
		return nil
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	var v []byte
	var mr int64
	if len(resp.Kvs) > 0 {
		v, mr = resp.Kvs[0].Value, resp.Kvs[0].ModRevision
	}
	t.vals[k], t.modRev[k] = v, mr
	return bytes.Clone(v)
}

func (t *etcdTx) ForEach(bucket string, fn func(string, []byte) error) error {
	if t.err != nil {
		return t.err
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	m, ok := t.ranged[bucket]
	if !ok {
		bp := t.b.prefix + bucket + "/"
		stamp := t.b.prefix + etcdStampDir + bucket
		ctx, cancel := context.WithTimeout(t.b.ctx, t.b.timeout)
		resp, err := t.b.cli.Txn(ctx).Then(
			clientv3.OpGet(bp, t.readOpts(clientv3.WithPrefix())...),
			clientv3.OpGet(stamp, t.readOpts()...),
		).Commit()
		cancel()
		if err != nil {
			t.fail(err)
			return err
		}
		if t.rev == 0 {
			t.rev = resp.Header.Revision
		}
		kvs := resp.Responses[0].GetResponseRange().Kvs
		m = make(map[string][]byte, len(kvs))
		for _, kv := range kvs {
			m[string(kv.Key[len(bp):])] = kv.Value
		}
		var sr int64
		if s := resp.Responses[1].GetResponseRange().Kvs; len(s) > 0 {
			sr = s[0].ModRevision
		}
		t.ranged[bucket], t.stamps[bucket] = m, sr
	}
	// The bucket as this transaction sees it: what was read, with its own writes.
	view := maps.Clone(m)
	bp := t.b.prefix + bucket + "/"
	for k, v := range t.puts {
		if rest, ok := strings.CutPrefix(k, bp); ok {
			view[rest] = v
		}
	}
	for k := range t.dels {
		if rest, ok := strings.CutPrefix(k, bp); ok {
			delete(view, rest)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(view)) {
		if err := fn(k, bytes.Clone(view[k])); err != nil {
			return err
		}
	}
	return nil
}

var errReadOnly = errors.New("etcd: write in a read-only transaction")

func (t *etcdTx) Put(bucket, key string, val []byte) error {
	if !t.write {
		return errReadOnly
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	k := t.key(bucket, key)
	delete(t.dels, k)
	t.puts[k] = bytes.Clone(val)
	return nil
}

func (t *etcdTx) Delete(bucket, key string) error {
	if !t.write {
		return errReadOnly
	}
	if err := checkBucket(bucket); err != nil {
		return err
	}
	k := t.key(bucket, key)
	delete(t.puts, k)
	t.dels[k] = true
	return nil
}

// bucketOf returns the bucket of a full key.
func (t *etcdTx) bucketOf(k string) string {
	b, _, _ := strings.Cut(k[len(t.b.prefix):], "/")
	return b
}

// commit writes the buffered writes in one etcd Txn guarded by the reads. It returns
// false if something read changed since (the caller runs the transaction again).
func (t *etcdTx) commit() (bool, error) {
	if len(t.puts) == 0 && len(t.dels) == 0 {
		return true, nil
	}
	cmps, err := t.compares()
	if err != nil {
		return false, t.b.classify(err, 0)
	}
	if t.mu != nil {
		cmps = append(cmps, t.mu.IsOwner())
	} else {
		// Nobody holds or awaits the write lock (see etcdLockAfter).
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(t.b.prefix+etcdLockDir+"/").WithPrefix(), "=", 0))
	}
	touched := map[string]bool{}
	var ops []clientv3.Op
	for _, k := range slices.Sorted(maps.Keys(t.puts)) {
		ops = append(ops, clientv3.OpPut(k, string(t.puts[k])))
		touched[t.bucketOf(k)] = true
	}
	for _, k := range slices.Sorted(maps.Keys(t.dels)) {
		ops = append(ops, clientv3.OpDelete(k))
		touched[t.bucketOf(k)] = true
	}
	for _, bk := range slices.Sorted(maps.Keys(touched)) {
		ops = append(ops, clientv3.OpPut(t.b.prefix+etcdStampDir+bk, ""))
	}
	ctx, cancel := context.WithTimeout(t.b.ctx, t.b.timeout)
	defer cancel()
	resp, err := t.b.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		e := t.b.classify(err, len(ops))
		if e.Code == CodeUnavailable {
			e.Message = "the write may or may not be stored: " + e.Message
		}
		return false, e
	}
	t.b.markUp()
	return resp.Succeeded, nil
}

// compares guards the commit: every key read keeps its mod revision, every bucket
// iterated keeps its stamp. Past etcdMaxCompares per-key compares, the keys' buckets'
// stamps are compared instead (coarser, as safe).
func (t *etcdTx) compares() ([]clientv3.Cmp, error) {
	var cmps []clientv3.Cmp
	stamps := maps.Clone(t.stamps)
	if len(t.modRev) > etcdMaxCompares {
		var need []string
		for k := range t.modRev {
			if bk := t.bucketOf(k); !slices.Contains(need, bk) {
				if _, ok := stamps[bk]; !ok {
					need = append(need, bk)
				}
			}
		}
		if len(need) > 0 {
			var gets []clientv3.Op
			for _, bk := range need {
				gets = append(gets, clientv3.OpGet(t.b.prefix+etcdStampDir+bk, clientv3.WithRev(t.rev)))
			}
			ctx, cancel := context.WithTimeout(t.b.ctx, t.b.timeout)
			resp, err := t.b.cli.Txn(ctx).Then(gets...).Commit()
			cancel()
			if err != nil {
				return nil, err
			}
			for i, bk := range need {
				var sr int64
				if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
					sr = kvs[0].ModRevision
				}
				stamps[bk] = sr
			}
		}
	} else {
		for _, k := range slices.Sorted(maps.Keys(t.modRev)) {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", t.modRev[k]))
		}
	}
	for _, bk := range slices.Sorted(maps.Keys(stamps)) {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.b.prefix+etcdStampDir+bk), "=", stamps[bk]))
	}
	return cmps, nil
}

// viewMirror runs fn on the mirror: the last state the watch saw.
func (b *EtcdBackend) viewMirror(fn func(Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return fn(mirrorTx{m: b.mirror})
}

// mirrorTx is a read-only transaction over the mirror (keys without the prefix).
type mirrorTx struct{ m map[string][]byte }

func (t mirrorTx) Get(bucket, key string) []byte { return bytes.Clone(t.m[bucket+"/"+key]) }

func (t mirrorTx) ForEach(bucket string, fn func(string, []byte) error) error {
	if err := checkBucket(bucket); err != nil {
		return err
	}
	bp := bucket + "/"
	var keys []string
	for k := range t.m {
		if strings.HasPrefix(k, bp) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn(k[len(bp):], bytes.Clone(t.m[k])); err != nil {
			return err
		}
	}
	return nil
}

func (mirrorTx) Put(string, string, []byte) error { return errReadOnly }
func (mirrorTx) Delete(string, string) error      { return errReadOnly }
