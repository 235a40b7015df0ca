package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// TestStoredDataHoldsNoSecrets drives the tier and the limiter with
// secret-looking material around them (the subject, the request context)
// and then reads every key and value in Redis: none may hold it.
func TestStoredDataHoldsNoSecrets(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	c := openClient(t, srv.URL, Options{})
	tier := NewByteTier(c, 0, testMACKey)
	lim := NewLimiter(c, "api", limit.Rate{Events: 2, Per: time.Minute}, &countingLimiter{})
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "user=alice token=tok_SECRET")
	secrets := []string{"alice", "tok_SECRET", "sig=", "session"}

	for _, subject := range []string{"user:alice", "token:tok_SECRET", "/cdn-cgi/imagedelivery/x?sig=abc"} {
		for range 3 {
			lim.Allow(ctx, subject)
		}
	}
	tier.Set(ctx, imageproxy.Key{AccountHash: "acct", ID: "img", Variant: "public"}, testObject(64), time.Minute)
	tier.Wait()

	keys := allKeys(t, rdb)
	if len(keys) != 4 {
		t.Fatalf("keys %q, want 3 limiter keys and 1 image", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, DefaultKeyPrefix) {
			t.Errorf("key %q is outside %s", k, DefaultKeyPrefix)
		}
		v, err := rdb.Get(ctx, k).Result()
		if err != nil && err != redis.Nil {
			t.Fatalf("GET %q: %v", k, err)
		}
		for _, s := range secrets {
			if strings.Contains(k, s) || strings.Contains(v, s) {
				t.Errorf("key %q or its value holds %q", k, s)
			}
		}
	}
}
