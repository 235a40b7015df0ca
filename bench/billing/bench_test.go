package main

import (
	"io"
	"testing"
)

// BenchmarkRunDefault is `go run ./bench/billing` with its default flags:
// 2,000 users × 50 views × 30 days.
func BenchmarkRunDefault(b *testing.B) {
	for b.Loop() {
		if err := run(nil, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
