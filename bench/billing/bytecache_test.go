package main

import "testing"

func TestByteCache(t *testing.T) {
	const size, ttl = 10, 100
	type step struct {
		key, at int64
		hit     bool
	}
	for _, tc := range []struct {
		name      string
		capacity  int64
		steps     []step
		evictions int64
	}{
		{"hit until ttl, then refetched", 30, []step{{1, 0, false}, {1, 50, true}, {1, 99, true}, {1, 100, false}, {1, 150, true}}, 0},
		{"least recently used goes first", 20, []step{{1, 0, false}, {2, 1, false}, {1, 2, true}, {3, 3, false}, {1, 4, true}, {2, 5, false}}, 2},
		{"an expired entry dropped for space is no eviction", 20, []step{{1, 0, false}, {2, 50, false}, {3, 120, false}, {2, 121, true}}, 0},
		{"smaller than one image: nothing cached", 5, []step{{1, 0, false}, {1, 1, false}}, 0},
		{"no cache", 0, []step{{1, 0, false}, {1, 1, false}}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newByteCache(tc.capacity, size, ttl)
			for i, s := range tc.steps {
				if got := c.fetch(s.key, s.at); got != s.hit {
					t.Fatalf("step %d (key %d at %d): hit %v, want %v", i, s.key, s.at, got, s.hit)
				}
				if c.used > tc.capacity {
					t.Fatalf("step %d: %d bytes used of %d", i, c.used, tc.capacity)
				}
			}
			if c.evictions != tc.evictions {
				t.Errorf("%d evictions, want %d", c.evictions, tc.evictions)
			}
		})
	}
}
