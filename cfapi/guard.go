package cfapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxConcurrent is the number of calls a Client has in flight at
// once when MaxConcurrent is 0.
const DefaultMaxConcurrent = 8

const (
	// defaultRetryAfter is the pause after a 429 without a usable
	// Retry-After.
	defaultRetryAfter = 60 * time.Second
	// maxRetryAfter caps the pause, so a bogus header cannot stop the
	// gateway's API calls for hours.
	maxRetryAfter = 10 * time.Minute
)

// ErrRateLimited reports that the API answered 429 Too Many Requests, or
// that a call was not made because it recently did. Errors wrapping it are
// a [*RateLimitError].
var ErrRateLimited = errors.New("api rate limit reached")

// RateLimitError is a call refused because of the API's rate limit. It
// wraps ErrRateLimited.
type RateLimitError struct {
	// Op names the call, e.g. "get image".
	Op string
	// RetryAfter is how long until the Client makes calls again, rounded
	// up to whole seconds.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("cloudflare images: %s: %v; calls resume in %v", e.Op, ErrRateLimited, e.RetryAfter)
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

func (c *Client) init() {
	c.initOnce.Do(func() {
		n := c.MaxConcurrent
		if n <= 0 {
			n = DefaultMaxConcurrent
		}
		c.slots = make(chan struct{}, n)
	})
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// acquire waits for a call slot and returns the function that frees it. It
// fails at once, without waiting, while the API's rate limit is in force.
func (c *Client) acquire(ctx context.Context, op string) (release func(), err error) {
	c.init()
	if err := c.checkBlocked(op); err != nil {
		return nil, err
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("cloudflare images: %s: waiting for one of %d call slots: %w", op, cap(c.slots), context.Cause(ctx))
	}
	release = func() { <-c.slots }
	// A call that held the slot may have been answered 429 meanwhile.
	if err := c.checkBlocked(op); err != nil {
		release()
		return nil, err
	}
	return release, nil
}

// checkBlocked returns a RateLimitError while a 429's Retry-After lasts.
func (c *Client) checkBlocked(op string) error {
	now := c.now()
	c.mu.Lock()
	until := c.blockedUntil
	c.mu.Unlock()
	if !now.Before(until) {
		return nil
	}
	return c.refuse(op, until.Sub(now))
}

// rateLimited records a 429 answer with the given Retry-After header and
// returns its error. The pause only ever grows: a short Retry-After on a
// late answer does not cut short a longer one already in force.
func (c *Client) rateLimited(op, header string) error {
	now := c.now()
	wait := parseRetryAfter(header, now)
	c.mu.Lock()
	if until := now.Add(wait); until.After(c.blockedUntil) {
		c.blockedUntil = until
	}
	c.mu.Unlock()
	return c.refuse(op, wait)
}

func (c *Client) refuse(op string, wait time.Duration) error {
	if c.OnRateLimited != nil {
		c.OnRateLimited()
	}
	// Rounded up: a Retry-After header built from it must not send
	// callers back early.
	return &RateLimitError{Op: op, RetryAfter: (wait + time.Second - 1).Truncate(time.Second)}
}

// parseRetryAfter reads a Retry-After header, delay-seconds or an HTTP date
// (RFC 9110, section 10.2.3), as a wait from now between one second and
// maxRetryAfter. An absent or unreadable header means defaultRetryAfter.
func parseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	wait := defaultRetryAfter
	if secs, err := strconv.ParseUint(h, 10, 64); err == nil {
		wait = maxRetryAfter
		if secs < uint64(maxRetryAfter/time.Second) {
			wait = time.Duration(secs) * time.Second
		}
	} else if t, err := http.ParseTime(h); err == nil {
		wait = t.Sub(now)
	}
	return min(max(wait, time.Second), maxRetryAfter)
}
