package idptest_test

import (
	"testing"

	"github.com/seed-a64a90cf/imagegate/internal/idptest"
)

// BenchmarkStart measures how long a test waits for Start: Hydra's start,
// its migrations on the in-memory database, its two RSA key pairs, and
// discovery. Run with -benchtime 3x; each iteration is seconds.
func BenchmarkStart(b *testing.B) {
	for b.Loop() {
		idptest.Start(b).Stop()
	}
}
