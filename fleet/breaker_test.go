package fleet

import (
	"slices"
	"testing"
	"time"
)

// TestBreaker walks the breaker through its states on a fake clock.
func TestBreaker(t *testing.T) {
	const threshold, coolDown = 3, 5 * time.Second
	var changes []bool
	b := newBreaker(threshold, coolDown, func(up bool) { changes = append(changes, up) })
	now := time.Unix(1000, 0)
	call := func(o outcome) {
		t.Helper()
		if !b.allow(now) {
			t.Fatalf("call refused at %v, want it let through", now)
		}
		b.done(now, o)
	}

	// Abandoned calls (the caller gave up) and a success between failures
	// never open it.
	for range 2 * threshold {
		call(abandoned)
	}
	for range threshold - 1 {
		call(failed)
	}
	call(succeeded)
	for range threshold - 1 {
		call(failed)
	}
	if !b.up.Load() || len(changes) != 0 {
		t.Fatalf("up %v, changes %v after non-consecutive failures; want closed, no change", b.up.Load(), changes)
	}

	call(failed) // the threshold-th consecutive failure
	if b.up.Load() || !slices.Equal(changes, []bool{false}) {
		t.Fatalf("up %v, changes %v; want open, [false]", b.up.Load(), changes)
	}

	// Open: refused until the cool-down ends.
	now = now.Add(coolDown - time.Millisecond)
	if b.allow(now) {
		t.Fatal("call let through during the cool-down")
	}

	// Half-open: exactly one probe; its failure opens it again.
	now = now.Add(time.Millisecond)
	if !b.allow(now) {
		t.Fatal("probe refused after the cool-down")
	}
	if b.allow(now) {
		t.Fatal("second call let through while the probe is in flight")
	}
	b.done(now, failed)
	if b.allow(now.Add(coolDown / 2)) {
		t.Fatal("call let through after a failed probe, within the new cool-down")
	}

	// An abandoned probe says nothing; the next call probes instead.
	now = now.Add(coolDown)
	call(abandoned)
	if b.up.Load() {
		t.Fatal("an abandoned probe closed the breaker")
	}

	// A successful probe closes it, reported once.
	call(succeeded)
	if !b.up.Load() || !slices.Equal(changes, []bool{false, true}) {
		t.Fatalf("up %v, changes %v; want closed, [false true]", b.up.Load(), changes)
	}
	call(succeeded)
	if len(changes) != 2 {
		t.Fatalf("changes %v; a success while closed reported a change", changes)
	}
}
