package nat

import "sync"

// fragTable remembers how the first fragment of a datagram was translated so later
// fragments (which carry no ports) follow the same address mapping.
type fragTable struct {
	mu      sync.Mutex // guards m
	m       map[fragKey]fragVal
	max     int
	timeout int64
}

type fragKey struct {
	src, dst uint32
	id       uint16
	proto    uint8
	dir      uint8
}

type fragVal struct {
	src, dst uint32
	action   Action
	decTTL   bool
	st       *state // the state that decided; a later fragment after a swap is dropped
	expires  int64
}

func (f *fragTable) init(max int, timeout int64) {
	f.m = make(map[fragKey]fragVal, 64)
	f.max, f.timeout = max, timeout
}

func (f *fragTable) put(k fragKey, v fragVal, now int64) {
	v.expires = now + f.timeout
	f.mu.Lock()
	if _, ok := f.m[k]; !ok && len(f.m) >= f.max {
		for k2, v2 := range f.m {
			if v2.expires < now {
				delete(f.m, k2)
			}
		}
		if len(f.m) >= f.max {
			for k2 := range f.m { // evict one at random
				delete(f.m, k2)
				break
			}
		}
	}
	f.m[k] = v
	f.mu.Unlock()
}

func (f *fragTable) get(k fragKey, now int64) (fragVal, bool) {
	f.mu.Lock()
	v, ok := f.m[k]
	if ok && v.expires < now {
		delete(f.m, k)
		ok = false
	}
	f.mu.Unlock()
	return v, ok
}
