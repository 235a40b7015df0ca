package signer

import (
	"testing"
	"time"
)

func BenchmarkSign(b *testing.B) {
	key := []byte("Oix0bbNaT8Rge9PuyxUBrjI6zrgnsyJ5=")
	b.ReportAllocs()
	for b.Loop() {
		Sign(key, "/ZWd9g1K7eljCn_KDTu_MWA/bc27a117-9509-446b-8c69-c81bfeac0a01/mobile", 1631289275)
	}
}

func BenchmarkCacheHit(b *testing.B) {
	s, err := New(Config{
		DeliveryURL: "https://imagedelivery.net", AccountHash: "acc", Key: []byte("k3y"),
		Window: Window{Size: time.Hour, MinRemaining: 5 * time.Minute}, MaxEntries: 1000,
	})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Unix(1700000000, 0)
	s.URL("bc27a117-9509-446b-8c69-c81bfeac0a01", "public", false, now)
	b.ReportAllocs()
	for b.Loop() {
		if _, hit := s.URL("bc27a117-9509-446b-8c69-c81bfeac0a01", "public", false, now); !hit {
			b.Fatal("miss")
		}
	}
}

// BenchmarkCacheMiss is a sign-and-insert with a cache too small to hold the
// working set, the worst case.
func BenchmarkCacheMiss(b *testing.B) {
	s, _ := New(Config{
		DeliveryURL: "https://imagedelivery.net", AccountHash: "acc", Key: []byte("k3y"),
		Window: Window{Size: time.Hour, MinRemaining: 5 * time.Minute}, MaxEntries: 1,
	})
	ids := []string{"a", "b"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.URL(ids[i&1], "public", false, time.Now())
		i++
	}
}

// BenchmarkJSON is the extra work of a JSON answer on a cache hit: the body
// is built on request, not kept with every cached URL.
func BenchmarkJSON(b *testing.B) {
	s, _ := New(Config{
		DeliveryURL: "https://imagedelivery.net", AccountHash: "acc", Key: []byte("k3y"),
		Window: Window{Size: time.Hour, MinRemaining: 5 * time.Minute},
	})
	u, _ := s.URL("bc27a117-9509-446b-8c69-c81bfeac0a01", "public", false, time.Unix(1700000000, 0))
	b.ReportAllocs()
	for b.Loop() {
		_ = u.JSON()
	}
}
