package limit

import (
	"context"
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// DefaultMaxSubjects is how many subjects a [Local] tracks when NewLocal is
// given 0.
const DefaultMaxSubjects = 10000

// Local is an in-process [Limiter]: one token bucket per subject, holding
// up to Rate.Events tokens and refilling Events per Per, so a subject may
// spend its whole budget at once and then one event every Per/Events.
//
// Subjects live in a bounded LRU, so memory stays bounded however many
// subjects appear. Evicting a subject forgets what it spent: it comes back
// with a full bucket. Size maxSubjects above the number of subjects active
// within one Per, or an adversary with many identities can reset others'
// buckets by pushing them out.
type Local struct {
	rate    Rate
	limit   rate.Limit
	buckets *lru.Cache[string, *rate.Limiter]
	now     func() time.Time // time.Now; tests replace it
}

// NewLocal returns a limiter allowing r per subject, tracking at most
// maxSubjects subjects (0 means DefaultMaxSubjects; negative is treated as
// 0). With r.Off() every event is allowed and nothing is tracked.
func NewLocal(r Rate, maxSubjects int) *Local {
	if maxSubjects <= 0 {
		maxSubjects = DefaultMaxSubjects
	}
	l := &Local{rate: r, now: time.Now}
	if r.Off() {
		return l
	}
	per := r.Per
	if per <= 0 {
		// Events with no period cannot refill; treat it as per second
		// rather than dividing by zero.
		per = time.Second
	}
	l.limit = rate.Limit(float64(r.Events) / per.Seconds())
	c, err := lru.New[string, *rate.Limiter](maxSubjects)
	if err != nil { // only for a size <= 0, excluded above
		panic(err)
	}
	l.buckets = c
	return l
}

// Allow counts one event for subject if its bucket holds a token, and
// otherwise reports how long until it will.
func (l *Local) Allow(_ context.Context, subject string) Result {
	if l.rate.Off() {
		return Result{Allowed: true}
	}
	now := l.now()
	b := l.bucket(subject)
	if b.AllowN(now, 1) {
		return Result{Allowed: true}
	}
	return Result{RetryAfter: retryAfter(b.TokensAt(now), l.limit)}
}

// bucket returns subject's bucket, creating a full one on first sight.
func (l *Local) bucket(subject string) *rate.Limiter {
	if b, ok := l.buckets.Get(subject); ok {
		return b
	}
	b := rate.NewLimiter(l.limit, l.rate.Events)
	// Another goroutine may have added the subject since Get: keep theirs,
	// so that both count against one bucket.
	if prev, ok, _ := l.buckets.PeekOrAdd(subject, b); ok {
		return prev
	}
	return b
}

// retryAfter is the wait until a bucket holding tokens (< 1) at refill rate
// limit holds one, rounded up to whole seconds and at least one second:
// Retry-After headers carry whole seconds, and rounding down would send
// callers back too early.
func retryAfter(tokens float64, limit rate.Limit) time.Duration {
	secs := math.Ceil((1 - tokens) / float64(limit))
	if secs < 1 || math.IsNaN(secs) {
		secs = 1
	}
	return time.Duration(secs) * time.Second
}
