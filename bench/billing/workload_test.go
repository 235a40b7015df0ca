package main

import (
	"math/rand/v2"
	"testing"
)

func TestDayDrawsWithoutReplacement(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		views, distinct, catalogue, k int
		zipf                          float64
	}{
		{"private", 50, 20, 0, 20, 0},
		{"private, as many images as views", 50, 50, 0, 50, 0},
		{"private, more images than views", 10, 50, 0, 10, 0},
		{"catalogue, uniform", 50, 20, 5000, 20, 0},
		{"catalogue, zipf 1", 50, 50, 5000, 50, 1},
		{"catalogue nearly exhausted, zipf 3", 60, 60, 64, 60, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(func(c *config) {
				c.views, c.distinct, c.catalogue, c.zipf = tc.views, tc.distinct, tc.catalogue, tc.zipf
			})
			w := newWorkload(&c)
			rng := rand.New(rand.NewPCG(1, 2))
			for range 20 {
				w.day(rng)
				seen := map[int64]int{}
				for _, img := range w.images {
					seen[img]++
				}
				if len(seen) != tc.k {
					t.Fatalf("%d different images viewed, want %d", len(seen), tc.k)
				}
				for img := range seen {
					if img < 0 || tc.catalogue > 0 && img >= int64(tc.catalogue) {
						t.Fatalf("image %d outside the catalogue", img)
					}
				}
			}
		})
	}
}

func TestZipfFavoursTheHead(t *testing.T) {
	c := testConfig(func(c *config) { c.distinct, c.catalogue, c.zipf = 5, 1000, 1 })
	w := newWorkload(&c)
	rng := rand.New(rand.NewPCG(1, 2))
	head, tail := 0, 0
	for range 2000 {
		w.day(rng)
		for _, img := range w.chosen {
			switch {
			case img < 10:
				head++
			case img >= 990:
				tail++
			}
		}
	}
	// Weights 1/r: ranks 1..10 carry about 30 times the weight of 991..1000.
	if head < 10*tail {
		t.Errorf("top 10 chosen %d times, bottom 10 %d times; want the top far more often", head, tail)
	}
}
