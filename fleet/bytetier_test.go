package fleet

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

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
	tier := NewByteTier(openClient(t, srv.URL, Options{}), 0)
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
	tier := NewByteTier(openClient(t, srv.URL, Options{}), maxObject)
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

func TestByteTierUndecodableIsMiss(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	tier := NewByteTier(openClient(t, srv.URL, Options{}), 0)
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v"}
	good := encodeObject(testObject(100))
	for _, v := range [][]byte{[]byte("not an object"), good[:len(good)-1], append([]byte{9}, good[1:]...)} {
		if err := rdb.Set(ctx, tier.c.imageKey(k), v, time.Minute).Err(); err != nil {
			t.Fatalf("SET: %v", err)
		}
		if obj, ok := tier.Get(ctx, k); ok {
			t.Fatalf("Get of %q hit: %+v", v[:min(len(v), 16)], obj)
		}
	}
}

func TestByteTierDelete(t *testing.T) {
	srv := redistest.Start(t)
	tier := NewByteTier(openClient(t, srv.URL, Options{}), 0)
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
	tier := NewByteTier(openClient(t, "redis://"+addr, log.options(Options{Timeout: 300 * time.Millisecond})), 0)
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
