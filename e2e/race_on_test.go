//go:build race

package e2e

// raceEnabled reports whether the test binary runs under the race detector;
// TestMain then builds the binary under test with -race too.
const raceEnabled = true
