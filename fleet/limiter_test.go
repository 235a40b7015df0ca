package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/limit"
)

func TestLimiterAllowsNThenDenies(t *testing.T) {
	srv := redistest.Start(t)
	fallback := &countingLimiter{}
	const n = 5
	rate := limit.Rate{Events: n, Per: time.Minute}
	lim := NewLimiter(openClient(t, srv.URL, Options{}), "api", rate, fallback)
	ctx := context.Background()

	for i := range n {
		if r := lim.Allow(ctx, "alice"); !r.Allowed {
			t.Fatalf("event %d denied (retry after %v), want allowed", i+1, r.RetryAfter)
		}
	}
	r := lim.Allow(ctx, "alice")
	if r.Allowed {
		t.Fatalf("event %d allowed, want denied", n+1)
	}
	// GCRA frees one event every Per/Events.
	if interval := rate.Per / n; r.RetryAfter < interval-time.Second || r.RetryAfter > interval {
		t.Fatalf("RetryAfter = %v, want about %v", r.RetryAfter, interval)
	}
	if r := lim.Allow(ctx, "bob"); !r.Allowed {
		t.Fatal("another subject was denied: budgets must be per subject")
	}
	if got := fallback.calls.Load(); got != 0 {
		t.Fatalf("fallback answered %d calls while Redis was up", got)
	}
}

// TestLimiterSharedAcrossReplicas gives two replicas (two clients, two
// limiters) one Redis: together they allow the budget once, not twice.
func TestLimiterSharedAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	const n = 6
	rate := limit.Rate{Events: n, Per: time.Hour}
	replicas := []*Limiter{
		NewLimiter(openClient(t, srv.URL, Options{}), "upload", rate, &countingLimiter{}),
		NewLimiter(openClient(t, srv.URL, Options{}), "upload", rate, &countingLimiter{}),
	}
	allowed := 0
	for i := range 4 * n {
		if replicas[i%2].Allow(context.Background(), "alice").Allowed {
			allowed++
		}
	}
	if allowed != n {
		t.Fatalf("two replicas allowed %d events, want %d in total", allowed, n)
	}
}

func TestLimiterRetryAfterAtLeastOneSecond(t *testing.T) {
	srv := redistest.Start(t)
	lim := NewLimiter(openClient(t, srv.URL, Options{}), "api",
		limit.Rate{Events: 10, Per: 100 * time.Millisecond}, &countingLimiter{})
	var r limit.Result
	for range 11 {
		r = lim.Allow(context.Background(), "alice")
	}
	if r.Allowed || r.RetryAfter != time.Second {
		t.Fatalf("11th event: %+v, want denied with RetryAfter 1s (GCRA says 10ms)", r)
	}
}

func TestLimiterOffNeverCallsRedis(t *testing.T) {
	log := newOpLog()
	// Nothing listens on the URL; an Off rate must not notice.
	c := openClient(t, "redis://127.0.0.1:1", log.options(Options{}))
	lim := NewLimiter(c, "api", limit.Rate{}, &countingLimiter{})
	for range 10 {
		if !lim.Allow(context.Background(), "alice").Allowed {
			t.Fatal("Off rate denied an event")
		}
	}
	if n := log.calls(OpLimit); n != 0 {
		t.Fatalf("Off rate made %d Redis calls", n)
	}
}

// TestLimiterKey checks the stored key: the name and a hash of the
// subject, no redis_rate "rate:" prefix, never the subject.
func TestLimiterKey(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	lim := NewLimiter(openClient(t, srv.URL, Options{}), "api", limit.Rate{Events: 1, Per: time.Minute}, &countingLimiter{})
	lim.Allow(context.Background(), "user:alice")
	sum := sha256.Sum256([]byte("user:alice"))
	want := []string{"imagegate:v1:limit:api:" + hex.EncodeToString(sum[:])[:32]}
	if got := allKeys(t, rdb); !slices.Equal(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
}

// TestLimiterKeyIsKeyed: with a secret, the key is an HMAC of the subject,
// so reading Redis and hashing a guessed user name confirms nothing.
func TestLimiterKeyIsKeyed(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	lim := NewLimiter(openClient(t, srv.URL, Options{}), "api", limit.Rate{Events: 1, Per: time.Minute}, &countingLimiter{}).
		HashSubjectsWith([]byte("fleet secret"))
	lim.Allow(context.Background(), "user:alice")
	m := hmac.New(sha256.New, []byte("fleet secret"))
	m.Write([]byte("user:alice"))
	want := []string{"imagegate:v1:limit:api:" + hex.EncodeToString(m.Sum(nil))[:32]}
	if got := allKeys(t, rdb); !slices.Equal(got, want) {
		t.Fatalf("keys %q, want %q", got, want)
	}
}
