package signer

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// uuidID and escapedID are the two ends of what an entry costs: a
// Cloudflare-generated id, and the longest custom id (1,024 bytes) made of
// characters that each become three in the URL ("%" → "%25").
func uuidID(i int) string { return fmt.Sprintf("%08x-9509-446b-8c69-c81bfeac0a01", i) }

func escapedID(i int) string { return fmt.Sprintf("%08d", i) + strings.Repeat("%", 1024-8) }

// heapPerEntry fills a Signer with n URLs and returns the heap they took per
// entry, measured with runtime.MemStats, and the Signer's own estimate.
func heapPerEntry(t testing.TB, n int, id func(int) string) (measured, estimated float64) {
	s, err := New(Config{
		DeliveryURL: "https://imagedelivery.net", AccountHash: "ZWd9g1K7eljCn_KDTu_MWA", Key: []byte("k3y"),
		Window: Window{Size: time.Hour, MinRemaining: 5 * time.Minute}, MaxBytes: 1 << 40,
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, n)
	for i := range ids {
		ids[i] = id(i)
	}
	now := time.Unix(1700000000, 0)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for _, id := range ids {
		s.URL(id, "public", false, now)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ids)
	if s.entries() != n {
		t.Fatalf("cached %d URLs, want %d", s.entries(), n)
	}
	measured = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	estimated = float64(s.cachedBytes()) / float64(n)
	runtime.KeepAlive(s)
	return measured, estimated
}

// TestEntryBytesMatchesTheHeap checks that the cache's accounting is honest:
// never below what the heap really holds, and not far above it.
//
//	go test -run TestEntryBytesMatchesTheHeap -v ./signer
func TestEntryBytesMatchesTheHeap(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation sizes; this measures the real build")
	}
	for _, tc := range []struct {
		name string
		n    int
		id   func(int) string
	}{
		{"uuid", 20000, uuidID},
		{"1024-byte escaped", 4000, escapedID},
	} {
		measured, estimated := heapPerEntry(t, tc.n, tc.id)
		t.Logf("%s id: %.0f B/entry on the heap, %.0f B/entry estimated; %d entries fit in 64 MiB",
			tc.name, measured, estimated, int(DefaultMaxBytes/estimated))
		if estimated < measured {
			t.Errorf("%s id: estimate %.0f B is below the measured %.0f B: MaxBytes would not bound the heap", tc.name, estimated, measured)
		}
		if estimated > 1.25*measured {
			t.Errorf("%s id: estimate %.0f B is over 1.25× the measured %.0f B: the budget would hold needlessly few URLs", tc.name, estimated, measured)
		}
	}
}
