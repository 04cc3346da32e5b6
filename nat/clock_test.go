package nat

import (
	"testing"
	"time"
)

// TestMonotonicNow: the default clock follows real time but never steps back.
func TestMonotonicNow(t *testing.T) {
	prev := monotonicNow()
	for range 1000 {
		now := monotonicNow()
		if now.Before(prev) {
			t.Fatalf("clock went back: %v after %v", now, prev)
		}
		prev = now
	}
	if d := time.Since(monotonicNow()); d > time.Second || d < -time.Second {
		t.Fatalf("default clock is %v away from the wall clock without a step", d)
	}
	if NewEngine(Config{}).cfg.Now == nil {
		t.Fatal("no default clock")
	}
}
