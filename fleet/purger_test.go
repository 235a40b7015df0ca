package fleet

import (
	"context"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
)

const testChannel = DefaultKeyPrefix + PurgeChannelName

type purge struct{ id, variant string }

// replica is a started Purger on its own client, and what it reported.
type replica struct {
	*Purger
	purges                  chan purge
	disconnects, reconnects chan struct{}
	rejected                chan string
}

// startPurger starts a Purger on its own client (a replica).
func startPurger(t *testing.T, url string) replica {
	t.Helper()
	return startPurgerWith(t, url, 0)
}

// startPurgerWith starts a Purger whose OnReconnect calls are at least
// clearInterval apart.
func startPurgerWith(t *testing.T, url string, clearInterval time.Duration) replica {
	t.Helper()
	purges := make(chan purge, 10)
	disconnects := make(chan struct{}, 100)
	reconnects := make(chan struct{}, 100)
	rejected := make(chan string, 100)
	p := NewPurger(openClient(t, url, Options{}), testChannel, testMACKey, func(id, variant string) {
		purges <- purge{id, variant}
	})
	p.OnDisconnect = func() { disconnects <- struct{}{} }
	p.OnReconnect = func() { reconnects <- struct{}{} }
	p.OnRejected = func(reason string) { rejected <- reason }
	p.ClearInterval = clearInterval
	p.Start(context.Background())
	t.Cleanup(p.Close)
	return replica{p, purges, disconnects, reconnects, rejected}
}

// waitSubscribers waits until n clients subscribe to the purge channel:
// Pub/Sub delivers only to subscribers present when a message is sent.
func waitSubscribers(t *testing.T, rdb *redis.Client, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := rdb.PubSubNumSub(context.Background(), testChannel).Result()
		if err == nil && got[testChannel] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers after 10s, want %d (err %v)", got[testChannel], n, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
		panic("unreachable")
	}
}

func TestPurgerFanOut(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	r1, r2 := startPurger(t, srv.URL), startPurger(t, srv.URL)
	waitSubscribers(t, rdb, 2)

	ctx := context.Background()
	// Forged, malformed and replayed messages are ignored and reported,
	// not delivered: publishing on the channel is not a right to purge.
	now := time.Now().UnixMilli()
	forge := func(key []byte, body string) string {
		return hex.EncodeToString(mac(key, domainPurge, []byte(testChannel), []byte(body))) + " " + body
	}
	otherKey := []byte("not the fleet's key, 32 bytes ok")
	junk := []string{
		"not json",
		`{"id":"img-1","variant":"","at":` + strconv.FormatInt(now, 10) + `}`,              // no MAC: the old format
		forge(otherKey, `{"id":"img-1","variant":"","at":`+strconv.FormatInt(now, 10)+`}`), // another key
		forge(testMACKey, `{"id":"img-1","variant":"","at":1700000000000}`),                // a replay from 2023
		forge(testMACKey, `{"variant":"x","at":`+strconv.FormatInt(now, 10)+`}`),           // no id
	}
	for _, j := range junk {
		if err := rdb.Publish(ctx, testChannel, j).Err(); err != nil {
			t.Fatalf("PUBLISH: %v", err)
		}
	}
	for range junk {
		for _, r := range []replica{r1, r2} {
			if reason := receive(t, r.rejected, "a rejection"); reason != RejectPurge {
				t.Errorf("rejected with %q, want %q", reason, RejectPurge)
			}
		}
	}
	for _, want := range []purge{{"img-1", "thumb"}, {"img-2", ""}} {
		if err := r1.Publish(ctx, want.id, want.variant); err != nil {
			t.Fatalf("Publish: %v", err)
		}
		if got := receive(t, r2.purges, "purge on the other replica"); got != want {
			t.Fatalf("other replica got %+v, want %+v", got, want)
		}
		if got := receive(t, r1.purges, "purge on the publishing replica"); got != want {
			t.Fatalf("publishing replica got %+v, want %+v", got, want)
		}
	}
	if len(r1.purges)+len(r2.purges) != 0 {
		t.Error("a rejected message was delivered")
	}
}

