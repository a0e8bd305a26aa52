//go:build race

package serialvault_test

// raceEnabled: the race detector is on; sync.Pool drops what it is given
// at random then, so allocation counts (regexp's pooled machines) are not
// the program's.
const raceEnabled = true
