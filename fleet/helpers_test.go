package fleet

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// openClient opens a Client on url with o and closes it when t ends.
func openClient(t testing.TB, url string, o Options) *Client {
	t.Helper()
	o.URLs = []string{url}
	c, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// inspector returns a plain client on s for looking at what fleet stored.
func inspector(t testing.TB, s *redistest.Server) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// allKeys returns every key in rdb's database.
func allKeys(t testing.TB, rdb *redis.Client) []string {
	t.Helper()
	var keys []string
	iter := rdb.Scan(context.Background(), 0, "*", 1000).Iterator()
	for iter.Next(context.Background()) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return keys
}

// countingLimiter is a fallback limiter that allows everything and counts
// the calls it answered.
type countingLimiter struct{ calls atomic.Int64 }

func (l *countingLimiter) Allow(context.Context, string) limit.Result {
	l.calls.Add(1)
	return limit.Result{Allowed: true}
}

// opLog records OnOp and OnStateChange calls.
type opLog struct {
	mu     sync.Mutex
	errs   map[string][]error // by op
	states []bool
	up     chan bool // every state change, buffered
}

func newOpLog() *opLog {
	return &opLog{errs: map[string][]error{}, up: make(chan bool, 100)}
}

func (l *opLog) options(o Options) Options {
	o.OnOp = func(op string, _ time.Duration, err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.errs[op] = append(l.errs[op], err)
	}
	o.OnStateChange = func(up bool) {
		l.mu.Lock()
		l.states = append(l.states, up)
		l.mu.Unlock()
		l.up <- up
	}
	return o
}

// count returns how many op calls ended with err (compared with ==).
func (l *opLog) count(op string, err error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.errs[op] {
		if e == err {
			n++
		}
	}
	return n
}

// calls returns how many op calls were reported.
func (l *opLog) calls(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.errs[op])
}

func (l *opLog) stateChanges() []bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]bool(nil), l.states...)
}

// blackHole returns the address of a listener that accepts connections
// and never answers: a Redis that hangs.
func blackHole(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	conns := make(chan net.Conn, 1000)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(conns)
				return
			}
			select {
			case conns <- c:
			default:
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}
