// Command billing estimates what Cloudflare would bill for a workload when
// every view gets a freshly signed URL (exp = now + TTL, the usual way)
// versus imagegate's stable URLs, by simulating browsers that cache as
// HTTP says they may.
//
// The model: users view images during their waking hours; each day a user
// looks at `-distinct` different images, `-views` times in all, at uniformly
// random moments. A browser keeps the gateway's 302 for its max-age
// (exp - min_remaining - now) and the image for as long as its signed URL
// is valid (Cloudflare derives a private image's cache time from exp). A
// view is billed when the browser has to fetch the image from Cloudflare.
//
//	go run ./bench/billing [-users 2000] [-views 50] [-distinct 20] [-days 30] [-sessions 5 -visit 10m]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

func main() {
	users := flag.Int("users", 2000, "users")
	views := flag.Int("views", 50, "image views per user per day")
	distinct := flag.Int("distinct", 20, "different images a user views per day")
	days := flag.Int("days", 30, "days to simulate")
	awake := flag.Duration("awake", 16*time.Hour, "hours in the day during which users view images")
	price := flag.Float64("price", 1.0/100_000, "dollars per delivered image")
	sessions := flag.Int("sessions", 0, "if > 0, views come in this many visits a day, each lasting -visit; 0 spreads them uniformly")
	visit := flag.Duration("visit", 10*time.Minute, "length of one visit")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	pattern := "spread uniformly over the waking day"
	if *sessions > 0 {
		pattern = fmt.Sprintf("in %d visits of %v a day", *sessions, *visit)
	}
	fmt.Fprintf(w, "%d users × %d views/day over %d distinct images/day, %s, %d days\n\n", *users, *views, *distinct, pattern, *days)
	fmt.Fprintln(w, "signing\tbilled/day\t$ per 30 days")
	perView := float64(*users * *views)
	fmt.Fprintf(w, "per request (exp = now + TTL)\t%.0f\t%.2f\n", perView, perView*30**price)
	for _, win := range []signer.Window{
		{Size: time.Hour, MinRemaining: 5 * time.Minute},
		{Size: 6 * time.Hour, MinRemaining: 30 * time.Minute},
		{Size: 24 * time.Hour, MinRemaining: time.Hour},
	} {
		m := model{*users, *views, *distinct, *days, *awake, *sessions, *visit}
		billed := m.simulate(win, rand.New(rand.NewPCG(*seed, 42)))
		perDay := float64(billed) / float64(*days)
		fmt.Fprintf(w, "stable, window %v, min_remaining %v\t%.0f\t%.2f\n", win.Size, win.MinRemaining, perDay, perDay*30**price)
	}
	w.Flush()
}

type model struct {
	users, views, distinct, days int
	awake                        time.Duration
	sessions                     int
	visit                        time.Duration
}

// viewTimes fills times with the moments of one user's views in a day.
func (m model) viewTimes(times []time.Duration, rng *rand.Rand) {
	if m.sessions <= 0 {
		for i := range times {
			times[i] = time.Duration(rng.Int64N(int64(m.awake)))
		}
	} else {
		starts := make([]time.Duration, m.sessions)
		for i := range starts {
			starts[i] = time.Duration(rng.Int64N(int64(m.awake - m.visit)))
		}
		for i := range times {
			times[i] = starts[i%m.sessions] + time.Duration(rng.Int64N(int64(m.visit)))
		}
	}
	slices.Sort(times)
}

// simulate returns the number of billed deliveries with stable URLs.
func (m model) simulate(win signer.Window, rng *rand.Rand) int {
	users, views, distinct, days := m.users, m.views, m.distinct, m.days
	day0 := time.Date(2026, 1, 1, 7, 0, 0, 0, time.UTC)
	billed := 0
	type cached struct{ exp, freshUntil time.Time }
	times := make([]time.Duration, views)
	for range users {
		// Per browser: the 302 it holds and the image URLs in its cache,
		// both keyed by image. Images are new each day, so reset daily.
		for d := range days {
			redirects := map[int]cached{} // image → the URL's exp and how long the 302 is fresh
			images := map[int]time.Time{} // image → exp of the URL whose bytes are cached
			start := day0.Add(time.Duration(d) * 24 * time.Hour)
			m.viewTimes(times, rng)
			for _, t := range times {
				now := start.Add(t)
				img := rng.IntN(distinct)
				r, ok := redirects[img]
				if !ok || now.After(r.freshUntil) {
					exp, fresh := win.Expiry(now)
					r = cached{exp, fresh}
					redirects[img] = r
				}
				if exp, ok := images[img]; ok && exp.Equal(r.exp) && now.Before(exp) {
					continue // the browser's cache has these bytes under this URL
				}
				billed++
				images[img] = r.exp
			}
		}
	}
	return billed
}
