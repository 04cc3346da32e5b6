package vpresence

import (
	"errors"
	"sync"
	"time"
)

// ErrExhausted is returned when a pool has no address to lease: every address is in use
// or still sitting out its quiet period.
var ErrExhausted = errors.New("vpresence: lease pool exhausted")

// maxPoolSize bounds a pool's bookkeeping (a /12 upper half); larger ranges are cut.
const maxPoolSize = 1 << 19

// sweepChunk is how many slots Sweep checks per hold of the pool lock (tens of
// microseconds), so a sweep of a large pool never stalls the packet path for long.
const sweepChunk = 4096

// statsChunk bounds how many quiet periods Stats retires per hold of the pool lock.
const statsChunk = 4096

// PoolConfig sets a pool's timeouts.
type PoolConfig struct {
	// Idle: a lease not refreshed by traffic for this long expires. Default 30m.
	Idle time.Duration
	// Quiet: a freed address is not leased again before this long. Default 2m.
	Quiet time.Duration
}

// PoolStats shows how full a pool is.
type PoolStats struct {
	Size  int // addresses in the pool
	InUse int // leased now
	Quiet int // freed, still in the quiet period as of the time asked
	Fresh int // never leased
}

type slot struct {
	key     uint64
	last    int64 // last refresh, unix ns
	freedAt int64 // unix ns the address became free
	used    bool
}

// Pool leases addresses of a Range as 1:1 mappings key ↔ address. A key is the peer the
// address stands for (an address as uint32, optionally tagged in the high bits). Pool is
// safe for concurrent use; its lock is held only for a map probe and a few stores, and
// it is never held by the control plane. Stats keeps its counts as leases come and go
// (no walk of the pool), and Sweep walks the pool in chunks, releasing the lock between
// them, so neither stalls the packet path on a large pool.
type Pool struct {
	r           Range
	idle, quiet int64

	mu        sync.Mutex // guards everything below
	byKey     map[uint64]uint32
	slots     []slot
	next      uint32   // first never-leased slot
	free      []uint32 // min-heap of freed slot indices by freedAt (longest-free on top)
	inUse     int
	lastSweep int64
	// quietEnd is a min-heap of the times at which frees still in their quiet period
	// when made leave it (freedAt + quiet); its length is PoolStats.Quiet once the
	// entries at or before "now" are retired. An entry outlives the reuse of its slot
	// only while the reuse is at least as late as the entry's time, i.e. it is retired
	// by any later Stats.
	quietEnd []int64
}

// NewPool makes a pool over r.
func NewPool(r Range, cfg PoolConfig) *Pool {
	if cfg.Idle <= 0 {
		cfg.Idle = 30 * time.Minute
	}
	if cfg.Quiet < 0 {
		cfg.Quiet = 0
	} else if cfg.Quiet == 0 {
		cfg.Quiet = 2 * time.Minute
	}
	n := r.Size()
	if n > maxPoolSize {
		n = maxPoolSize
		r.Last = r.First + uint32(n) - 1
	}
	return &Pool{
		r: r, idle: int64(cfg.Idle), quiet: int64(cfg.Quiet),
		byKey: make(map[uint64]uint32),
		slots: make([]slot, n),
	}
}

// Range is the pool's address range.
func (p *Pool) Range() Range { return p.r }

// Contains reports whether a is one of the pool's addresses.
func (p *Pool) Contains(a uint32) bool { return p.r.Contains(a) }

// Get returns the address leased to key and refreshes it; ok is false if there is none
// (or it has expired).
func (p *Pool) Get(key uint64, now time.Time) (addr uint32, ok bool) {
	t := now.UnixNano()
	p.mu.Lock()
	i, ok := p.byKey[key]
	if ok {
		s := &p.slots[i]
		if t-s.last > p.idle {
			p.release(i, s.last+p.idle, t)
			ok = false
		} else {
			s.last = t
		}
	}
	p.mu.Unlock()
	return p.r.First + i, ok
}

// Lease returns the address leased to key, leasing a new one if there is none. A new
// address is a never-used one or else the longest-free one past its quiet period. When
// there is none, Lease sweeps expired leases (at most once a second, without holding
// the lock throughout; a Lease racing with that sweep may still see ErrExhausted) and
// tries again.
func (p *Pool) Lease(key uint64, now time.Time) (uint32, error) {
	t := now.UnixNano()
	p.mu.Lock()
	a, ok := p.leaseLocked(key, t)
	if !ok && t-p.lastSweep >= int64(time.Second) {
		p.lastSweep = t // no other Lease starts a sweep meanwhile
		p.mu.Unlock()
		p.sweep(t)
		p.mu.Lock()
		a, ok = p.leaseLocked(key, t) // key may have been leased meanwhile
	}
	p.mu.Unlock()
	if !ok {
		return 0, ErrExhausted
	}
	return a, nil
}

// leaseLocked is Lease without the sweep. Must hold p.mu.
func (p *Pool) leaseLocked(key uint64, t int64) (uint32, bool) {
	if i, ok := p.byKey[key]; ok {
		s := &p.slots[i]
		if t-s.last <= p.idle {
			s.last = t
			return p.r.First + i, true
		}
		p.release(i, s.last+p.idle, t)
	}
	i, ok := p.take(t)
	if !ok {
		return 0, false
	}
	p.slots[i] = slot{key: key, last: t, used: true}
	p.byKey[key] = i
	p.inUse++
	return p.r.First + i, true
}

