package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/limit"
)

// Limiter is a limit.Limiter whose budget the whole fleet shares: each
// event is one round trip to Redis running the GCRA script of
// github.com/go-redis/redis_rate (one key per subject, so the script never
// spans cluster slots), and N replicas together allow Rate, not N times
// Rate. Its answers never fail and never wait longer than the Client's
// Timeout.
//
// While Redis is unavailable it answers from a per-replica fallback. The
// fallback is charged for every event Redis allows too, so an outage
// starts from what the subject has spent through this replica, not from a
// full budget. What remains is bounded so:
//
//   - During an outage each replica grants a subject at most what its
//     fallback still holds (the budget minus what the subject spent
//     through that replica within the window), then Rate. A subject that
//     uses one replica (or is pinned to one, as by sticky sessions) gets
//     no more than with Redis up; one that spent its budget through
//     replica A can still spend up to a full budget on each other
//     replica. The fleet-wide worst case is thus unchanged, N times Rate
//     over N replicas; what changed is that an outage no longer refills
//     what a subject spent on the replica it uses.
//   - The fallback forgets a subject when its bounded table evicts it
//     (limit.Local's maxSubjects) or the replica restarts.
//   - Events allowed by the fallback are not charged to Redis when it
//     answers again, and a Redis that restarts empty (no persistence)
//     forgets every count: after such an outage a subject may get up to
//     one more budget through Redis.
type Limiter struct {
	c        *Client
	rl       *redis_rate.Limiter
	prefix   string
	limit    redis_rate.Limit
	off      bool
	fallback limit.Limiter
	secret   []byte // keys the subject's hash; nil for plain SHA-256
}

var _ limit.Limiter = (*Limiter)(nil)

// NewLimiter returns a limiter of rate for the budget called name (a short
// constant such as "api"; it is part of the key). fallback answers while
// Redis is unavailable, is charged while Redis answers, and must not be
// nil; it should allow rate per subject, as limit.NewLocal(rate, 0) does.
// A rate with Per <= 0 is per second.
func NewLimiter(c *Client, name string, rate limit.Rate, fallback limit.Limiter) *Limiter {
	if fallback == nil {
		panic("fleet: NewLimiter needs a fallback limiter")
	}
	if rate.Per <= 0 {
		rate.Per = time.Second
	}
	return &Limiter{
		c:        c,
		rl:       redis_rate.NewLimiter(unprefixed{c.rdb}),
		prefix:   c.Key("v1", "limit", name, ""),
		limit:    redis_rate.Limit{Rate: rate.Events, Burst: rate.Events, Period: rate.Per},
		off:      rate.Off(),
		fallback: fallback,
	}
}

// Allow counts one event for subject. The Redis key holds a hash of the
// subject, never the subject.
func (l *Limiter) Allow(ctx context.Context, subject string) limit.Result {
	if l.off {
		return limit.Result{Allowed: true}
	}
	var res *redis_rate.Result
	err := l.c.do(ctx, OpLimit, func(ctx context.Context) error {
		var err error
		res, err = l.rl.Allow(ctx, l.key(subject), l.limit)
		return err
	})
	if err != nil {
		return l.fallback.Allow(ctx, subject)
	}
	if res.Allowed > 0 {
		// Redis decides; the fallback only keeps count, so that an outage
		// starting now does not hand out a fresh budget. Its answer is
		// ignored: it has seen only this replica's events.
		l.fallback.Allow(ctx, subject)
		return limit.Result{Allowed: true}
	}
	// A Retry-After header counts whole seconds, and 0 would invite an
	// immediate retry.
	return limit.Result{RetryAfter: max(res.RetryAfter, time.Second)}
}

// HashSubjectsWith keys the hash that names a subject in Redis with
// secret (HMAC-SHA256), so that someone who can read Redis cannot confirm a
// guessed user name by hashing it. Every replica must use the same secret,
// or they count apart. Call it before the first Allow.
func (l *Limiter) HashSubjectsWith(secret []byte) *Limiter {
	l.secret = secret
	return l
}

func (l *Limiter) key(subject string) string {
	var sum []byte
	if l.secret != nil {
		m := hmac.New(sha256.New, l.secret)
		m.Write([]byte(subject))
		sum = m.Sum(nil)
	} else {
		s := sha256.Sum256([]byte(subject))
		sum = s[:]
	}
	return l.prefix + hex.EncodeToString(sum[:16])
}

// unprefixed gives redis_rate a client that drops the "rate:" prefix
// redis_rate puts on every key, so limiter keys stay inside the key prefix
// an ACL (~imagegate:*) grants.
type unprefixed struct{ redis.UniversalClient }

func (u unprefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.Eval(ctx, script, trimRate(keys), args...)
}

func (u unprefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalSha(ctx, sha1, trimRate(keys), args...)
}

func (u unprefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalRO(ctx, script, trimRate(keys), args...)
}

func (u unprefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalShaRO(ctx, sha1, trimRate(keys), args...)
}

func (u unprefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return u.UniversalClient.Del(ctx, trimRate(keys)...)
}

func trimRate(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, "rate:")
	}
	return out
}
