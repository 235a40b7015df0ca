package fleet

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

func testObject(size int) *imageproxy.Object {
	return &imageproxy.Object{
		Body:         bytes.Repeat([]byte("img!"), size/4),
		ContentType:  "image/avif",
		ETag:         `"e-1"`,
		LastModified: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
	}
}

func TestByteTierRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	tier := NewByteTier(openClient(t, srv.URL, Options{}), 0, testMACKey)
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "acct", ID: "img-1", Variant: "public", Format: imageproxy.FormatAVIF}
	want := testObject(30 << 10)

	if _, ok := tier.Get(ctx, k); ok {
		t.Fatal("Get before Set hit")
	}
	tier.Set(ctx, k, want, time.Minute)
	tier.Wait()
	got, ok := tier.Get(ctx, k)
	if !ok {
		t.Fatal("Get after Set missed")
	}
	if !bytes.Equal(got.Body, want.Body) || got.ContentType != want.ContentType ||
		got.ETag != want.ETag || !got.LastModified.Equal(want.LastModified) {
		t.Fatalf("Get = %q %q %v (%d bytes), want %q %q %v (%d bytes)",
			got.ContentType, got.ETag, got.LastModified, len(got.Body),
			want.ContentType, want.ETag, want.LastModified, len(want.Body))
	}
	other := k
	other.Format = imageproxy.FormatWebP
	if _, ok := tier.Get(ctx, other); ok {
		t.Fatal("Get of another format bucket hit")
	}

	ttl, err := rdb.TTL(ctx, tier.c.imageKey(k)).Result()
	if err != nil {
		t.Fatalf("TTL: %v", err)
	}
	if ttl <= 50*time.Second || ttl > time.Minute {
		t.Fatalf("TTL = %v, want just under 1m", ttl)
	}
}

func TestByteTierSkipsWrites(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	const maxObject = 1000
	tier := NewByteTier(openClient(t, srv.URL, Options{}), maxObject, testMACKey)
	ctx := context.Background()
	k := func(id string) imageproxy.Key { return imageproxy.Key{AccountHash: "a", ID: id, Variant: "v"} }

	tier.Set(ctx, k("at-max"), testObject(maxObject), time.Minute)
	tier.Set(ctx, k("over-max"), testObject(maxObject+4), time.Minute)
	tier.Set(ctx, k("no-ttl"), testObject(10), 0)
	tier.Set(ctx, k("nil"), nil, time.Minute)
	tier.Wait()

	keys := allKeys(t, rdb)
	if len(keys) != 1 || keys[0] != tier.c.imageKey(k("at-max")) {
		t.Fatalf("stored keys %q, want only the at-max object", keys)
	}
	if _, ok := tier.Get(ctx, k("over-max")); ok {
		t.Fatal("over-max object was stored")
	}
}

