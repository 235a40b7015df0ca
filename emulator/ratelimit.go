package emulator

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Cloudflare's global API rate limit: 1,200 requests per 5 minutes per
// user or token; past it, every call is refused with 429 for the next 5
// minutes (https://developers.cloudflare.com/fundamentals/api/reference/limits/).
const (
	DefaultAPIRateLimit  = 1200
	DefaultAPIRateWindow = 5 * time.Minute
	DefaultAPIRateBlock  = 5 * time.Minute
)

// codeRateLimited is the v4 API's error code for a refused call.
const codeRateLimited = 971

// APICall describes one answered API request, for Config.OnAPICall.
type APICall struct {
	// Status is the HTTP status sent.
	Status int
	// RateLimited is true for a call refused with 429 by a rate limit.
	RateLimited bool
	// Batch is true for a call made with a batch token.
	Batch bool
}

// slidingWindow admits at most limit calls in any window; once a call
// is refused, every call is refused until block has passed and the
// window starts afresh (with no block, block 0, calls resume as soon as
// the window has room). It keeps the
// times of the calls inside the window, so it is exact, not an
// approximation by buckets.
type slidingWindow struct {
	limit         int
	window, block time.Duration

	mu           sync.Mutex
	calls        []time.Time // admitted calls inside the window, oldest first
	blockedUntil time.Time
}

func newSlidingWindow(limit int, window, block time.Duration) *slidingWindow {
	return &slidingWindow{limit: limit, window: window, block: block}
}

// verdict is what one call was told: whether it may proceed, the calls
// left in the window after it, and the wait until the window has room
// again (for a refused call: until calls are admitted again).
type verdict struct {
	ok        bool
	remaining int
	reset     time.Duration
}

// take admits or refuses a call at now. A refused call is not counted.
func (s *slidingWindow) take(now time.Time) verdict {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Before(s.blockedUntil) {
		return verdict{reset: s.blockedUntil.Sub(now)}
	}
	n := 0
	for n < len(s.calls) && now.Sub(s.calls[n]) >= s.window {
		n++
	}
	s.calls = s.calls[n:]
	if len(s.calls) >= s.limit {
		if s.block > 0 {
			// The block replaces the window: once it ends, a fresh window
			// begins, so a block shorter than the window (as tests set
			// it) is not followed at once by another.
			s.blockedUntil = now.Add(s.block)
			s.calls = s.calls[:0]
			return verdict{reset: s.block}
		}
		return verdict{reset: s.calls[0].Add(s.window).Sub(now)}
	}
	s.calls = append(s.calls, now)
	return verdict{ok: true, remaining: s.limit - len(s.calls), reset: s.calls[0].Add(s.window).Sub(now)}
}

// setRateHeaders sets the headers Cloudflare sends on every API answer, in
// the form of the IETF draft on rate-limit headers
// (https://developers.cloudflare.com/changelog/2025-09-03-rate-limiting-improvement/):
// Ratelimit names the policy, the calls left and the seconds until the
// window resets; Ratelimit-Policy the quota and the window in seconds.
// A refused call also gets Retry-After, the seconds until calls are
// admitted again, rounded up.
func setRateHeaders(h http.Header, policy string, s *slidingWindow, v verdict) {
	secs := strconv.FormatInt(ceilSeconds(v.reset), 10)
	h.Set("Ratelimit", fmt.Sprintf("%q;r=%d;t=%s", policy, v.remaining, secs))
	h.Set("Ratelimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", policy, s.limit, ceilSeconds(s.window)))
	if !v.ok {
		h.Set("Retry-After", secs)
	}
}

// ceilSeconds rounds d up to whole seconds, at least 1 for a positive d.
func ceilSeconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}

// errRateLimited is the envelope error of a refused call, with
// Cloudflare's code and wording for the limit in force.
func errRateLimited(s *slidingWindow) *codedError {
	return errf(http.StatusTooManyRequests, codeRateLimited, fmt.Sprintf(
		"More than %d requests per %d seconds reached. Please wait and consider throttling your request speed",
		s.limit, ceilSeconds(s.window)))
}
