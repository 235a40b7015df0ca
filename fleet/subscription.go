package fleet

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Subscription bounds.
const (
	// subHealthInterval is how long an idle subscription waits before it
	// pings Redis; a ping unanswered for another interval means the
	// connection is dead without having said so (a vanished host), and the
	// subscription is replaced.
	subHealthInterval = 30 * time.Second
	// subMinBackoff and subMaxBackoff bound the wait between reconnection
	// attempts while Redis is unreachable.
	subMinBackoff = 50 * time.Millisecond
	subMaxBackoff = time.Second
)

// subscription is one Pub/Sub channel kept subscribed in the background,
// for the Purger and the fill Leases. go-redis reconnects and resubscribes
// a lost subscription; the loop adds the backoff while Redis is down, the
// check for silently dead connections, and the down and up reports.
type subscription struct {
	c         *Client
	channel   string
	onMessage func(payload string)
	// onDown is called once when the subscription is lost, or its first
	// attempt fails: messages may be missed from then on.
	onDown func()
	// onUp is called once each time the subscription is confirmed:
	// afterLoss is false the first time unless onDown came first.
	onUp func(afterLoss bool)

	live atomic.Bool // confirmed, and not lost since

	mu     sync.Mutex
	ps     *redis.PubSub // the current subscription
	closed bool
	stop   context.CancelFunc
	done   chan struct{}
}

// start subscribes in the background and returns at once; the
// subscription lasts until ctx ends or close. Call it once.
func (s *subscription) start(ctx context.Context) {
	ctx, stop := context.WithCancel(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stop, s.done = stop, make(chan struct{})
	if s.closed {
		stop()
		close(s.done)
		return
	}
	go s.run(ctx)
}

// close ends the subscription and waits for start's loop to return.
func (s *subscription) close() {
	s.mu.Lock()
	s.closed = true
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	// Closing the subscription unblocks a pending receive, which a
	// canceled context does not.
	s.unsubscribe()
	if done != nil {
		<-done
	}
}

// subscribe replaces the current subscription with a new one, or returns
// nil once closed.
func (s *subscription) subscribe(ctx context.Context) *redis.PubSub {
	s.unsubscribe()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	// Subscribe's first attempt may fail; the channel is remembered and the
	// next receive reconnects.
	s.ps = s.c.rdb.Subscribe(ctx, s.channel)
	return s.ps
}

// unsubscribe closes the current subscription, if any.
func (s *subscription) unsubscribe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ps != nil {
		_ = s.ps.Close()
		s.ps = nil
	}
}

func (s *subscription) run(ctx context.Context) {
	defer close(s.done)
	defer s.unsubscribe()
	defer s.live.Store(false)
	ps := s.subscribe(ctx)
	lost := false   // messages may have been missed since the last confirmation
	pinged := false // a ping is out, unanswered
	backoff := subMinBackoff
	for ps != nil {
		msg, err := ps.ReceiveTimeout(ctx, subHealthInterval)
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
			s.live.Store(false)
			if !lost {
				lost = true
				if s.onDown != nil {
					s.onDown()
				}
			}
			if idle {
				// The ping went unanswered: the connection is dead.
				pinged = false
				ps = s.subscribe(ctx)
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, subMaxBackoff)
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			backoff = subMinBackoff
			s.live.Store(true)
			afterLoss := lost
			lost = false
			if s.onUp != nil {
				s.onUp(afterLoss)
			}
		case *redis.Message:
			s.onMessage(m.Payload)
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
