package limit

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/internal/testclock"
)

// clock is a settable clock for a Local under test.
type clock = testclock.Clock

func newTestLocal(r Rate, maxSubjects int) (*Local, *clock) {
	clk := testclock.New(time.Unix(1_800_000_000, 0))
	l := NewLocal(r, maxSubjects)
	l.now = clk.Now
	return l, clk
}

func TestLocalBudget(t *testing.T) {
	tests := []struct {
		name      string
		rate      Rate
		wantRetry time.Duration // after the burst is spent
	}{
		{"3 per minute", Rate{Events: 3, Per: time.Minute}, 20 * time.Second},
		{"1 per second", Rate{Events: 1, Per: time.Second}, time.Second},
		{"10 per second rounds up to 1s", Rate{Events: 10, Per: time.Second}, time.Second},
		{"2 per 5s rounds up", Rate{Events: 2, Per: 5 * time.Second}, 3 * time.Second},
		{"1200 per 5m", Rate{Events: 1200, Per: 5 * time.Minute}, time.Second},
	}
	ctx := context.Background()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, clk := newTestLocal(tc.rate, 0)
			for i := range tc.rate.Events {
				if r := l.Allow(ctx, "alice"); !r.Allowed {
					t.Fatalf("event %d denied: %+v", i+1, r)
				}
			}
			r := l.Allow(ctx, "alice")
			if r.Allowed || r.RetryAfter != tc.wantRetry {
				t.Fatalf("over budget: %+v, want RetryAfter %v", r, tc.wantRetry)
			}
			// A denied event spends nothing: the wait does not grow.
			if r2 := l.Allow(ctx, "alice"); r2 != r {
				t.Fatalf("second denial: %+v, want %+v", r2, r)
			}
			// One refill period later exactly one more event is allowed.
			clk.Add(tc.rate.Per / time.Duration(tc.rate.Events))
			if r := l.Allow(ctx, "alice"); !r.Allowed {
				t.Fatalf("after refill: %+v", r)
			}
			if r := l.Allow(ctx, "alice"); r.Allowed {
				t.Fatalf("second event after one refill: %+v", r)
			}
			// A full period refills the whole burst, and no more.
			clk.Add(10 * tc.rate.Per)
			for i := range tc.rate.Events {
				if r := l.Allow(ctx, "alice"); !r.Allowed {
					t.Fatalf("after full refill, event %d denied: %+v", i+1, r)
				}
			}
			if r := l.Allow(ctx, "alice"); r.Allowed {
				t.Fatalf("burst exceeded after idling: %+v", r)
			}
		})
	}
}

func TestLocalRetryAfterShrinks(t *testing.T) {
	l, clk := newTestLocal(Rate{Events: 1, Per: time.Minute}, 0)
	ctx := context.Background()
	l.Allow(ctx, "alice")
	clk.Add(45*time.Second + time.Millisecond)
	if r := l.Allow(ctx, "alice"); r.Allowed || r.RetryAfter != 15*time.Second {
		t.Fatalf("%+v, want RetryAfter 15s", r)
	}
	clk.Add(14*time.Second + 500*time.Millisecond)
	if r := l.Allow(ctx, "alice"); r.Allowed || r.RetryAfter != time.Second {
		t.Fatalf("%+v, want RetryAfter 1s (never less)", r)
	}
}

func TestLocalSubjectsAreIndependent(t *testing.T) {
	l, _ := newTestLocal(Rate{Events: 2, Per: time.Hour}, 0)
	ctx := context.Background()
	for range 2 {
		l.Allow(ctx, "alice")
	}
	if r := l.Allow(ctx, "alice"); r.Allowed {
		t.Fatal("alice over budget but allowed")
	}
	for i := range 2 {
		if r := l.Allow(ctx, "bob"); !r.Allowed {
			t.Fatalf("bob's event %d denied because of alice", i+1)
		}
	}
}

func TestLocalOff(t *testing.T) {
	for _, r := range []Rate{{}, {Events: 0, Per: time.Second}, {Events: -1, Per: time.Second}} {
		l := NewLocal(r, 0)
		for i := range 1000 {
			if res := l.Allow(context.Background(), "alice"); !res.Allowed {
				t.Fatalf("%+v: event %d denied", r, i)
			}
		}
		if l.buckets != nil {
			t.Fatalf("%+v: tracks subjects", r)
		}
	}
}

