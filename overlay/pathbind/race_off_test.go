//go:build !race

package pathbind

const raceEnabled = false
