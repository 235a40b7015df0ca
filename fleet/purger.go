package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultPurgeChannel is the Pub/Sub channel replicas purge on, inside the
// "imagegate:" namespace an ACL (&imagegate:*) grants.
const DefaultPurgeChannel = "imagegate:v1:purge"

// Purger bounds.
const (
	// purgeHealthInterval is how long an idle subscription waits before it
	// pings Redis; a ping unanswered for another interval means the
	// connection is dead without having said so (a vanished host), and the
	// subscription is replaced.
	purgeHealthInterval = 30 * time.Second
	// purgeMinBackoff and purgeMaxBackoff bound the wait between
	// reconnection attempts while Redis is unreachable.
	purgeMinBackoff = 50 * time.Millisecond
	purgeMaxBackoff = time.Second
)

// purgeMessage is what Publish sends: small JSON such as
// {"id":"abc","variant":"thumb"}, with variant "" for every variant.
type purgeMessage struct {
	ID      string `json:"id"`
	Variant string `json:"variant"`
}

// Purger fans purges out to every replica through a Redis Pub/Sub channel:
// Publish on one replica makes every subscribed replica call onPurge.
//
// Pub/Sub delivers only to subscribers connected at that moment, so a
// replica cut off from Redis misses purges, and cannot know which. It calls
// OnDisconnect when it loses its subscription and OnReconnect when the
// subscription is back; the owner is expected to drop its whole memory tier
// in OnReconnect. That bounds how long a missed purge leaves stale entries
// in a replica's memory to the outage, plus up to two health-check
// intervals (one minute) when the connection died without closing, or to
// the memory tier's TTL if that is shorter. A Publish that fails reaches no
// other replica; their entries then live until the memory tier's TTL. The
// Redis tier needs no message: the purging replica deletes those keys.
type Purger struct {
	// OnDisconnect, if set before Start, is called once when the
	// subscription is lost, or its first attempt fails; purges may be
	// missed from then on. It must not block.
	OnDisconnect func()
	// OnReconnect, if set before Start, is called once when the
	// subscription is confirmed after OnDisconnect. It must not block.
	OnReconnect func()

	c       *Client
	channel string
	onPurge func(id, variant string)

	mu     sync.Mutex
	ps     *redis.PubSub // the current subscription
	closed bool
	stop   context.CancelFunc
	done   chan struct{}
}

// NewPurger returns a Purger on channel that calls onPurge for each purge
// published by any replica, this one included.
func NewPurger(c *Client, channel string, onPurge func(id, variant string)) *Purger {
	return &Purger{c: c, channel: channel, onPurge: onPurge}
}

// Start subscribes in the background and returns at once; the
// subscription lasts until ctx ends or Close. go-redis reconnects and
// resubscribes a lost subscription; Start's loop adds the backoff while
// Redis is down, the check for silently dead connections, OnDisconnect and
// OnReconnect. Call it once.
func (p *Purger) Start(ctx context.Context) {
	ctx, stop := context.WithCancel(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stop, p.done = stop, make(chan struct{})
	if p.closed {
		stop()
		close(p.done)
		return
	}
	go p.run(ctx)
}

// Close ends the subscription and waits for Start's loop to return.
func (p *Purger) Close() {
	p.mu.Lock()
	p.closed = true
	stop, done := p.stop, p.done
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	// Closing the subscription unblocks a pending receive, which a
	// canceled context does not.
	p.unsubscribe()
	if done != nil {
		<-done
	}
}

// Publish asks every replica to purge id's variant ("" for every variant).
// It does not call onPurge itself: the caller purges its own replica first
// (its own message comes back through the subscription too, harmlessly), so
// the purge holds locally even while Redis is unavailable.
func (p *Purger) Publish(ctx context.Context, id, variant string) error {
	payload, err := json.Marshal(purgeMessage{ID: id, Variant: variant})
	if err != nil {
		return fmt.Errorf("fleet: encode purge: %w", err)
	}
	err = p.c.do(ctx, OpPublish, func(ctx context.Context) error {
		return p.c.rdb.Publish(ctx, p.channel, payload).Err()
	})
	if err != nil {
		return fmt.Errorf("fleet: publish purge: %w", err)
	}
	return nil
}

// subscribe replaces the current subscription with a new one, or returns
// nil once the Purger is closed.
func (p *Purger) subscribe(ctx context.Context) *redis.PubSub {
	p.unsubscribe()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	// Subscribe's first attempt may fail; the channel is remembered and the
	// next receive reconnects.
	p.ps = p.c.rdb.Subscribe(ctx, p.channel)
	return p.ps
}

// unsubscribe closes the current subscription, if any.
func (p *Purger) unsubscribe() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ps != nil {
		_ = p.ps.Close()
		p.ps = nil
	}
}

func (p *Purger) run(ctx context.Context) {
	defer close(p.done)
	defer p.unsubscribe()
	ps := p.subscribe(ctx)
	lost := false   // purges may have been missed since the last confirmation
	pinged := false // a ping is out, unanswered
	backoff := purgeMinBackoff
	for ps != nil {
		msg, err := ps.ReceiveTimeout(ctx, purgeHealthInterval)
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
				if p.OnDisconnect != nil {
					p.OnDisconnect()
				}
			}
			if idle {
				// The ping went unanswered: the connection is dead.
				pinged = false
				ps = p.subscribe(ctx)
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, purgeMaxBackoff)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			backoff = purgeMinBackoff
			if lost {
				lost = false
				if p.OnReconnect != nil {
					p.OnReconnect()
				}
			}
		case *redis.Message:
			var pm purgeMessage
			if json.Unmarshal([]byte(m.Payload), &pm) == nil && pm.ID != "" {
				p.onPurge(pm.ID, pm.Variant)
			}
		}
	}
}

// sleep waits for d or the end of ctx, and reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
