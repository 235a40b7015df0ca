package fleet

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/session"
)

// has reports whether set refuses id.
func has(set *session.Revocations, id session.Identity) bool { return set.Check(id) != nil }

func waitRevoked(t *testing.T, what string, set *session.Revocations, id session.Identity) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !has(set, id) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRevocationStoreFansOut(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := NewRevocationStore(openClient(t, srv.URL, Options{Timeout: time.Second}))
	bClient := openClient(t, srv.URL, Options{Timeout: time.Second})
	setA := session.NewRevocations(session.RevocationsConfig{TTL: time.Hour})
	setB := session.NewRevocations(session.RevocationsConfig{TTL: time.Hour})

	// Saved before B starts: B loads it when it subscribes.
	early, err := setA.Add(session.RevokeSubject, "alice", session.SourceAdmin)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, early); err != nil {
		t.Fatal(err)
	}
	b := NewRevocationStore(bClient)
	loads := make(chan int, 10)
	b.OnLoad = func(n int, err error) {
		if err == nil {
			loads <- n
		}
	}
	b.Start(ctx, setB)
	t.Cleanup(b.Close)
	if n := <-loads; n != 1 {
		t.Fatalf("first load applied %d entries, want 1", n)
	}
	if !has(setB, session.Identity{Subject: "alice"}) {
		t.Fatal("B did not load alice's revocation")
	}
	// Saved after: B gets it through Pub/Sub, within a second.
	start := time.Now()
	late, err := setA.Add(session.RevokeSession, "s-bob", session.SourceBackchannel)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Save(ctx, late); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, "the published revocation", setB, session.Identity{Subject: "bob", SessionID: "s-bob"})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("reached the other replica after %v", d)
	}
	t.Logf("save to refusal on the other replica: %v", time.Since(start))

	// Redis holds one sorted set, expiring with its last entry, whose
	// members hold no token.
	rdb := inspector(t, srv)
	key := a.key
	if got := allKeys(t, rdb); len(got) != 1 || got[0] != key {
		t.Fatalf("keys %v, want only %s", got, key)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Hour {
		t.Fatalf("PTTL %v, want the last entry's remaining life", ttl)
	}
	// An expired entry is neither loaded nor kept.
	gone := session.Revocation{Kind: session.RevokeToken, Value: "old", At: time.Now().Add(-2 * time.Hour), Expires: time.Now().Add(-time.Hour)}
	if err := a.Save(ctx, gone); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Load = %+v, want the 2 live entries", got)
	}
	if n := rdb.ZCard(ctx, key).Val(); n != 2 {
		t.Fatalf("%d members, want the expired one dropped", n)
	}
}

func TestRevocationStoreReloadsAfterReconnect(t *testing.T) {
	// An entry saved while B's subscription is down never reaches B as a
	// message; B must find it when it reconnects.
	srv := redistest.Start(t)
	ctx := context.Background()
	rdb := inspector(t, srv)
	b := NewRevocationStore(openClient(t, srv.URL, Options{Timeout: time.Second}))
	setB := session.NewRevocations(session.RevocationsConfig{TTL: time.Hour})
	var loads atomic.Int64
	b.OnLoad = func(_ int, err error) {
		if err == nil {
			loads.Add(1)
		}
	}
	missed := session.Revocation{Kind: session.RevokeSubject, Value: "mallory", At: time.Now(), Expires: time.Now().Add(time.Hour)}
	var disconnects atomic.Int64
	b.OnDisconnect = func() {
		disconnects.Add(1)
		// Written while B is cut off, and not published: only a reload
		// can find it. Done here so that it precedes the reconnect.
		payload, _ := json.Marshal(missed)
		rdb.ZAdd(ctx, b.key, redis.Z{Score: float64(missed.Expires.UnixMilli()), Member: string(payload)})
	}
	b.Start(ctx, setB)
	t.Cleanup(b.Close)
	deadline := time.Now().Add(5 * time.Second)
	for loads.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("no first load")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := rdb.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, "the entry saved during the outage", setB, session.Identity{Subject: "mallory"})
	if disconnects.Load() != 1 || loads.Load() < 2 {
		t.Fatalf("%d disconnects, %d loads", disconnects.Load(), loads.Load())
	}
}

func TestRevocationStoreRedisRestart(t *testing.T) {
	// Redis restarts (empty, no persistence): B resubscribes by itself and
	// gets what is saved afterwards.
	srv := redistest.Start(t)
	ctx := context.Background()
	a := NewRevocationStore(openClient(t, srv.URL, Options{Timeout: time.Second, CoolDown: 50 * time.Millisecond}))
	b := NewRevocationStore(openClient(t, srv.URL, Options{Timeout: time.Second}))
	setB := session.NewRevocations(session.RevocationsConfig{TTL: time.Hour})
	b.Start(ctx, setB)
	t.Cleanup(b.Close)
	srv.Restart()
	rev := session.Revocation{Kind: session.RevokeToken, Value: "j-after-restart", At: time.Now(), Expires: time.Now().Add(time.Hour)}
	deadline := time.Now().Add(5 * time.Second)
	for a.Save(ctx, rev) != nil {
		if time.Now().After(deadline) {
			t.Fatal("Save kept failing after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitRevoked(t, "the entry saved after the restart", setB, session.Identity{TokenID: "j-after-restart"})
}

func TestRevocationStoreKeyPrefix(t *testing.T) {
	srv := redistest.Start(t)
	c := openClient(t, srv.URL, Options{KeyPrefix: "tenant7:"})
	s := NewRevocationStore(c)
	if s.key != "tenant7:v1:revocations" || s.channel != "tenant7:v1:revocations" {
		t.Fatalf("key %q channel %q", s.key, s.channel)
	}
}
