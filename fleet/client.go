package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for the zero fields of Options.
const (
	DefaultTimeout          = 100 * time.Millisecond
	DefaultFailureThreshold = 5
	DefaultCoolDown         = 5 * time.Second
)

// Operation names passed to Options.OnOp: a small fixed set, fit for a
// metric label.
const (
	OpGet     = "get"
	OpSet     = "set"
	OpDel     = "del"
	OpLimit   = "limit"
	OpPublish = "publish"
)

var (
	// ErrUnavailable is the error of a call refused without touching the
	// network: the circuit breaker is open or the client is closed.
	ErrUnavailable = errors.New("fleet: redis unavailable")
	// ErrDropped is reported to Options.OnOp for a background write that
	// was dropped because the write queue was full.
	ErrDropped = errors.New("fleet: redis write dropped: queue full")
)

// Options configures a Client.
type Options struct {
	// URLs are the Redis URLs; see ParseURLs.
	URLs []string
	// TLSConfig, if set, is used for rediss:// URLs instead of the
	// defaults (system roots, TLS 1.2 or later), e.g. to trust a private
	// CA. Left empty, its ServerName is each node's host.
	TLSConfig *tls.Config
	// Timeout bounds every call, including connecting (default
	// DefaultTimeout).
	Timeout time.Duration
	// FailureThreshold is how many consecutive failed calls open the
	// circuit breaker (default DefaultFailureThreshold).
	FailureThreshold int
	// CoolDown is how long the open breaker refuses calls before it lets
	// one probe through (default DefaultCoolDown).
	CoolDown time.Duration
	// OnStateChange, if set, is called once per change of Up, in order,
	// with the new state. It must not block.
	OnStateChange func(up bool)
	// OnOp, if set, is called after every call with its operation (one of
	// the Op constants), its duration and its error: nil (a miss is not an
	// error), ErrUnavailable, ErrDropped, or the Redis or deadline error.
	// It must not block.
	OnOp func(op string, d time.Duration, err error)
}

// Client is a Redis client whose calls never take longer than a timeout
// and stop reaching the network while Redis is failing. It is safe for
// concurrent use.
type Client struct {
	rdb     redis.UniversalClient
	timeout time.Duration
	br      *breaker
	onOp    func(op string, d time.Duration, err error)
	closed  atomic.Bool
}

// Open returns a Client for o. It does not contact Redis: a gateway starts,
// and answers, while Redis is down.
func Open(o Options) (*Client, error) {
	ro, err := ParseURLs(o.URLs)
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.CoolDown <= 0 {
		o.CoolDown = DefaultCoolDown
	}
	if ro.TLSConfig != nil && o.TLSConfig != nil {
		ro.TLSConfig = o.TLSConfig.Clone()
	}
	ro.ClientName = "imagegate"
	// The per-call context deadline is the budget; every socket, dial and
	// pool wait honors it, and a dial is tried once rather than retried
	// with backoffs longer than the budget.
	ro.ContextTimeoutEnabled = true
	ro.DialTimeout = o.Timeout
	ro.ReadTimeout = o.Timeout
	ro.WriteTimeout = o.Timeout
	ro.PoolTimeout = o.Timeout
	ro.DialerRetries = 1
	// No command retries either: a retry against a dead Redis only spends
	// the rest of the budget; the breaker decides when to try again.
	ro.MaxRetries = -1
	return &Client{
		rdb:     redis.NewUniversalClient(ro),
		timeout: o.Timeout,
		br:      newBreaker(o.FailureThreshold, o.CoolDown, o.OnStateChange),
		onOp:    o.OnOp,
	}, nil
}

// Up reports whether the circuit breaker is closed, i.e. calls reach
// Redis. An open breaker closes only when a call probes Redis, so Up stays
// false while there is no traffic.
func (c *Client) Up() bool { return c.br.up.Load() }

// Close closes the connections. Later calls fail with ErrUnavailable.
func (c *Client) Close() error {
	c.closed.Store(true)
	return c.rdb.Close()
}

// do runs f against Redis under the per-call deadline and the breaker, and
// reports it to OnOp. f must treat redis.Nil (absent key) as success.
func (c *Client) do(ctx context.Context, op string, f func(ctx context.Context) error) error {
	start := time.Now()
	if c.closed.Load() || !c.br.allow(start) {
		c.observe(op, time.Since(start), ErrUnavailable)
		return ErrUnavailable
	}
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	err := f(callCtx)
	cancel()
	end := time.Now()
	o := succeeded
	if err != nil {
		o = failed
		if callerGaveUp(ctx, end) {
			o = abandoned
		}
	}
	c.br.done(end, o)
	c.observe(op, end.Sub(start), err)
	return err
}

// callerGaveUp reports whether the caller's own context ended the call: it
// is done, or its deadline has passed (the socket's deadline, taken from
// it, can fire a moment before the context's timer does).
func callerGaveUp(ctx context.Context, now time.Time) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !now.Before(d)
}

func (c *Client) observe(op string, d time.Duration, err error) {
	if c.onOp != nil {
		c.onOp(op, d, err)
	}
}