// Peer returns the key an address is leased to and refreshes the lease.
func (p *Pool) Peer(addr uint32, now time.Time) (key uint64, ok bool) {
	if !p.r.Contains(addr) {
		return 0, false
	}
	t := now.UnixNano()
	i := addr - p.r.First
	p.mu.Lock()
	s := &p.slots[i]
	if s.used {
		if t-s.last > p.idle {
			p.release(i, s.last+p.idle, t)
		} else {
			s.last = t
			key, ok = s.key, true
		}
	}
	p.mu.Unlock()
	return key, ok
}

// Release frees the lease of key now (its address then sits out the quiet period).
func (p *Pool) Release(key uint64, now time.Time) {
	p.mu.Lock()
	if i, ok := p.byKey[key]; ok {
		t := now.UnixNano()
		p.release(i, t, t)
	}
	p.mu.Unlock()
}

// Sweep frees every expired lease and returns how many it freed. Leases also expire
// lazily on lookup; Sweep keeps the statistics honest. It checks sweepChunk slots per
// hold of the lock, so lookups interleave with a sweep of a large pool.
func (p *Pool) Sweep(now time.Time) int { return p.sweep(now.UnixNano()) }

func (p *Pool) sweep(t int64) int {
	n := 0
	for start := uint32(0); ; {
		p.mu.Lock()
		if start == 0 {
			p.lastSweep = t
		}
		end := min(start+sweepChunk, p.next) // p.next only grows
		for i := start; i < end; i++ {
			s := &p.slots[i]
			if s.used && t-s.last > p.idle {
				p.release(i, s.last+p.idle, t)
				n++
			}
		}
		done := end >= p.next
		p.mu.Unlock()
		if done {
			return n
		}
		start = end
	}
}

// Stats reports pool use as of now. Its cost does not grow with the pool: the counts are
// kept as leases are made and freed, and only quiet periods that ended since the last
// call are retired (statsChunk per hold of the lock).
func (p *Pool) Stats(now time.Time) PoolStats {
	t := now.UnixNano()
	for {
		p.mu.Lock()
		if p.retireQuiet(t, statsChunk) {
			st := PoolStats{Size: len(p.slots), InUse: p.inUse, Quiet: len(p.quietEnd), Fresh: len(p.slots) - int(p.next)}
			p.mu.Unlock()
			return st
		}
		p.mu.Unlock()
	}
}

// release frees slot i as of time at (≤ t, the caller's now). Must hold p.mu.
func (p *Pool) release(i uint32, at, t int64) {
	s := &p.slots[i]
	if !s.used {
		return
	}
	delete(p.byKey, s.key)
	*s = slot{freedAt: at}
	p.inUse--
	p.push(i)
	if t-at < p.quiet {
		p.pushQuiet(at + p.quiet)
	}
	// Retire a little on every free, so quietEnd stays bounded without Stats calls.
	p.retireQuiet(t, 2)
}

// retireQuiet drops up to max quiet periods that have ended by t and reports whether
// none that has ended is left. Must hold p.mu.
func (p *Pool) retireQuiet(t int64, max int) bool {
	for ; max > 0; max-- {
		if len(p.quietEnd) == 0 || p.quietEnd[0] > t {
			return true
		}
		p.popQuiet()
	}
	return len(p.quietEnd) == 0 || p.quietEnd[0] > t
}

// take returns a never-used slot, or the longest-free slot past its quiet period.
// Must hold p.mu.
func (p *Pool) take(t int64) (uint32, bool) {
	if int(p.next) < len(p.slots) {
		i := p.next
		p.next++
		return i, true
	}
	if len(p.free) > 0 && t-p.slots[p.free[0]].freedAt >= p.quiet {
		return p.pop(), true
	}
	return 0, false
}

// Min-heap of slot indices ordered by freedAt. Must hold p.mu.
func (p *Pool) push(i uint32) {
	p.free = append(p.free, i)
	j := len(p.free) - 1
	for j > 0 {
		parent := (j - 1) / 2
		if p.slots[p.free[parent]].freedAt <= p.slots[p.free[j]].freedAt {
			break
		}
		p.free[parent], p.free[j] = p.free[j], p.free[parent]
		j = parent
	}
}

func (p *Pool) pop() uint32 {
	top := p.free[0]
	last := len(p.free) - 1
	p.free[0] = p.free[last]
	p.free = p.free[:last]
	j := 0
	for {
		l, r, m := 2*j+1, 2*j+2, j
		if l < last && p.slots[p.free[l]].freedAt < p.slots[p.free[m]].freedAt {
			m = l
		}
		if r < last && p.slots[p.free[r]].freedAt < p.slots[p.free[m]].freedAt {
			m = r
		}
		if m == j {
			break
		}
		p.free[m], p.free[j] = p.free[j], p.free[m]
		j = m
	}
	return top
}

// Min-heap of quiet-period ends. Must hold p.mu.
func (p *Pool) pushQuiet(end int64) {
	h := append(p.quietEnd, end)
	j := len(h) - 1
	for j > 0 {
		parent := (j - 1) / 2
		if h[parent] <= h[j] {
			break
		}
		h[parent], h[j] = h[j], h[parent]
		j = parent
	}
	p.quietEnd = h
}

func (p *Pool) popQuiet() {
	h := p.quietEnd
	last := len(h) - 1
	h[0] = h[last]
	h = h[:last]
	j := 0
	for {
		l, r, m := 2*j+1, 2*j+2, j
		if l < last && h[l] < h[m] {
			m = l
		}
		if r < last && h[r] < h[m] {
			m = r
		}
		if m == j {
			break
		}
		h[m], h[j] = h[j], h[m]
		j = m
	}
	p.quietEnd = h
}
