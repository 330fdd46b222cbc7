//go:build race

package sfu

// raceEnabled: the race detector is on. Its sync.Pool drops some items on
// purpose, so allocation counts are not checked then.
const raceEnabled = true
