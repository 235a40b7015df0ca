package fleet

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// DefaultMaxObject is the largest body a ByteTier stores when NewByteTier
// is given no limit. Redis serves one command at a time, so a few large
// values would delay every replica's calls.
const DefaultMaxObject = 4 << 20

// MaxBackgroundWrites is how many writes a ByteTier runs at once; a Set
// beyond that is dropped rather than queued, so a slow Redis never holds
// image bodies in memory behind it.
const MaxBackgroundWrites = 16

// ByteTier is an imageproxy.Tier shared by every replica through Redis.
// Each entry expires after the ttl given to Set. A ByteTier that cannot
// reach Redis answers misses and drops writes; it never fails a request.
type ByteTier struct {
	c         *Client
	maxObject int64
	writes    chan struct{} // one token per background write in flight
}

var _ imageproxy.Tier = (*ByteTier)(nil)

// NewByteTier returns a tier on c that stores bodies of at most maxObject
// bytes (DefaultMaxObject if maxObject <= 0).
func NewByteTier(c *Client, maxObject int64) *ByteTier {
	if maxObject <= 0 {
		maxObject = DefaultMaxObject
	}
	return &ByteTier{c: c, maxObject: maxObject, writes: make(chan struct{}, MaxBackgroundWrites)}
}

// Name returns "redis".
func (t *ByteTier) Name() string { return "redis" }

// Get returns the object stored under k. An absent or undecodable entry,
// an error, a timeout and an open breaker are all misses.
func (t *ByteTier) Get(ctx context.Context, k imageproxy.Key) (*imageproxy.Object, bool) {
	var obj *imageproxy.Object
	err := t.c.do(ctx, OpGet, func(ctx context.Context) error {
		// Bytes hands over the reply's own buffer (no copy), which the
		// object's Body then keeps.
		b, err := t.c.rdb.Get(ctx, t.c.imageKey(k)).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		obj, _ = decodeObject(b)
		return nil
	})
	return obj, err == nil && obj != nil
}

// Set stores obj under k for ttl in the background and returns at once.
// Nothing is stored when ttl <= 0 (an entry must expire), when the body is
// larger than the tier's limit, or when MaxBackgroundWrites writes are
// already in flight (reported to OnOp as ErrDropped).
func (t *ByteTier) Set(ctx context.Context, k imageproxy.Key, obj *imageproxy.Object, ttl time.Duration) {
	if obj == nil || ttl <= 0 || int64(len(obj.Body)) > t.maxObject {
		return
	}
	select {
	case t.writes <- struct{}{}:
	default:
		t.c.observe(OpSet, 0, ErrDropped)
		return
	}
	// The write outlives the request that asked for it.
	ctx = context.WithoutCancel(ctx)
	key := t.c.imageKey(k)
	go func() {
		defer func() { <-t.writes }()
		_ = t.c.do(ctx, OpSet, func(ctx context.Context) error {
			return t.c.rdb.Set(ctx, key, encodeObject(obj), ttl).Err()
		})
	}()
}

// Wait returns when the background writes started before it are done.
// Sets made while it waits are dropped; it is meant for shutdown and
// tests.
func (t *ByteTier) Wait() {
	for range cap(t.writes) {
		t.writes <- struct{}{}
	}
	for range cap(t.writes) {
		<-t.writes
	}
}

// Delete removes the given keys and returns how many were present. It
// sends one DEL per key in a single pipeline, so keys on different cluster
// slots are fine. It returns 0 when Redis is unavailable.
func (t *ByteTier) Delete(ctx context.Context, keys ...imageproxy.Key) int {
	if len(keys) == 0 {
		return 0
	}
	var n int64
	_ = t.c.do(ctx, OpDel, func(ctx context.Context) error {
		cmds, err := t.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, t.c.imageKey(k))
			}
			return nil
		})
		for _, cmd := range cmds {
			if del, ok := cmd.(*redis.IntCmd); ok && del.Err() == nil {
				n += del.Val()
			}
		}
		return err
	})
	return int(n)
}
