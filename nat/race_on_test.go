//go:build race

package nat

// raceEnabled shortens the slowest tests under the race detector (which runs them
// ~10x slower); the full counts run without -race.
const raceEnabled = true
