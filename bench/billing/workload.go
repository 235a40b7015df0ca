package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// workload draws one user's views for one day. Its buffers are reused from
// day to day; a workload is not safe for concurrent use.
type workload struct {
	c      *config
	cdf    []float64 // cumulative popularity of catalogue ranks 0..N-1
	marks  []uint32  // marks[img] == gen: img is already in today's set
	gen    uint32
	chosen []int64
	times  []time.Duration // offsets from the day's start, sorted
	images []int64         // images[i] is what view i looks at
	reasks []bool          // reasks[i]: view i goes back to the gateway regardless
	starts []time.Duration // visit starts
}

func newWorkload(c *config) *workload {
	w := &workload{
		c:      c,
		times:  make([]time.Duration, c.views),
		images: make([]int64, c.views),
		reasks: make([]bool, c.views),
		starts: make([]time.Duration, max(c.sessions, 0)),
	}
	if c.catalogue > 0 {
		w.cdf = make([]float64, c.catalogue)
		sum := 0.0
		for r := range w.cdf {
			sum += math.Pow(float64(r+1), -c.zipf)
			w.cdf[r] = sum
		}
		w.marks = make([]uint32, c.catalogue)
	}
	return w
}

// day fills times, images and reasks. The draws come in a fixed order
// (times, the day's set, the assignment, then reasks) so that runs that
// differ only in -reasks, -daystart or strategy see the same views.
func (w *workload) day(rng *rand.Rand) {
	c := w.c
	if c.sessions <= 0 {
		for i := range w.times {
			w.times[i] = time.Duration(rng.Int64N(int64(c.awake)))
		}
	} else {
		for i := range w.starts {
			w.starts[i] = time.Duration(rng.Int64N(int64(c.awake - c.visit)))
		}
		for i := range w.times {
			w.times[i] = w.starts[i%c.sessions] + time.Duration(rng.Int64N(int64(c.visit)))
		}
	}
	slices.Sort(w.times)

	// Today's set: k different images, drawn without replacement.
	k := min(c.distinct, c.views)
	w.chosen = w.chosen[:0]
	if c.catalogue == 0 {
		for i := range k {
			w.chosen = append(w.chosen, int64(i)) // the caller makes them this user's and this day's
		}
	} else {
		w.drawSet(k, rng)
	}

	// Every chosen image is viewed once; the other views go to chosen
	// images uniformly; then the order is shuffled.
	copy(w.images, w.chosen)
	for i := k; i < c.views; i++ {
		w.images[i] = w.chosen[rng.IntN(k)]
	}
	rng.Shuffle(len(w.images), func(i, j int) { w.images[i], w.images[j] = w.images[j], w.images[i] })

	for i := range w.reasks {
		w.reasks[i] = c.reasks > 0 && rng.Float64() < c.reasks
	}
}

// drawSet appends k different catalogue images to w.chosen, each draw
// weighted by popularity among the images not yet chosen.
func (w *workload) drawSet(k int, rng *rand.Rand) {
	w.gen++
	if w.gen == 0 { // wrapped: old marks could collide
		clear(w.marks)
		w.gen = 1
	}
	total := w.cdf[len(w.cdf)-1]
	for tries := 0; len(w.chosen) < k; tries++ {
		var img int
		if tries < 64*k {
			// Rejection: draw from the whole catalogue, skip repeats.
			// Cheap while the set is a small part of the popularity mass.
			img = sort.SearchFloat64s(w.cdf, rng.Float64()*total)
			img = min(img, len(w.cdf)-1)
			if w.marks[img] == w.gen {
				continue
			}
		} else {
			// A skewed catalogue can make repeats near certain; draw
			// exactly among the remaining images instead.
			img = w.drawRemaining(rng)
		}
		w.marks[img] = w.gen
		w.chosen = append(w.chosen, int64(img))
	}
}

func (w *workload) drawRemaining(rng *rand.Rand) int {
	weight := func(r int) float64 {
		if w.marks[r] == w.gen {
			return 0
		}
		if r == 0 {
			return w.cdf[0]
		}
		return w.cdf[r] - w.cdf[r-1]
	}
	sum := 0.0
	for r := range w.cdf {
		sum += weight(r)
	}
	u := rng.Float64() * sum
	last := 0
	for r := range w.cdf {
		if wt := weight(r); wt > 0 {
			last = r
			if u < wt {
				return r
			}
			u -= wt
		}
	}
	return last
}
