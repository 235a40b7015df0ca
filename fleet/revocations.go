package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/session"
)

// Revocation store names, under the client's key prefix.
const (
	revocationsKeyName     = "v1:revocations"
	revocationsChannelName = "v1:revocations"
)

// Revocation store bounds.
const (
	// revocationsHealthInterval is how long an idle subscription waits
	// before it pings Redis, as for purges.
	revocationsHealthInterval = 30 * time.Second
	// revocationsMinBackoff and revocationsMaxBackoff bound the wait
	// between reconnection attempts while Redis is unreachable.
	revocationsMinBackoff = 50 * time.Millisecond
	revocationsMaxBackoff = time.Second
	// revocationsLoadTimeout bounds loading the whole set, which may be
	// larger than one call's usual budget.
	revocationsLoadTimeout = 2 * time.Second
)

// saveRevocation adds one entry to the sorted set of revocations (member:
// the entry as JSON, score: its expiry in Unix milliseconds), drops the
// entries that have expired, and makes the key itself expire with its
// last entry, so the set never outlives what it holds.
var saveRevocation = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
return 1
`)

// RevocationStore shares a [session.Revocations] set between replicas
// through Redis: Save stores an entry, with its expiry, in one sorted set
// and publishes it, and every started store applies what is published to
// its own set at once. Pub/Sub delivers only to subscribers connected at
// that moment, so a store loads the whole stored set each time its
// subscription is confirmed, at start and after every reconnect: a
// message missed during an outage is not a revocation missed.
//
// The stored entries are subjects, session ids and token ids, not tokens.
// They can only refuse callers, never admit one: a Redis an attacker can
// write to can lock users out, not let anyone in. While Redis is down,
// entries made on a replica hold on that replica only, and reach the
// others when Redis is back only if Save is retried; the tokens' own
// lifetime stays the guaranteed bound.
type RevocationStore struct {
	// OnDisconnect, if set before Start, is called once when the
	// subscription is lost, or its first attempt fails. It must not block.
	OnDisconnect func()
	// OnLoad, if set before Start, is called after each load of the whole
	// set, once its entries are applied, with their number, or the error that will make
	// the store resubscribe and load again. It must not block.
	OnLoad func(n int, err error)

	c       *Client
	key     string
	channel string

	mu     sync.Mutex
	ps     *redis.PubSub
	closed bool
	stop   context.CancelFunc
	done   chan struct{}
}

// NewRevocationStore returns a store on c's Redis; Start it to receive
// other replicas' entries.
func NewRevocationStore(c *Client) *RevocationStore {
	return &RevocationStore{c: c, key: c.Key(revocationsKeyName), channel: c.Channel(revocationsChannelName)}
}

// Save stores rev until its expiry and publishes it to every started
// store. It does not apply rev locally: the caller's set already holds it.
func (s *RevocationStore) Save(ctx context.Context, rev session.Revocation) error {
	payload, err := json.Marshal(rev)
	if err != nil {
		return fmt.Errorf("fleet: encode revocation: %w", err)
	}
	now := time.Now()
	err = s.c.do(ctx, OpSet, func(ctx context.Context) error {
		return saveRevocation.Run(ctx, s.c.rdb, []string{s.key},
			rev.Expires.UnixMilli(), payload, now.UnixMilli()).Err()
	})
	if err != nil {
		return fmt.Errorf("fleet: store revocation: %w", err)
	}
	err = s.c.do(ctx, OpPublish, func(ctx context.Context) error {
		return s.c.rdb.Publish(ctx, s.channel, payload).Err()
	})
	if err != nil {
		return fmt.Errorf("fleet: publish revocation: %w", err)
	}
	return nil
}

// Load returns every stored entry that has not expired.
func (s *RevocationStore) Load(ctx context.Context) ([]session.Revocation, error) {
	ctx, cancel := context.WithTimeout(ctx, revocationsLoadTimeout)
	defer cancel()
	// Not through c.do: the whole set may take longer than one call's
	// budget, and a slow load must not open the breaker for everyone.
	members, err := s.c.rdb.ZRangeByScore(ctx, s.key, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10),
		Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("fleet: load revocations: %w", err)
	}
	out := make([]session.Revocation, 0, len(members))
	for _, m := range members {
		var rev session.Revocation
		if json.Unmarshal([]byte(m), &rev) == nil {
			out = append(out, rev)
		}
	}
	return out, nil
}

// Start subscribes in the background and returns at once: each entry
// another replica saves is applied to set, and the whole stored set is
// loaded into it each time the subscription is confirmed. It lasts until
// ctx ends or Close. Call it once.
func (s *RevocationStore) Start(ctx context.Context, set *session.Revocations) {
	ctx, stop := context.WithCancel(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop, s.done = stop, make(chan struct{})
	if s.closed {
		stop()
		close(s.done)
		return
	}
	go s.run(ctx, set)
}

// Close ends the subscription and waits for Start's loop to return.
func (s *RevocationStore) Close() {
	s.mu.Lock()
	s.closed = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	s.unsubscribe()
	if done != nil {
		<-done
	}
}

func (s *RevocationStore) subscribe(ctx context.Context) *redis.PubSub {
	s.unsubscribe()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.ps = s.c.rdb.Subscribe(ctx, s.channel)
	return s.ps
}

func (s *RevocationStore) unsubscribe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps != nil {
		_ = s.ps.Close()
		s.ps = nil
	}
}

func (s *RevocationStore) run(ctx context.Context, set *session.Revocations) {
	defer close(s.done)
	defer s.unsubscribe()
	ps := s.subscribe(ctx)
	lost := false   // OnDisconnect was called and no load has succeeded since
	pinged := false // a ping is out, unanswered
	backoff := revocationsMinBackoff
	retry := func() bool {
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(2*backoff, revocationsMaxBackoff)
		return true
	}
	for ps != nil {
		msg, err := ps.ReceiveTimeout(ctx, revocationsHealthInterval)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			idle := errors.As(err, &ne) && ne.Timeout()
			if idle && !pinged {
				pinged = true
				if ps.Ping(ctx) == nil {
					continue
				}
			}
			if !lost {
				lost = true
				if s.OnDisconnect != nil {
					s.OnDisconnect()
				}
			}
			if idle {
				pinged = false
				ps = s.subscribe(ctx)
			}
			if !retry() {
				return
			}
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			// Subscribed first, loaded second: an entry saved in between
			// arrives as a message, so none falls in a gap.
			revs, err := s.Load(ctx)
			if err == nil {
				set.Apply(revs...)
			}
			if s.OnLoad != nil {
				s.OnLoad(len(revs), err)
			}
			if err != nil {
				if !retry() {
					return
				}
				ps = s.subscribe(ctx) // confirmed again, then loaded again
				continue
			}
			lost = false
			backoff = revocationsMinBackoff
		case *redis.Message:
			var rev session.Revocation
			if json.Unmarshal([]byte(m.Payload), &rev) == nil {
				set.Apply(rev)
			}
		}
	}
}
