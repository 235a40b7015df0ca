package main

import (
	"cmp"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

// config is one run of the model.
type config struct {
	users, views, distinct, days int
	awake                        time.Duration // length of the viewing day
	dayStart                     time.Duration // when the viewing day starts, after 00:00 UTC
	sessions                     int           // visits a day; 0 spreads views over the whole viewing day
	visit                        time.Duration

	catalogue int     // shared images to draw from; 0: every user's images are their own and new each day
	zipf      float64 // popularity exponent over the catalogue; 0 is uniform
	formats   int     // output-format buckets; user u's browser is in bucket u % formats
	reasks    float64 // probability that a view asks the gateway although the browser holds a fresh answer
	seed      uint64

	perRequest  []perRequest    // per-request signing policies; the first is also the uncached row's
	windows     []signer.Window // stable signing
	proxyWindow signer.Window   // proxy mode: the image's private max-age follows this window
	cacheSizes  []int64         // proxy mode: byte cache sizes, one row each; 0 is no cache
	cacheTTL    time.Duration
	imageBytes  int64
}

func (c *config) validate() error {
	switch {
	case c.users < 1 || c.views < 1 || c.distinct < 1 || c.days < 1:
		return errors.New("users, views, distinct and days must be at least 1")
	case c.awake <= 0 || c.awake > 24*time.Hour:
		return errors.New("awake must be in (0, 24h]")
	case c.dayStart < 0 || c.dayStart >= 24*time.Hour:
		return errors.New("daystart must be in [0, 24h)")
	case c.sessions > 0 && (c.visit <= 0 || c.visit >= c.awake):
		return errors.New("visit must be positive and shorter than awake")
	case c.catalogue < 0 || c.catalogue > 0 && c.distinct > c.catalogue:
		return errors.New("catalogue must be 0 or at least distinct")
	case c.zipf < 0:
		return errors.New("zipf must not be negative")
	case c.formats < 1:
		return errors.New("formats must be at least 1")
	case c.reasks < 0 || c.reasks > 1:
		return errors.New("reasks must be in [0, 1]")
	case len(c.perRequest) == 0:
		return errors.New("ttl: want at least one ttl/margin")
	case c.imageBytes < 1 || c.cacheTTL <= 0:
		return errors.New("image_bytes and cache_ttl must be positive")
	}
	for _, w := range append(slices.Clone(c.windows), c.proxyWindow) {
		if err := w.Validate(); err != nil {
			return fmt.Errorf("window %v/%v: %w", w.Size, w.MinRemaining, err)
		}
	}
	for _, p := range c.perRequest {
		if p.ttl <= 0 || p.margin < 0 || p.margin >= p.ttl {
			return fmt.Errorf("ttl %v/%v: ttl must be positive and margin in [0, ttl)", p.ttl, p.margin)
		}
	}
	for _, s := range c.cacheSizes {
		if s < 0 {
			return errors.New("cache sizes must not be negative")
		}
	}
	return nil
}

// perRequest signs each answer anew: exp = now + ttl, and the 302 carries
// max-age = ttl - margin.
type perRequest struct{ ttl, margin time.Duration }

// row is one signing strategy's total over the run.
type row struct {
	name      string
	billed    int64 // deliveries Cloudflare bills
	gateway   int64 // requests that reached the gateway
	evictions int64 // proxy mode: live byte-cache entries dropped for space
	proxy     bool
}

// redirect is a strategy that answers with a 302 to a signed URL. sign
// returns the URL's exp, which names the URL (two answers with the same
// exp are byte-identical), and until when the browser may reuse the 302.
type redirect struct {
	name string
	sign func(now int64) (exp, fresh int64)
}

// redirects lists the redirect strategies in row order: per request with
// the 302 not cached, per request with it cached for each -ttl, stable for
// each window.
func (c *config) redirects() []redirect {
	first := int64(c.perRequest[0].ttl)
	rs := []redirect{{
		fmt.Sprintf("per request, 302 not cached (exp = now + %s)", short(c.perRequest[0].ttl)),
		func(now int64) (int64, int64) { return now + first, now },
	}}
	for _, p := range c.perRequest {
		ttl, margin := int64(p.ttl), int64(p.margin)
		rs = append(rs, redirect{
			fmt.Sprintf("per request, 302 cached %s (exp = now + %s)", short(p.ttl-p.margin), short(p.ttl)),
			func(now int64) (int64, int64) { return now + ttl, now + ttl - margin },
		})
	}
	for _, w := range c.windows {
		rs = append(rs, redirect{
			fmt.Sprintf("stable, window %s, min_remaining %s", short(w.Size), short(w.MinRemaining)),
			windowSign(w),
		})
	}
	return rs
}

// windowSign signs by imagegate's own window rule.
func windowSign(w signer.Window) func(int64) (int64, int64) {
	return func(now int64) (int64, int64) {
		exp, fresh := w.Expiry(time.Unix(0, now))
		return exp.UnixNano(), fresh.UnixNano()
	}
}

// redirectState is what one browser holds for one image under a redirect
// strategy: the 302 (the URL it points to and until when it is fresh) and
// the URL whose bytes are in the image cache, valid until its exp.
type redirectState struct{ url, fresh, image int64 }

// request is one proxy-mode request that reached the gateway.
type request struct{ at, key int64 }

// simulate runs the model and returns one row per strategy: the redirect
// strategies, then proxy mode for each cache size.
func simulate(c *config) []row {
	redirects := c.redirects()
	rows := make([]row, 0, len(redirects)+len(c.cacheSizes))
	for _, r := range redirects {
		rows = append(rows, row{name: r.name})
	}
	proxySign := windowSign(c.proxyWindow)

	var (
		w        = newWorkload(c)
		slots    = map[int64]int32{} // image → index into the per-image state below
		red      = make([][]redirectState, len(redirects))
		proxied  []int64 // proxy mode: until when the browser's copy is fresh
		requests = make([][]request, c.days)
		proxyGW  int64
		day0     = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(c.dayStart).UnixNano()
		k        = int64(min(c.distinct, c.views))
		caching  = slices.ContainsFunc(c.cacheSizes, func(n int64) bool { return n >= c.imageBytes })
	)
	reset := func() {
		clear(slots)
		for j := range red {
			red[j] = red[j][:0]
		}
		proxied = proxied[:0]
		if c.catalogue == 0 { // the images are 0..k-1: index them directly
			for j := range red {
				red[j] = append(red[j], make([]redirectState, k)...)
			}
			proxied = append(proxied, make([]int64, k)...)
		}
	}
	for u := range c.users {
		reset() // a new browser
		for d := range c.days {
			if c.catalogue == 0 {
				reset() // the user's images are new each day
			}
			w.day(rand.New(rand.NewPCG(c.seed, uint64(u)<<32|uint64(d))))
			start := day0 + int64(d)*int64(24*time.Hour)
			for i, t := range w.times {
				now, img := start+int64(t), w.images[i]
				s, ok := int32(img), c.catalogue == 0
				if !ok {
					if s, ok = slots[img]; !ok {
						s = int32(len(proxied))
						slots[img] = s
						for j := range red {
							red[j] = append(red[j], redirectState{})
						}
						proxied = append(proxied, 0)
					}
				}
				reask := w.reasks[i]
				for j, r := range redirects {
					st := &red[j][s]
					if reask || now >= st.fresh {
						st.url, st.fresh = r.sign(now)
						rows[j].gateway++
					}
					if st.image == st.url && now < st.image {
						continue // the browser's image cache has this URL
					}
					rows[j].billed++
					st.image = st.url
				}
				if reask || now >= proxied[s] {
					_, proxied[s] = proxySign(now)
					proxyGW++
					if !caching {
						continue // every request is a delivery: no need to keep them
					}
					key := img*int64(c.formats) + int64(u%c.formats)
					if c.catalogue == 0 {
						key = (int64(u)*int64(c.days)+int64(d))*k + img
					}
					requests[d] = append(requests[d], request{now, key})
				}
			}
		}
	}

	for _, day := range requests {
		slices.SortFunc(day, func(a, b request) int {
			return cmp.Compare(a.at, b.at) // pdqsort is deterministic, so the rare same-nanosecond ties resolve alike every run
		})
	}
	for _, size := range c.cacheSizes {
		r := row{name: proxyName(c, size), gateway: proxyGW, proxy: true}
		if size < c.imageBytes {
			r.billed = proxyGW
			rows = append(rows, r)
			continue
		}
		bc := newByteCache(size, c.imageBytes, int64(c.cacheTTL))
		for _, day := range requests {
			for _, q := range day {
				if !bc.fetch(q.key, q.at) {
					r.billed++
				}
			}
		}
		r.evictions = bc.evictions
		rows = append(rows, r)
	}
	return rows
}

func proxyName(c *config, size int64) string {
	win := fmt.Sprintf("max-age by window %s/%s", short(c.proxyWindow.Size), short(c.proxyWindow.MinRemaining))
	if size < c.imageBytes {
		return "proxy, no byte cache, " + win
	}
	return fmt.Sprintf("proxy, byte cache %s ttl %s, %s", formatBytes(size), short(c.cacheTTL), win)
}
