package fleet

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// outageCalls makes calls through tier and lim and returns the slowest and
// how many took under a millisecond.
func outageCalls(tier *ByteTier, lim *Limiter, calls int) (slowest time.Duration, fast int) {
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v"}
	for i := range calls {
		start := time.Now()
		if i%2 == 0 {
			if _, ok := tier.Get(ctx, k); ok {
				panic("hit while Redis is down")
			}
		} else {
			lim.Allow(ctx, "alice")
		}
		d := time.Since(start)
		slowest = max(slowest, d)
		if d < time.Millisecond {
			fast++
		}
	}
	return slowest, fast
}

// TestOutageAndRecovery stops Redis under a client: every call stays
// within the timeout, the breaker opens so most calls never touch the
// network, the limiter answers from its fallback, and after a restart the
// breaker closes again and Redis is used again.
func TestOutageAndRecovery(t *testing.T) {
	srv := redistest.Start(t)
	log := newOpLog()
	const timeout, coolDown = 100 * time.Millisecond, 300 * time.Millisecond
	c := openClient(t, srv.URL, log.options(Options{Timeout: timeout, FailureThreshold: 5, CoolDown: coolDown}))
	tier := NewByteTier(c, 0, testMACKey)
	fallback := &countingLimiter{}
	lim := NewLimiter(c, "api", limit.Rate{Events: 1000, Per: time.Minute}, fallback)
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v"}

	tier.Set(ctx, k, testObject(100), time.Minute)
	tier.Wait()
	if _, ok := tier.Get(ctx, k); !ok {
		t.Fatal("Get missed before the outage")
	}

	srv.Stop()
	const calls = 100
	slowest, fast := outageCalls(tier, lim, calls)
	t.Logf("Redis stopped: slowest of %d calls %v, %d under 1ms", calls, slowest, fast)
	if slowest > 5*timeout {
		t.Errorf("slowest call took %v, want < %v", slowest, 5*timeout)
	}
	if fast < calls-10 {
		t.Errorf("%d of %d calls took under 1ms; the breaker should refuse most without the network", fast, calls)
	}
	if c.Up() {
		t.Error("Up() = true with Redis stopped")
	}
	if got := fallback.calls.Load(); got != calls/2 {
		t.Errorf("fallback answered %d of %d limiter calls, want all", got, calls/2)
	}
	if n := log.count(OpGet, ErrUnavailable); n < calls/2-10 {
		t.Errorf("%d Gets refused by the open breaker, want most of %d", n, calls/2)
	}

	srv.Restart()
	// The breaker closes at the first probe after the cool-down that
	// reaches Redis (go-redis re-dials a failed pool within a second).
	deadline := time.After(coolDown + 5*time.Second)
	for up := false; !up; {
		tier.Get(ctx, k)
		select {
		case up = <-log.up:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("breaker still open 5s after the cool-down with Redis back")
		}
	}
	before := log.count(OpLimit, nil)
	if !lim.Allow(ctx, "alice").Allowed || log.count(OpLimit, nil) != before+1 {
		t.Error("limiter did not use Redis after recovery")
	}
	tier.Set(ctx, k, testObject(100), time.Minute)
	tier.Wait()
	if _, ok := tier.Get(ctx, k); !ok {
		t.Error("byte tier did not use Redis after recovery")
	}
	if got := log.stateChanges(); !slices.Equal(got, []bool{false, true}) {
		t.Errorf("state changes %v, want [false true]: one per change", got)
	}
}

// TestHangingRedis points a client at a server that accepts and never
// answers, so every call that reaches the network must end at the timeout.
func TestHangingRedis(t *testing.T) {
	const timeout = 50 * time.Millisecond
	log := newOpLog()
	c := openClient(t, "redis://"+blackHole(t), log.options(Options{Timeout: timeout, CoolDown: time.Minute}))
	fallback := &countingLimiter{}
	tier := NewByteTier(c, 0, testMACKey)
	lim := NewLimiter(c, "api", limit.Rate{Events: 10, Per: time.Second}, fallback)

	const calls = 100
	start := time.Now()
	slowest, fast := outageCalls(tier, lim, calls)
	t.Logf("hanging Redis: %d calls in %v, slowest %v, %d under 1ms", calls, time.Since(start), slowest, fast)
	if slowest > 5*timeout {
		t.Errorf("slowest call took %v, want < %v", slowest, 5*timeout)
	}
	if fast < calls-DefaultFailureThreshold {
		t.Errorf("%d of %d calls took under 1ms, want all but the %d that opened the breaker",
			fast, calls, DefaultFailureThreshold)
	}
	if c.Up() || !slices.Equal(log.stateChanges(), []bool{false}) {
		t.Errorf("Up() = %v, state changes %v; want down, [false]", c.Up(), log.stateChanges())
	}
	if got := fallback.calls.Load(); got != calls/2 {
		t.Errorf("fallback answered %d of %d limiter calls, want all", got, calls/2)
	}
}

// TestCallerCancelDoesNotOpenBreaker checks that calls abandoned by their
// caller do not count as Redis failures.
func TestCallerCancelDoesNotOpenBreaker(t *testing.T) {
	log := newOpLog()
	c := openClient(t, "redis://"+blackHole(t), log.options(Options{Timeout: time.Second}))
	tier := NewByteTier(c, 0, testMACKey)
	for range 2 * DefaultFailureThreshold {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		tier.Get(ctx, imageproxy.Key{ID: "i"})
		cancel()
	}
	if !c.Up() {
		t.Fatal("breaker opened on calls the caller gave up on")
	}
}

func TestClosedClientIsUnavailable(t *testing.T) {
	srv := redistest.Start(t)
	log := newOpLog()
	c := openClient(t, srv.URL, log.options(Options{}))
	_ = c.Close()
	NewByteTier(c, 0, testMACKey).Get(context.Background(), imageproxy.Key{ID: "i"})
	if n := log.count(OpGet, ErrUnavailable); n != 1 {
		t.Fatalf("Get on a closed client: %d ErrUnavailable, want 1", n)
	}
	if len(log.stateChanges()) != 0 {
		t.Fatal("closing the client changed the breaker state")
	}
}

func TestOpenRejectsBadURL(t *testing.T) {
	if _, err := Open(Options{URLs: []string{"http://x"}}); err == nil {
		t.Fatal("Open accepted an http URL")
	}
	if _, err := Open(Options{}); err == nil {
		t.Fatal("Open accepted no URL")
	}
}
