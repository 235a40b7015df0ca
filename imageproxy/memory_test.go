package imageproxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

func memKey(i int) Key {
	return Key{AccountHash: "acc", ID: fmt.Sprintf("id-%06d", i), Variant: "public", Format: FormatWebP}
}

func memObject(n int) *Object {
	return &Object{Body: make([]byte, n), ContentType: "image/webp", ETag: `"e"`}
}

func TestMemoryStaysWithinBudget(t *testing.T) {
	const max = 64 << 10
	evictions := 0
	m := NewMemory(max, func() { evictions++ })
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var inserted int64
	n := 0
	for ; inserted < 2*max; n++ {
		k, obj := memKey(n), memObject(1+rng.IntN(8<<10))
		m.Set(ctx, k, obj, time.Hour)
		inserted += cost(k, obj)
		if b := m.Bytes(); b > max {
			t.Fatalf("after insert %d: Bytes() = %d, over the budget of %d", n, b, max)
		}
		if _, ok := m.Get(ctx, k); !ok {
			t.Fatalf("insert %d: the newest entry is missing", n)
		}
	}
	if evictions == 0 || evictions != n-m.Len() {
		t.Errorf("evictions = %d, want inserts - resident = %d", evictions, n-m.Len())
	}
	// The oldest entries went first.
	if _, ok := m.Get(ctx, memKey(0)); ok {
		t.Error("the first entry survived filling twice the budget")
	}
}

func TestMemoryEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	obj := memObject(1000)
	c := cost(memKey(0), obj)
	m := NewMemory(3*c, nil)
	for i := range 3 {
		m.Set(ctx, memKey(i), obj, time.Hour)
	}
	m.Get(ctx, memKey(0)) // now 1 is the least recently used
	m.Set(ctx, memKey(3), obj, time.Hour)
	for i, want := range []bool{true, false, true, true} {
		if _, ok := m.Get(ctx, memKey(i)); ok != want {
			t.Errorf("entry %d present = %v, want %v", i, ok, want)
		}
	}
}

func TestMemoryTTL(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0)
	m := NewMemory(1<<20, nil)
	m.now = func() time.Time { return now }
	m.Set(ctx, memKey(1), memObject(10), time.Minute)
	if _, ok := m.Get(ctx, memKey(1)); !ok {
		t.Fatal("miss before the TTL")
	}
	now = now.Add(time.Minute)
	if _, ok := m.Get(ctx, memKey(1)); ok {
		t.Fatal("hit at the TTL")
	}
	if m.Len() != 0 || m.Bytes() != 0 {
		t.Errorf("expired entry kept: Len %d, Bytes %d", m.Len(), m.Bytes())
	}
	m.Set(ctx, memKey(2), memObject(10), 0)
	if m.Len() != 0 {
		t.Error("stored with ttl 0")
	}
}

func TestMemorySetReplacesAndRejects(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(10000, nil)
	k := memKey(1)
	m.Set(ctx, k, memObject(100), time.Hour)
	m.Set(ctx, k, memObject(200), time.Hour)
	if m.Len() != 1 || m.Bytes() != cost(k, memObject(200)) {
		t.Errorf("after replacing: Len %d, Bytes %d, want 1, %d", m.Len(), m.Bytes(), cost(k, memObject(200)))
	}
	m.Set(ctx, k, memObject(10000), time.Hour)
	if _, ok := m.Get(ctx, k); ok || m.Bytes() != 0 {
		t.Errorf("an object over the budget: present %v, Bytes %d", ok, m.Bytes())
	}
	off := NewMemory(0, nil)
	off.Set(ctx, k, memObject(1), time.Hour)
	if off.Len() != 0 {
		t.Error("a zero-byte Memory stored an object")
	}
}

func TestMemoryDelete(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0)
	m := NewMemory(1<<20, nil)
	m.now = func() time.Time { return now }
	m.Set(ctx, memKey(1), memObject(10), time.Hour)
	m.Set(ctx, memKey(2), memObject(10), time.Minute)
	m.Set(ctx, memKey(3), memObject(10), time.Hour)
	now = now.Add(time.Minute) // 2 expired: resident, not live
	if n := m.Delete(ctx, memKey(1), memKey(2), memKey(4)); n != 1 {
		t.Errorf("Delete = %d, want 1", n)
	}
	if m.Len() != 1 || m.Bytes() != cost(memKey(3), memObject(10)) {
		t.Errorf("after Delete: Len %d, Bytes %d", m.Len(), m.Bytes())
	}
}

func TestMemoryConcurrent(t *testing.T) {
	const max = 32 << 10
	ctx := context.Background()
	m := NewMemory(max, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				k := memKey((g*500 + i) % 300)
				switch i % 3 {
				case 0:
					m.Set(ctx, k, memObject(i%4000+1), time.Hour)
				case 1:
					m.Get(ctx, k)
				default:
					m.Delete(ctx, k)
				}
				if b := m.Bytes(); b > max || b < 0 {
					t.Errorf("Bytes() = %d", b)
					return
				}
			}
		})
	}
	wg.Wait()
}
