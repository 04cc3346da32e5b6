package vpresence

import (
	"math/rand/v2"
	"sync"
	"time"
)

// An ICMP echo reply carries no port: when one host runs several exposed services, the
// reply alone does not say which service was pinged. The EchoTable remembers it: the
// gateway that hands an echo request to a service host records, under (presence IP,
// service IP, echo identifier), the peer the presence IP stood for and the address the
// request was sent to (the service's ov(S), or its VIP for a same-site client). The host's
// reply is attributed through that record; a reply that matches none is not a reply.
//
// The table is bounded (a fixed array allocated once, 4-way set-associative, the least
// recently refreshed entry of a full set evicted), entries are refreshed by requests and
// expire after a timeout decided with the caller's clock, and Put and Get allocate
// nothing.

// EchoKey names one echo exchange as the service host sees it.
type EchoKey struct {
	Presence  uint32 // the presence IP the request came from (the reply goes to it)
	ServiceIP uint32 // the service host's real address
	ID        uint16 // the echo identifier
}

// EchoTarget is what the table remembers about an echo request.
type EchoTarget struct {
	Peer   uint64 // the presence lease's key when the request passed (its peer)
	Target uint32 // the address the request was sent to: ov(S), or the VIP (same site)
}

const echoWays = 4

type echoEntry struct {
	key  EchoKey
	used bool
	val  EchoTarget
	last int64 // last request, unix ns
}

type echoSet struct {
	mu sync.Mutex // guards e
	e  [echoWays]echoEntry
}

// EchoTable is a bounded map EchoKey → EchoTarget with idle expiry. It is safe for
// concurrent use; each set has its own lock, held for a few compares.
type EchoTable struct {
	sets    []echoSet
	mask    uint64
	timeout int64
	seed    uint64
}

// NewEchoTable makes a table holding at most about size entries (rounded up to a power
// of two, at least 4); an entry not refreshed for timeout expires. Defaults: 4096, 30s.
func NewEchoTable(size int, timeout time.Duration) *EchoTable {
	if size <= 0 {
		size = 4096
	}
	if size > 1<<22 {
		size = 1 << 22
	}
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	n := 1
	for n*echoWays < size {
		n <<= 1
	}
	return &EchoTable{sets: make([]echoSet, n), mask: uint64(n - 1), timeout: int64(timeout), seed: rand.Uint64()}
}

// Size is the most entries the table holds.
func (t *EchoTable) Size() int { return len(t.sets) * echoWays }

// set picks k's set with a seeded hash, so senders cannot aim at one set.
func (t *EchoTable) set(k EchoKey) *echoSet {
	x := (uint64(k.Presence)<<32 | uint64(k.ServiceIP)) ^ t.seed
	x ^= uint64(k.ID) * 0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return &t.sets[x&t.mask]
}

// Put records (or refreshes) the request k: its presence IP stood for v.Peer and it was
// sent to v.Target. A newer request under the same key replaces the older one. When k's
// set is full, the least recently refreshed entry makes room.
func (t *EchoTable) Put(k EchoKey, v EchoTarget, now time.Time) {
	ns := now.UnixNano()
	s := t.set(k)
	s.mu.Lock()
	victim := 0
	for i := range s.e {
		e := &s.e[i]
		if e.used && e.key == k {
			e.val, e.last = v, ns
			s.mu.Unlock()
			return
		}
		// A free slot, else the least recently refreshed (an expired entry is older
		// than any live one).
		if !s.e[victim].used {
			continue
		}
		if !e.used || e.last < s.e[victim].last {
			victim = i
		}
	}
	s.e[victim] = echoEntry{key: k, used: true, val: v, last: ns}
	s.mu.Unlock()
}

// Get returns what was recorded under k if it has not expired. It does not refresh the
// entry: only requests do.
func (t *EchoTable) Get(k EchoKey, now time.Time) (EchoTarget, bool) {
	ns := now.UnixNano()
	s := t.set(k)
	s.mu.Lock()
	for i := range s.e {
		e := &s.e[i]
		if e.used && e.key == k {
			if ns-e.last > t.timeout {
				*e = echoEntry{}
				break
			}
			v := e.val
			s.mu.Unlock()
			return v, true
		}
	}
	s.mu.Unlock()
	return EchoTarget{}, false
}

// Len counts the live entries as of now (it walks the whole table: for status and
// tests, not for the packet path).
func (t *EchoTable) Len(now time.Time) int {
	ns := now.UnixNano()
	n := 0
	for i := range t.sets {
		s := &t.sets[i]
		s.mu.Lock()
		for j := range s.e {
			if s.e[j].used && ns-s.e[j].last <= t.timeout {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}
