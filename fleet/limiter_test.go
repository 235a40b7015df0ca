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
	// The fallback keeps count of what Redis allowed (n for alice, 1 for
	// bob), and nothing of what it denied.
	if got := fallback.calls.Load(); got != n+1 {
		t.Fatalf("fallback charged %d times while Redis was up, want %d", got, n+1)
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
	// One event per 500ms: the second call, made well within that on a
	// busy machine, is denied with a GCRA wait under a second.
	lim := NewLimiter(openClient(t, srv.URL, Options{}), "api",
		limit.Rate{Events: 1, Per: 500 * time.Millisecond}, &countingLimiter{})
	lim.Allow(context.Background(), "alice")
	if r := lim.Allow(context.Background(), "alice"); r.Allowed || r.RetryAfter != time.Second {
		t.Fatalf("second event: %+v, want denied with RetryAfter 1s (GCRA says under 500ms)", r)
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

// TestLimiterOutageKeepsWhatWasSpent uses up a budget through Redis, stops
// Redis, and expects the fallback to deny: an outage does not hand out a
// fresh budget.
func TestLimiterOutageKeepsWhatWasSpent(t *testing.T) {
	srv := redistest.Start(t)
	log := newOpLog()
	rate := limit.Rate{Events: 3, Per: time.Hour}
	lim := NewLimiter(openClient(t, srv.URL, log.options(Options{})), "upload", rate, limit.NewLocal(rate, 0))
	ctx := context.Background()
	for i := range rate.Events {
		if !lim.Allow(ctx, "alice").Allowed {
			t.Fatalf("event %d denied with Redis up", i+1)
		}
	}
	if n := log.count(OpLimit, nil); n != rate.Events {
		t.Fatalf("%d of %d events answered by Redis", n, rate.Events)
	}

	srv.Stop()
	for i := range 2 * rate.Events {
		if r := lim.Allow(ctx, "alice"); r.Allowed || r.RetryAfter <= 0 {
			t.Fatalf("outage: event %d for alice = %+v, want denied with a wait: the budget was spent", i+1, r)
		}
	}
	if n := log.count(OpLimit, nil); n != rate.Events {
		t.Fatalf("%d events answered by Redis, want the %d before it stopped", n, rate.Events)
	}
	if !lim.Allow(ctx, "bob").Allowed {
		t.Fatal("outage: bob, who spent nothing, was denied")
	}
}

// TestLimiterOutageBoundIsPerReplica shows the bound that remains: a
// replica's fallback knows only what was spent through that replica, so in
// an outage a subject that spent its budget through one replica gets a
// budget from another.
func TestLimiterOutageBoundIsPerReplica(t *testing.T) {
	srv := redistest.Start(t)
	rate := limit.Rate{Events: 3, Per: time.Hour}
	a := NewLimiter(openClient(t, srv.URL, Options{}), "upload", rate, limit.NewLocal(rate, 0))
	b := NewLimiter(openClient(t, srv.URL, Options{}), "upload", rate, limit.NewLocal(rate, 0))
	ctx := context.Background()
	for range rate.Events {
		a.Allow(ctx, "alice")
	}
	if b.Allow(ctx, "alice").Allowed {
		t.Fatal("replica b allowed an event of a budget spent through replica a, with Redis up")
	}
	srv.Stop()
	allowed := map[string]int{}
	for range 2 * rate.Events {
		for name, l := range map[string]*Limiter{"a": a, "b": b} {
			if l.Allow(ctx, "alice").Allowed {
				allowed[name]++
			}
		}
	}
	if allowed["a"] != 0 || allowed["b"] != rate.Events {
		t.Fatalf("outage allowed %v, want a: 0 (spent there), b: %d (the documented bound)", allowed, rate.Events)
	}
}
