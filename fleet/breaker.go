package fleet

import (
	"sync"
	"sync/atomic"
	"time"
)

// outcome is how one call to Redis ended, as far as the breaker cares.
type outcome uint8

const (
	succeeded outcome = iota // Redis answered
	failed                   // error or deadline: Redis may be down
	abandoned                // the caller gave up first: says nothing about Redis
)

// breaker is a consecutive-failure circuit breaker. Closed, it lets every
// call through; after threshold consecutive failures it opens for coolDown,
// refusing every call; then it lets a single probe through (half-open),
// whose success closes it and whose failure opens it again.
type breaker struct {
	threshold int
	coolDown  time.Duration
	onChange  func(up bool) // called under mu, so changes arrive in order

	up atomic.Bool // closed; read without mu so onChange may call Up

	mu        sync.Mutex
	failures  int       // consecutive
	openUntil time.Time // meaningful while failures >= threshold
	probing   bool      // the half-open probe is in flight
}

func newBreaker(threshold int, coolDown time.Duration, onChange func(up bool)) *breaker {
	b := &breaker{threshold: threshold, coolDown: coolDown, onChange: onChange}
	b.up.Store(true)
	return b
}

// allow reports whether a call may go to Redis now. Every true answer must
// be followed by exactly one done.
func (b *breaker) allow(now time.Time) bool {
	if b.up.Load() {
		return true // the common case takes no lock
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.threshold:
		return true
	case b.probing || now.Before(b.openUntil):
		return false
	}
	b.probing = true
	return true
}

// done records how an allowed call ended.
func (b *breaker) done(now time.Time, o outcome) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch o {
	case succeeded:
		b.failures = 0
		b.probing = false
	case failed:
		b.failures++
		if b.failures >= b.threshold {
			b.openUntil = now.Add(b.coolDown)
			b.probing = false
		}
	case abandoned:
		b.probing = false
	}
	b.setUp(b.failures < b.threshold)
}

// setUp records the state and reports a change; b.mu is held.
func (b *breaker) setUp(up bool) {
	if b.up.Swap(up) != up && b.onChange != nil {
		b.onChange(up)
	}
}
