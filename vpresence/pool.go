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
	Quiet int // freed, still in the quiet period (as of the last call)
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
// it is never held by the control plane.
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
			p.release(i, s.last+p.idle)
			ok = false
		} else {
			s.last = t
		}
	}
	p.mu.Unlock()
	return p.r.First + i, ok
}

// Lease returns the address leased to key, leasing a new one if there is none. A new
// address is a never-used one or else the longest-free one past its quiet period.
func (p *Pool) Lease(key uint64, now time.Time) (uint32, error) {
	t := now.UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, ok := p.byKey[key]; ok {
		s := &p.slots[i]
		if t-s.last <= p.idle {
			s.last = t
			return p.r.First + i, nil
		}
		p.release(i, s.last+p.idle)
	}
	i, ok := p.take(t)
	if !ok && t-p.lastSweep >= int64(time.Second) {
		p.sweepLocked(t)
		i, ok = p.take(t)
	}
	if !ok {
		return 0, ErrExhausted
	}
	p.slots[i] = slot{key: key, last: t, used: true}
	p.byKey[key] = i
	p.inUse++
	return p.r.First + i, nil
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
			p.release(i, s.last+p.idle)
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
		p.release(i, now.UnixNano())
	}
	p.mu.Unlock()
}

// Sweep frees every expired lease and returns how many it freed. Leases also expire
// lazily on lookup; Sweep keeps the statistics honest.
func (p *Pool) Sweep(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sweepLocked(now.UnixNano())
}

// Stats reports pool use as of now.
func (p *Pool) Stats(now time.Time) PoolStats {
	t := now.UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStats{Size: len(p.slots), InUse: p.inUse, Fresh: len(p.slots) - int(p.next)}
	for _, i := range p.free {
		if t-p.slots[i].freedAt < p.quiet {
			st.Quiet++
		}
	}
	return st
}

// Must hold p.mu.
func (p *Pool) sweepLocked(t int64) int {
	p.lastSweep = t
	n := 0
	for i := uint32(0); i < p.next; i++ {
		s := &p.slots[i]
		if s.used && t-s.last > p.idle {
			p.release(i, s.last+p.idle)
			n++
		}
	}
	return n
}

// release frees slot i as of time at. Must hold p.mu.
func (p *Pool) release(i uint32, at int64) {
	s := &p.slots[i]
	if !s.used {
		return
	}
	delete(p.byKey, s.key)
	*s = slot{freedAt: at}
	p.inUse--
	p.push(i)
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
