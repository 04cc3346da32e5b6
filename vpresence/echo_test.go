package vpresence

import (
	"sync"
	"testing"
	"time"
)

func TestEchoTable(t *testing.T) {
	p, s := u("172.16.5.130"), u("10.0.0.10")
	k := func(id uint16) EchoKey { return EchoKey{Presence: p, ServiceIP: s, ID: id} }
	nginx := EchoTarget{Peer: 1<<32 | uint64(u("100.64.4.130")), Target: u("100.64.8.2")}
	echo := EchoTarget{Peer: nginx.Peer, Target: u("100.64.8.4")}
	cases := []struct {
		name string
		run  func(tb *EchoTable) (EchoTarget, bool)
		want EchoTarget
		ok   bool
	}{
		{"nothing recorded", func(tb *EchoTable) (EchoTarget, bool) { return tb.Get(k(7), t0) }, EchoTarget{}, false},
		{"recorded", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			return tb.Get(k(7), t0.Add(time.Second))
		}, nginx, true},
		{"other id", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			return tb.Get(k(8), t0)
		}, EchoTarget{}, false},
		{"other service IP", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			return tb.Get(EchoKey{Presence: p, ServiceIP: s + 1, ID: 7}, t0)
		}, EchoTarget{}, false},
		{"two ids, two services", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			tb.Put(k(8), echo, t0)
			if v, ok := tb.Get(k(7), t0); !ok || v != nginx {
				return v, false
			}
			return tb.Get(k(8), t0)
		}, echo, true},
		{"newer request wins", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			tb.Put(k(7), echo, t0.Add(time.Second))
			return tb.Get(k(7), t0.Add(time.Second))
		}, echo, true},
		{"expires", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			return tb.Get(k(7), t0.Add(31*time.Second))
		}, EchoTarget{}, false},
		{"a request refreshes", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			tb.Put(k(7), nginx, t0.Add(20*time.Second))
			return tb.Get(k(7), t0.Add(40*time.Second))
		}, nginx, true},
		{"a reply does not refresh", func(tb *EchoTable) (EchoTarget, bool) {
			tb.Put(k(7), nginx, t0)
			tb.Get(k(7), t0.Add(20*time.Second))
			return tb.Get(k(7), t0.Add(40*time.Second))
		}, EchoTarget{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tb := NewEchoTable(16, 30*time.Second)
			got, ok := c.run(tb)
			if ok != c.ok || got != c.want {
				t.Fatalf("got %+v %v, want %+v %v", got, ok, c.want, c.ok)
			}
		})
	}
}

// The table never holds more than its size; the newest request is always remembered, and
// a full set gives up its least recently refreshed entry, expired ones first.
func TestEchoTableBoundAndEviction(t *testing.T) {
	tb := NewEchoTable(8, time.Minute)
	if tb.Size() != 8 {
		t.Fatalf("size %d", tb.Size())
	}
	for i := 0; i < 1000; i++ {
		k := EchoKey{Presence: uint32(i), ServiceIP: 7, ID: uint16(i)}
		now := t0.Add(time.Duration(i) * time.Millisecond)
		tb.Put(k, EchoTarget{Target: uint32(i)}, now)
		if v, ok := tb.Get(k, now); !ok || v.Target != uint32(i) {
			t.Fatalf("request %d forgotten at once", i)
		}
		if n := tb.Len(now); n > tb.Size() {
			t.Fatalf("%d entries > size %d", n, tb.Size())
		}
	}
	// One set of 4: the oldest goes first; an expired entry goes before any live one.
	tb = NewEchoTable(1, time.Minute)
	key := func(i int) EchoKey { return EchoKey{Presence: uint32(i), ServiceIP: 1, ID: 1} }
	for i := 0; i < 4; i++ {
		tb.Put(key(i), EchoTarget{Target: uint32(i)}, t0.Add(time.Duration(i)*time.Second))
	}
	tb.Put(key(0), EchoTarget{Target: 0}, t0.Add(10*time.Second)) // refresh 0: 1 is oldest now
	tb.Put(key(4), EchoTarget{Target: 4}, t0.Add(11*time.Second))
	now := t0.Add(11 * time.Second)
	for i, want := range []bool{true, false, true, true, true} {
		if _, ok := tb.Get(key(i), now); ok != want {
			t.Errorf("entry %d present %v, want %v", i, ok, want)
		}
	}
	later := t0.Add(64 * time.Second) // 2 and 3 expired (last 2s, 3s); 0 and 4 live
	tb.Put(key(5), EchoTarget{Target: 5}, later)
	for i, want := range map[int]bool{0: true, 2: false, 3: false, 4: true, 5: true} {
		if _, ok := tb.Get(key(i), later); ok != want {
			t.Errorf("after expiry: entry %d present %v, want %v", i, ok, want)
		}
	}
	if n := tb.Len(later); n != 3 {
		t.Errorf("live entries %d, want 3", n)
	}
}

func TestEchoTableConcurrentAndAllocFree(t *testing.T) {
	tb := NewEchoTable(4096, time.Minute)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				k := EchoKey{Presence: uint32(g), ServiceIP: 9, ID: uint16(i % 300)}
				v := EchoTarget{Peer: uint64(g), Target: uint32(i % 300)}
				tb.Put(k, v, t0)
				if got, ok := tb.Get(k, t0); ok && got.Peer != uint64(g) {
					t.Errorf("key of goroutine %d holds peer %d", g, got.Peer)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	k := EchoKey{Presence: 1, ServiceIP: 2, ID: 3}
	if n := testing.AllocsPerRun(1000, func() {
		tb.Put(k, EchoTarget{Target: 4}, t0)
		tb.Get(k, t0)
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}