// TestPurgerReconnectClearsAtMostOncePerInterval drops the subscription
// again and again, as `CLIENT KILL TYPE pubsub` does: OnReconnect (which
// empties the memory tiers) comes once at once, then at most once per
// ClearInterval, and a reconnection inside the interval is still answered
// when it ends.
func TestPurgerReconnectClearsAtMostOncePerInterval(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	const interval = 1500 * time.Millisecond
	r := startPurgerWith(t, srv.URL, interval)
	waitSubscribers(t, rdb, 1)
	ctx := context.Background()
	kill := func() {
		if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Fatalf("CLIENT KILL: %v", err)
		}
		receive(t, r.disconnects, "OnDisconnect after CLIENT KILL")
		waitSubscribers(t, rdb, 1)
	}
	start := time.Now()
	kill()
	receive(t, r.reconnects, "the first OnReconnect")
	first := time.Now()
	for range 5 {
		kill()
	}
	if n := len(r.reconnects); n != 0 {
		t.Fatalf("%d more OnReconnect calls within %v of the first; want none before the interval ends", n, time.Since(first))
	}
	receive(t, r.reconnects, "the delayed OnReconnect")
	if d := time.Since(first); d < interval {
		t.Errorf("second OnReconnect %v after the first, want at least %v", d, interval)
	}
	time.Sleep(interval / 2)
	if n := len(r.reconnects); n != 0 {
		t.Errorf("%d OnReconnect calls for one interval's reconnections, want 1", n+1)
	}
	t.Logf("6 dropped subscriptions in %v: 2 clears", time.Since(start))
}

// TestPurgerReconnects stops and restarts Redis under a subscribed
// replica: it must report the loss and the return once each, and receive
// purges again.
func TestPurgerReconnects(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	pub, sub := startPurger(t, srv.URL), startPurger(t, srv.URL)
	waitSubscribers(t, rdb, 2)

	srv.Stop()
	receive(t, sub.disconnects, "OnDisconnect after Redis stopped")
	srv.Restart()
	receive(t, sub.reconnects, "OnReconnect after Redis restarted")
	waitSubscribers(t, rdb, 2)
	if len(sub.disconnects)+len(sub.reconnects) != 0 {
		t.Fatalf("%d more disconnects, %d more reconnects; want one of each per outage",
			len(sub.disconnects), len(sub.reconnects))
	}

	// The publisher's client may need a call or two to find Redis again.
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for pub.Publish(ctx, "img-1", "") != nil {
		if time.Now().After(deadline) {
			t.Fatal("Publish still failing 10s after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := receive(t, sub.purges, "purge after the restart"); got != (purge{"img-1", ""}) {
		t.Fatalf("got %+v after the restart, want img-1", got)
	}
}

// TestPurgerCloseIsPrompt checks that Close does not wait for the idle
// subscription's health-check interval.
func TestPurgerCloseIsPrompt(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	r := startPurger(t, srv.URL)
	waitSubscribers(t, rdb, 1)
	start := time.Now()
	r.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	r.Close() // again: a no-op
}

// TestPurgerStartWhileRedisDown starts a replica before Redis: purges sent
// before it subscribed are lost to it, so it must report reconnecting.
func TestPurgerStartWhileRedisDown(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	srv.Stop()
	r := startPurger(t, srv.URL)
	receive(t, r.disconnects, "OnDisconnect when the first subscription fails")
	srv.Restart()
	receive(t, r.reconnects, "OnReconnect once Redis is up")
	waitSubscribers(t, rdb, 1)
	deadline := time.Now().Add(10 * time.Second)
	for r.Publish(context.Background(), "i", "v") != nil {
		if time.Now().After(deadline) {
			t.Fatal("Publish still failing 10s after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := receive(t, r.purges, "purge"); got != (purge{"i", "v"}) {
		t.Fatalf("got %+v, want i/v", got)
	}
}
