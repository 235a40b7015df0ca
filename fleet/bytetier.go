package fleet

import (
	"bytes"
	"context"
	"errors"
	"time"
	"unsafe"

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
//
// Redis holds data, not trust: anyone who can write to it could put any
// bytes under a predictable key. So every value carries a MAC over its key
// and contents, under a key only the gateways hold, and Get serves a value
// only if its length is within the tier's limit (checked in Redis, before
// the value is sent), its MAC verifies and its type is an image type.
// Anything else is a miss: reported to OnRejected, deleted from Redis,
// never served nor copied into another tier.
type ByteTier struct {
	// OnRejected, if set before use, is called with a Reject* reason for
	// every stored value Get refused. It must not block.
	OnRejected func(reason string)

	c         *Client
	maxObject int64
	key       []byte
	writes    chan struct{} // one token per background write in flight
}

var (
	_ imageproxy.Tier     = (*ByteTier)(nil)
	_ imageproxy.SyncTier = (*ByteTier)(nil)
)

// NewByteTier returns a tier on c that stores bodies of at most maxObject
// bytes (DefaultMaxObject if maxObject <= 0), MACed with macKey: at least
// 16 bytes that every replica shares and nobody else has, such as a key
// derived from the signing key. It panics on a shorter key.
func NewByteTier(c *Client, maxObject int64, macKey []byte) *ByteTier {
	checkMACKey("NewByteTier", macKey)
	if maxObject <= 0 {
		maxObject = DefaultMaxObject
	}
	return &ByteTier{c: c, maxObject: maxObject, key: bytes.Clone(macKey), writes: make(chan struct{}, MaxBackgroundWrites)}
}

// Name returns "redis".
func (t *ByteTier) Name() string { return "redis" }

// boundedGet is GET that sends the value only if its length is at most
// ARGV[1]. Its reply is nil for an absent key, the value, or an integer
// for a value refused unread: its length, or -1 for a key that holds no
// string. One round trip, and an oversized value never leaves Redis.
var boundedGet = redis.NewScript(`
local n = redis.pcall('STRLEN', KEYS[1])
if type(n) ~= 'number' then return -1 end
if n == 0 then return false end
if n > tonumber(ARGV[1]) then return n end
return redis.call('GET', KEYS[1])`)

// Get returns the object stored under k. An absent entry, an error, a
// timeout and an open breaker are misses; so is a rejected value (see
// ByteTier), which is also deleted.
func (t *ByteTier) Get(ctx context.Context, k imageproxy.Key) (*imageproxy.Object, bool) {
	var obj *imageproxy.Object
	reason := ""
	key := t.c.imageKey(k)
	err := t.c.do(ctx, OpGet, func(ctx context.Context) error {
		v, err := boundedGet.Run(ctx, t.c.rdb, []string{key}, t.maxObject+maxValueOverhead).Result()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := v.(type) {
		case string:
			obj, reason = t.check(key, v)
		default:
			reason = RejectSize
		}
		return nil
	})
	if reason != "" {
		t.reject(ctx, key, reason)
		return nil, false
	}
	return obj, err == nil && obj != nil
}

// check decodes v, the value stored under key, and returns the object, or
// why it is rejected.
func (t *ByteTier) check(key, v string) (*imageproxy.Object, string) {
	// The reply's own bytes, not a copy: the object's Body is never
	// modified (imageproxy.Object), and nothing else holds v.
	obj, err := decodeObject(t.key, key, unsafe.Slice(unsafe.StringData(v), len(v)))
	switch {
	case err != nil:
		return nil, RejectMAC
	case int64(len(obj.Body)) > t.maxObject:
		return nil, RejectSize
	case !imageproxy.IsImageType(obj.ContentType):
		return nil, RejectType
	}
	return obj, ""
}

// reject reports a refused value and deletes it, so that it costs one
// check, not one per request.
func (t *ByteTier) reject(ctx context.Context, key, reason string) {
	if t.OnRejected != nil {
		t.OnRejected(reason)
	}
	_ = t.c.do(ctx, OpDel, func(ctx context.Context) error {
		return t.c.rdb.Del(ctx, key).Err()
	})
}

// storable reports whether Set and SetSync store obj for ttl.
func (t *ByteTier) storable(obj *imageproxy.Object, ttl time.Duration) bool {
	return obj != nil && ttl > 0 && int64(len(obj.Body)) <= t.maxObject && encodable(obj)
}

// Set stores obj under k for ttl in the background and returns at once.
// Nothing is stored when ttl <= 0 (an entry must expire), when the body is
// larger than the tier's limit, or when MaxBackgroundWrites writes are
// already in flight (reported to OnOp as ErrDropped).
func (t *ByteTier) Set(ctx context.Context, k imageproxy.Key, obj *imageproxy.Object, ttl time.Duration) {
	if !t.storable(obj, ttl) {
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
	go func() {
		defer func() { <-t.writes }()
		_ = t.write(ctx, k, obj, ttl)
	}()
}

// errNotStored is SetSync's error for an object Set would not store.
var errNotStored = errors.New("fleet: object not storable (too large, no ttl, or oversized headers)")

// SetSync stores obj under k for ttl and returns when Redis has it, for a
// fill lease's holder, which tells the waiters to look only after. It
// stores what Set stores, and reports why not otherwise.
func (t *ByteTier) SetSync(ctx context.Context, k imageproxy.Key, obj *imageproxy.Object, ttl time.Duration) error {
	if !t.storable(obj, ttl) {
		return errNotStored
	}
	return t.write(ctx, k, obj, ttl)
}

func (t *ByteTier) write(ctx context.Context, k imageproxy.Key, obj *imageproxy.Object, ttl time.Duration) error {
	key := t.c.imageKey(k)
	v := encodeObject(t.key, key, obj) // before the call: its deadline is for Redis
	return t.c.do(ctx, OpSet, func(ctx context.Context) error {
		return t.c.rdb.Set(ctx, key, v, ttl).Err()
	})
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
