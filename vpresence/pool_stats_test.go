package vpresence

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// walkStats is the old O(pool) Stats: the reference the incremental counts must match.
func walkStats(p *Pool, now time.Time) PoolStats {
	t := now.UnixNano()
	p.mu.Lock()
	defer p.mu.Unlock()
	st := PoolStats{Size: len(p.slots), Fresh: len(p.slots) - int(p.next)}
	for i := range p.slots[:p.next] {
		if p.slots[i].used {
			st.InUse++
		}
	}
	for _, i := range p.free {
		if t-p.slots[i].freedAt < p.quiet {
			st.Quiet++
		}
	}
	return st
}

// TestPoolStatsMatchWalk drives pools through random leases, lookups, releases, expiries
// and sweeps on a forward-moving clock and checks Stats against a walk of every slot.
func TestPoolStatsMatchWalk(t *testing.T) {
	for _, tc := range []struct {
		name        string
		size        uint32
		idle, quiet time.Duration
	}{
		{"small-pool", 8, time.Minute, 5 * time.Minute},
		{"quiet-shorter-than-idle", 64, 3 * time.Minute, 30 * time.Second},
		{"no-quiet", 16, time.Minute, -1},
		{"larger-than-a-sweep-chunk", 3 * sweepChunk, 2 * time.Minute, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPool(Range{1 << 20, 1<<20 + tc.size - 1}, PoolConfig{Idle: tc.idle, Quiet: tc.quiet})
			rng := rand.New(rand.NewPCG(1, uint64(tc.size)))
			now := t0
			keys := uint64(tc.size) * 2
			for step := 0; step < 20000; step++ {
				now = now.Add(time.Duration(rng.IntN(int(10 * time.Second))))
				k := rng.Uint64N(keys)
				switch op := rng.IntN(100); {
				case op < 50:
					p.Lease(k, now)
				case op < 70:
					p.Get(k, now)
				case op < 85:
					p.Peer(p.r.First+uint32(rng.IntN(int(tc.size))), now)
				case op < 95:
					p.Release(k, now)
				case op < 97:
					p.Sweep(now)
				default:
					now = now.Add(tc.idle) // let many leases lapse at once
				}
				if step%97 == 0 || step > 19900 {
					if got, want := p.Stats(now), walkStats(p, now); got != want {
						t.Fatalf("step %d: Stats %+v, walk %+v", step, got, want)
					}
				}
			}
			if len(p.quietEnd) > 2*int(tc.size)+2 {
				t.Fatalf("quiet heap grew to %d entries for %d slots", len(p.quietEnd), tc.size)
			}
		})
	}
}

// TestPoolSweepChunks sweeps a pool several chunks long while lookups run, and checks
// that every expired lease (and only those) was freed.
func TestPoolSweepChunks(t *testing.T) {
	const n = 5*sweepChunk + 17
	p := NewPool(Range{1 << 24, 1<<24 + n - 1}, PoolConfig{Idle: time.Minute, Quiet: time.Minute})
	for k := uint64(0); k < n; k++ {
		if _, err := p.Lease(k, t0); err != nil {
			t.Fatal(k, err)
		}
	}
	later := t0.Add(90 * time.Second)
	for k := uint64(0); k < n; k += 3 { // every third lease stays alive
		if _, ok := p.Get(k, t0.Add(50*time.Second)); !ok {
			t.Fatal("lease", k, "gone before its idle timeout")
		}
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // lookups of live leases interleave with the sweep and keep them alive
		defer wg.Done()
		for k := uint64(0); ; k += 3 {
			if k >= n {
				k = 0
			}
			select {
			case <-stop:
				return
			default:
			}
			if _, ok := p.Get(k, later); !ok {
				t.Error("live lease", k, "lost during a sweep")
				return
			}
		}
	}()
	freed := p.Sweep(later)
	close(stop)
	wg.Wait()
	if want := n - (n+2)/3; freed != want {
		t.Fatalf("swept %d, want %d", freed, want)
	}
	if st := p.Stats(later); st.InUse != (n+2)/3 || st.Quiet != freed || st.Fresh != 0 {
		t.Fatalf("stats %+v", st)
	}
	if again := p.Sweep(later); again != 0 {
		t.Fatalf("second sweep freed %d", again)
	}
}

// BenchmarkPoolStats measures Stats on a full 2^19 pool with half its addresses quiet:
// the cost the packet path can wait for behind the pool lock.
func BenchmarkPoolStats(b *testing.B) {
	p := NewPool(Range{1 << 24, 1<<24 + maxPoolSize - 1}, PoolConfig{Idle: time.Hour, Quiet: time.Hour})
	for k := uint64(0); k < maxPoolSize; k++ {
		p.Lease(k, t0)
	}
	for k := uint64(0); k < maxPoolSize; k += 2 {
		p.Release(k, t0)
	}
	b.ResetTimer()
	for b.Loop() {
		if st := p.Stats(t0); st.Quiet != maxPoolSize/2 {
			b.Fatal(st)
		}
	}
}

// BenchmarkPoolSweepChunk measures the longest single hold of the pool lock by Sweep on a
// full 2^19 pool where nothing has expired (the whole walk, every 10 s): one chunk.
func BenchmarkPoolSweepChunk(b *testing.B) {
	p := NewPool(Range{1 << 24, 1<<24 + maxPoolSize - 1}, PoolConfig{Idle: time.Hour})
	for k := uint64(0); k < maxPoolSize; k++ {
		p.Lease(k, t0)
	}
	b.ResetTimer()
	for b.Loop() {
		p.Sweep(t0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(maxPoolSize/sweepChunk), "ns/lock-hold")
}
