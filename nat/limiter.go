package nat

import "sync/atomic"

// limiter is a lock-free GCRA rate limiter over the injected clock.
type limiter struct {
	tat      atomic.Int64 // theoretical arrival time, unix ns
	interval int64
	burst    int64
}

func (l *limiter) allow(now int64) bool {
	for {
		old := l.tat.Load()
		tat := old
		if tat < now {
			tat = now
		}
		if tat-now > l.burst {
			return false
		}
		if l.tat.CompareAndSwap(old, tat+l.interval) {
			return true
		}
	}
}