func TestLocalZeroPer(t *testing.T) {
	// A misconfigured period must not divide by zero or allow everything.
	l, _ := newTestLocal(Rate{Events: 1}, 0)
	ctx := context.Background()
	if !l.Allow(ctx, "a").Allowed {
		t.Fatal("first event denied")
	}
	if r := l.Allow(ctx, "a"); r.Allowed || r.RetryAfter != time.Second {
		t.Fatalf("%+v", r)
	}
}

func TestLocalBounded(t *testing.T) {
	const maxSubjects = 100
	l, _ := newTestLocal(Rate{Events: 1, Per: time.Hour}, maxSubjects)
	ctx := context.Background()
	for i := range 50 * maxSubjects {
		l.Allow(ctx, "s"+strconv.Itoa(i))
		if n := l.buckets.Len(); n > maxSubjects {
			t.Fatalf("after %d subjects: tracking %d, bound %d", i+1, n, maxSubjects)
		}
	}
	// The most recent subjects are remembered: their budget stays spent.
	if r := l.Allow(ctx, "s"+strconv.Itoa(50*maxSubjects-1)); r.Allowed {
		t.Fatal("recent subject forgotten")
	}
	// The default bound applies to 0 and negative sizes.
	for _, n := range []int{0, -5} {
		if got := NewLocal(Rate{Events: 1, Per: time.Second}, n); got.buckets == nil {
			t.Fatalf("maxSubjects %d: no buckets", n)
		}
	}
}

func TestLocalConcurrent(t *testing.T) {
	// Concurrent events of one subject never overspend: exactly Events of
	// them are allowed while the clock stands still. 32 other subjects
	// churn through room for 24, so evictions race with lookups; "shared"
	// is used between any two of them and so is never the one evicted.
	const events, goroutines, each = 50, 8, 40
	l, _ := newTestLocal(Rate{Events: events, Per: time.Hour}, 24)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if l.Allow(context.Background(), "shared").Allowed {
					allowed.Add(1)
				}
				// Churn other subjects through the LRU meanwhile.
				l.Allow(context.Background(), "g"+strconv.Itoa(g)+"-"+strconv.Itoa(i%4))
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != events {
		t.Fatalf("allowed %d of %d, want %d", got, goroutines*each, events)
	}
}

func TestLocalConcurrentFirstSight(t *testing.T) {
	// Goroutines that see a subject for the first time at once share one
	// bucket: with one event per hour, one of them is allowed.
	const subjects, goroutines = 1000, 8
	l, _ := newTestLocal(Rate{Events: 1, Per: time.Hour}, 0)
	for i := range subjects {
		subject := "s" + strconv.Itoa(i)
		start := make(chan struct{})
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				<-start
				if l.Allow(context.Background(), subject).Allowed {
					allowed.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if got := allowed.Load(); got != 1 {
			t.Fatalf("subject %d: %d of %d first events allowed, want 1", i, got, goroutines)
		}
	}
}

func BenchmarkLocalAllow(b *testing.B) {
	ctx := context.Background()
	b.Run("one subject", func(b *testing.B) {
		l := NewLocal(Rate{Events: 1000, Per: time.Second}, 0)
		b.ReportAllocs()
		for b.Loop() {
			l.Allow(ctx, "alice")
		}
	})
	b.Run("10k subjects", func(b *testing.B) {
		l := NewLocal(Rate{Events: 10, Per: time.Second}, 0)
		subjects := make([]string, DefaultMaxSubjects)
		for i := range subjects {
			subjects[i] = "subject-" + strconv.Itoa(i)
			l.Allow(ctx, subjects[i]) // steady state: every subject tracked
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l.Allow(ctx, subjects[i%len(subjects)])
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		l := NewLocal(Rate{Events: 1000, Per: time.Second}, 0)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Allow(ctx, "alice")
			}
		})
	})
}

func BenchmarkLocalMemory(b *testing.B) {
	// Heap held per tracked subject once the LRU is full.
	ctx := context.Background()
	subjects := make([]string, 2*DefaultMaxSubjects)
	for i := range subjects {
		subjects[i] = "subject-" + strconv.Itoa(i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		l := NewLocal(Rate{Events: 10, Per: time.Second}, 0)
		for _, s := range subjects {
			l.Allow(ctx, s)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/DefaultMaxSubjects, "B/subject")
		runtime.KeepAlive(l)
	}
}
