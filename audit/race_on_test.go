//go:build race

package audit

// raceEnabled: the race detector is on, and sync.Pool drops a share of
// what is put in it, so allocation counts are not those of a real build.
const raceEnabled = true
