package signer

import (
	"errors"
	"fmt"
	"time"
)

// Window is the expiry policy. Every exp is a multiple of Size, at least
// MinRemaining in the future, so all requests between two window boundaries
// share one URL.
type Window struct {
	// Size is the granularity of exp. It must be a whole number of seconds.
	Size time.Duration
	// MinRemaining is the least validity a handed-out URL may carry.
	MinRemaining time.Duration
}

// Validate reports whether the window is usable, in words an operator can
// act on. It is the one place these rules live.
func (w Window) Validate() error {
	switch {
	case w.Size < time.Minute:
		return fmt.Errorf("window: %v is shorter than the minimum of 1m; use 1h unless you need faster expiry", w.Size)
	case w.Size%time.Second != 0:
		return fmt.Errorf("window: %v must be a whole number of seconds", w.Size)
	case w.MinRemaining < 0:
		return errors.New("min_remaining: must not be negative")
	case w.MinRemaining >= w.Size:
		return fmt.Errorf("min_remaining: %v must be shorter than window (%v); a common choice is window/12", w.MinRemaining, w.Size)
	}
	return nil
}

// Expiry returns exp = ceil((now+MinRemaining)/Size)*Size and the time until
// which a URL with that exp may be handed out: exp - MinRemaining. A URL
// handed out at any instant before that still has at least MinRemaining left.
func (w Window) Expiry(now time.Time) (exp, freshUntil time.Time) {
	size := int64(w.Size)
	t := now.UnixNano() + int64(w.MinRemaining)
	q := t / size
	if q*size < t { // ceil for positive t; times before 1970 are not supported
		q++
	}
	exp = time.Unix(0, q*size)
	return exp, exp.Add(-w.MinRemaining)
}
