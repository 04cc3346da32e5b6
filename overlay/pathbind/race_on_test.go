//go:build race

package pathbind

const raceEnabled = true
