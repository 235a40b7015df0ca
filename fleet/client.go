package fleet

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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

// Client is a Redis client whose calls never take longer than a timeout
// and stop reaching the network while Redis is failing. It is safe for
// concurrent use.
type Client struct {
	rdb     redis.UniversalClient
	addrs   []string // host:port of each URL, for logs: never a password
	prefix  string   // Options.KeyPrefix
	timeout time.Duration
	br      *breaker
	onOp    func(op string, d time.Duration, err error)
	closed  atomic.Bool
}

// Open returns a Client for o, or o.Validate's errors. It does not
// contact Redis: a gateway starts, and answers, while Redis is down.
func Open(o Options) (*Client, error) {
	ro, err := o.redisOptions()
	if err != nil {
		return nil, err
	}
	o = o.withDefaults()
	return &Client{
		rdb:     redis.NewUniversalClient(ro),
		addrs:   slices.Clone(ro.Addrs),
		prefix:  o.KeyPrefix,
		timeout: o.Timeout,
		br:      newBreaker(o.FailureThreshold, o.CoolDown, o.OnStateChange),
		onOp:    o.OnOp,
	}, nil
}

// Key returns the Redis key made of the client's key prefix and parts,
// joined by ':'. Every key the gateway uses is made by it, so that an ACL
// user limited to the prefix can run the fleet.
func (c *Client) Key(parts ...string) string {
	return c.prefix + strings.Join(parts, ":")
}

// Channel returns the Pub/Sub channel called name under the client's key
// prefix.
func (c *Client) Channel(name string) string { return c.prefix + name }

// Addrs returns the addresses (host:port) the client was given: nodes,
// seeds or Sentinels. They hold no password, so they may be logged.
func (c *Client) Addrs() []string { return slices.Clone(c.addrs) }

// Ping asks Redis once, within the client's timeout, through the breaker:
// a gateway pings at start to warn at once when Redis is unreachable.
func (c *Client) Ping(ctx context.Context) error {
	return c.do(ctx, OpGet, func(ctx context.Context) error { return c.rdb.Ping(ctx).Err() })
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