// TestByteTierRejects writes what someone with write access to Redis
// could: each value is a miss, reported with its reason, and deleted.
func TestByteTierRejects(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	const maxObject = 1000
	tier := NewByteTier(openClient(t, srv.URL, Options{}), maxObject, testMACKey)
	var reasons []string
	tier.OnRejected = func(r string) { reasons = append(reasons, r) }
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v"}
	key := tier.c.imageKey(k)
	other := tier.c.imageKey(imageproxy.Key{AccountHash: "a", ID: "j", Variant: "v"})
	good := encodeObject(testMACKey, key, testObject(100))
	html := testObject(100)
	html.ContentType = "text/html"
	big := testObject(maxObject + 4)
	for _, tt := range []struct {
		name   string
		value  []byte
		reason string
	}{
		{"not an object", []byte("not an object"), RejectMAC},
		{"cut", good[:len(good)-1], RejectMAC},
		{"other version", append([]byte{1}, good[1:]...), RejectMAC},
		{"flipped body byte", append(good[:len(good)-1:len(good)-1], good[len(good)-1]^1), RejectMAC},
		{"another key's MAC key", encodeObject([]byte("someone else's key, 32 bytes..."), key, testObject(100)), RejectMAC},
		{"copied from another key", encodeObject(testMACKey, other, testObject(100)), RejectMAC},
		{"not an image type", encodeObject(testMACKey, key, html), RejectType},
		{"body over max_object", encodeObject(testMACKey, key, big), RejectSize},
		{"value over max_object", bytes.Repeat([]byte{objectV2}, 2<<20), RejectSize},
	} {
		reasons = nil
		if err := rdb.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		sentBefore := netOutput(t, rdb)
		if obj, ok := tier.Get(ctx, k); ok {
			t.Fatalf("%s: Get hit: %+v", tt.name, obj.ContentType)
		}
		if tt.name == "value over max_object" {
			// The length is checked in Redis: the 2 MiB never left it.
			if sent := netOutput(t, rdb) - sentBefore; sent > 64<<10 {
				t.Errorf("%s: Redis sent %d bytes for a refused value", tt.name, sent)
			}
		}
		if len(reasons) != 1 || reasons[0] != tt.reason {
			t.Errorf("%s: rejected with %q, want [%s]", tt.name, reasons, tt.reason)
		}
		if n := rdb.Exists(ctx, key).Val(); n != 0 {
			t.Errorf("%s: the rejected value was kept", tt.name)
		}
	}
	// A key that holds no string is a rejection too, not an error that
	// would open the breaker.
	rdb.RPush(ctx, key, "x")
	reasons = nil
	if _, ok := tier.Get(ctx, k); ok || len(reasons) != 1 || !tier.c.Up() {
		t.Errorf("a list: hit %v, reasons %q, up %v", ok, reasons, tier.c.Up())
	}
	// And the real thing still works.
	rdb.Set(ctx, key, good, time.Minute)
	if _, ok := tier.Get(ctx, k); !ok {
		t.Error("a good value was refused")
	}
}

// netOutput returns how many bytes the server has sent, all clients
// together.
func netOutput(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatalf("INFO: %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_net_output_bytes:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("INFO: %q", line)
			}
			return n
		}
	}
	t.Fatal("INFO stats has no total_net_output_bytes")
	return 0
}

func TestByteTierDelete(t *testing.T) {
	srv := redistest.Start(t)
	tier := NewByteTier(openClient(t, srv.URL, Options{}), 0, testMACKey)
	ctx := context.Background()
	keys := []imageproxy.Key{
		{AccountHash: "a", ID: "i", Variant: "v1"},
		{AccountHash: "a", ID: "i", Variant: "v2", Format: imageproxy.FormatWebP},
		{AccountHash: "a", ID: "j", Variant: "v1"},
	}
	for _, k := range keys {
		tier.Set(ctx, k, testObject(64), time.Minute)
	}
	tier.Wait()
	missing := imageproxy.Key{AccountHash: "a", ID: "never", Variant: "v1"}
	if n := tier.Delete(ctx, keys[0], keys[1], missing); n != 2 {
		t.Fatalf("Delete = %d, want 2", n)
	}
	for i, k := range keys {
		if _, ok := tier.Get(ctx, k); ok != (i == 2) {
			t.Errorf("key %d present = %v after Delete, want %v", i, ok, i == 2)
		}
	}
	if n := tier.Delete(ctx); n != 0 {
		t.Fatalf("Delete() = %d, want 0", n)
	}
}

// TestByteTierDropsWritesWhenBusy stalls writes on a server that never
// answers: MaxBackgroundWrites are in flight, and the Sets beyond them
// return at once and are reported as dropped.
func TestByteTierDropsWritesWhenBusy(t *testing.T) {
	addr := blackHole(t)
	log := newOpLog()
	tier := NewByteTier(openClient(t, "redis://"+addr, log.options(Options{Timeout: 300 * time.Millisecond})), 0, testMACKey)
	ctx := context.Background()
	const extra = 10
	start := time.Now()
	for i := range MaxBackgroundWrites + extra {
		tier.Set(ctx, imageproxy.Key{AccountHash: "a", ID: strings.Repeat("i", i+1)}, testObject(64), time.Minute)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("%d Sets took %v; Set must not wait for Redis", MaxBackgroundWrites+extra, d)
	}
	if n := log.count(OpSet, ErrDropped); n != extra {
		t.Errorf("%d writes reported dropped, want %d", n, extra)
	}
	tier.Wait()
}
