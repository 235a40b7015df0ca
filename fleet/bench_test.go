package fleet

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// BenchmarkByteTierGet reads a 30 KB object from a real local Redis.
func BenchmarkByteTierGet(b *testing.B) {
	srv := redistest.Start(b)
	tier := NewByteTier(openClient(b, srv.URL, Options{}), 0, testMACKey)
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "acct", ID: "img-1", Variant: "public", Format: imageproxy.FormatAVIF}
	tier.Set(ctx, k, testObject(30<<10), time.Hour)
	tier.Wait()
	b.SetBytes(30 << 10)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tier.Get(ctx, k); !ok {
			b.Fatal("miss")
		}
	}
}

// BenchmarkLimiterAllow counts events against a real local Redis, over
// many subjects so most events are allowed.
func BenchmarkLimiterAllow(b *testing.B) {
	srv := redistest.Start(b)
	fallback := &countingLimiter{}
	lim := NewLimiter(openClient(b, srv.URL, Options{}), "api", limit.Rate{Events: 100, Per: time.Second}, fallback)
	ctx := context.Background()
	subjects := make([]string, 1000)
	for i := range subjects {
		subjects[i] = "user-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		lim.Allow(ctx, subjects[i%len(subjects)])
		i++
	}
	if n := fallback.calls.Load(); n != 0 {
		b.Fatalf("%d events fell back to the local limiter", n)
	}
}
