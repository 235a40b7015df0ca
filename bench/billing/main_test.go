package main

import (
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

var (
	hour = signer.Window{Size: time.Hour, MinRemaining: 5 * time.Minute}
	day  = signer.Window{Size: 24 * time.Hour, MinRemaining: time.Hour}
)

// testConfig is a small run: one per-request policy (1h/5m), the windows
// 1h/5m and 24h/1h, proxy mode with window 1h/5m and no byte cache.
func testConfig(mod func(*config)) config {
	c := config{
		users: 20, views: 50, distinct: 20, days: 5,
		awake: 16 * time.Hour, dayStart: 7 * time.Hour, visit: 10 * time.Minute,
		zipf: 1, formats: 1, seed: 1,
		perRequest:  []perRequest{{time.Hour, 5 * time.Minute}},
		windows:     []signer.Window{hour, day},
		proxyWindow: hour,
		cacheSizes:  []int64{0},
		cacheTTL:    24 * time.Hour,
		imageBytes:  30 << 10,
	}
	if mod != nil {
		mod(&c)
	}
	return c
}

// Row indexes in testConfig's results.
const (
	naive = iota
	perRequestCached
	stableHour
	stableDay
	proxyRow // the first proxy row
)

func mustSimulate(t *testing.T, c config) []row {
	t.Helper()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	return simulate(&c)
}

func TestSimulateBounds(t *testing.T) {
	// One image viewed 50 times inside one 10-minute visit a day: the
	// cached 302 makes it one delivery a day; a stable window fetches it
	// once, or twice if the visit straddles a re-signing point.
	rows := mustSimulate(t, testConfig(func(c *config) {
		c.users, c.distinct, c.days, c.sessions = 1, 1, 30, 1
	}))
	if got := rows[naive].billed; got != 50*30 {
		t.Errorf("one image per visit, 302 not cached: %d deliveries in 30 days, want %d", got, 50*30)
	}
	if got := rows[perRequestCached].billed; got != 30 {
		t.Errorf("one image per visit, 302 cached: %d deliveries in 30 days, want 30", got)
	}
	if got := rows[stableHour].billed; got < 30 || got > 60 {
		t.Errorf("one image per visit, window 1h: %d deliveries in 30 days, want 30..60", got)
	}

	// Every view a different image: nothing to save, whatever the strategy.
	rows = mustSimulate(t, testConfig(func(c *config) { c.users, c.distinct, c.days = 3, 50, 2 }))
	for _, r := range rows {
		if r.billed != 3*50*2 {
			t.Errorf("all distinct, %s: %d deliveries, want %d", r.name, r.billed, 3*50*2)
		}
	}

	// A longer window never costs more here, and no strategy more than
	// signing every view.
	rows = mustSimulate(t, testConfig(func(c *config) { c.users = 50 }))
	if rows[stableDay].billed > rows[stableHour].billed || rows[stableHour].billed > rows[naive].billed || rows[naive].billed != 50*50*5 {
		t.Errorf("window 1h: %d, 24h: %d, per request: %d", rows[stableHour].billed, rows[stableDay].billed, rows[naive].billed)
	}
	// The viewing day 07:00..23:00 UTC fits in one 24h window's fresh
	// part, so each image is billed once a day.
	if got, want := rows[stableDay].billed, int64(50*20*5); got != want {
		t.Errorf("window 24h from 07:00: %d deliveries, want %d", got, want)
	}
}

func TestReasks(t *testing.T) {
	base := mustSimulate(t, testConfig(func(c *config) { c.sessions = 5 }))
	for _, p := range []float64{0.3, 1} {
		rows := mustSimulate(t, testConfig(func(c *config) { c.sessions, c.reasks = 5, p }))
		// A re-ask of a stable URL inside its window gets the same URL:
		// the browser's image cache still hits.
		for _, j := range []int{stableHour, stableDay} {
			if rows[j].billed != base[j].billed || rows[j].gateway <= base[j].gateway {
				t.Errorf("reasks %g, %s: billed %d (at 0: %d), gateway %d (at 0: %d); want billed unchanged, more gateway requests",
					p, rows[j].name, rows[j].billed, base[j].billed, rows[j].gateway, base[j].gateway)
			}
		}
		// A re-ask under per-request signing is a new URL: a new delivery.
		if rows[perRequestCached].billed <= base[perRequestCached].billed {
			t.Errorf("reasks %g, per request cached: %d deliveries, want more than %d", p, rows[perRequestCached].billed, base[perRequestCached].billed)
		}
		if p == 1 && rows[perRequestCached].billed != rows[naive].billed {
			t.Errorf("reasks 1, per request cached: %d deliveries, want every view: %d", rows[perRequestCached].billed, rows[naive].billed)
		}
	}
}

func TestProxyWithoutCache(t *testing.T) {
	// Without a byte cache, proxy mode bills what a stable redirect with
	// the same window bills, until the browser re-asks: then every re-ask
	// is a delivery.
	rows := mustSimulate(t, testConfig(nil))
	if rows[proxyRow].billed != rows[stableHour].billed {
		t.Errorf("proxy without cache: %d deliveries, stable 1h: %d; want equal", rows[proxyRow].billed, rows[stableHour].billed)
	}
	rows = mustSimulate(t, testConfig(func(c *config) { c.reasks = 1 }))
	if rows[proxyRow].billed != rows[naive].billed {
		t.Errorf("proxy without cache, reasks 1: %d deliveries, want every view: %d", rows[proxyRow].billed, rows[naive].billed)
	}
}

func TestSharedByteCache(t *testing.T) {
	// 200 users over a catalogue of 100: every image is asked for by
	// someone every day, so a shared cache that holds them all bills about
	// one delivery per image per cache_ttl, whatever the users do.
	const catalogue, days = 100, 5
	shared := func(mod func(*config)) []row {
		return mustSimulate(t, testConfig(func(c *config) {
			c.users, c.days, c.catalogue, c.zipf = 200, days, catalogue, 0
			c.cacheSizes = []int64{512 << 20, 10 * c.imageBytes, 0}
			if mod != nil {
				mod(c)
			}
		}))
	}
	rows := shared(nil)
	big, small, off := rows[proxyRow], rows[proxyRow+1], rows[proxyRow+2]
	if big.billed < catalogue*(days-1) || big.billed > catalogue*(days+1) || big.evictions != 0 {
		t.Errorf("512 MiB cache: %d deliveries, %d evictions; want about %d (one per image per day), none evicted",
			big.billed, big.evictions, catalogue*days)
	}
	if small.evictions == 0 || small.billed <= 2*big.billed || small.billed >= off.billed {
		t.Errorf("10-image cache: %d deliveries, %d evictions; want evictions, well above %d, below no cache's %d",
			small.billed, small.evictions, big.billed, off.billed)
	}
	if off.billed != off.gateway {
		t.Errorf("no cache: %d deliveries of %d gateway requests, want all", off.billed, off.gateway)
	}

	// Re-asks reach the gateway, whose cache still answers them.
	if got := shared(func(c *config) { c.reasks = 1 })[proxyRow].billed; got != big.billed {
		t.Errorf("512 MiB cache, reasks 1: %d deliveries, want %d as without re-asks", got, big.billed)
	}
	// A shorter cache_ttl refetches more often.
	if got := shared(func(c *config) { c.cacheTTL = time.Hour })[proxyRow].billed; got < 8*big.billed {
		t.Errorf("cache_ttl 1h: %d deliveries, want at least 8× the %d of 24h", got, big.billed)
	}
	// Three format buckets are three copies.
	if got := shared(func(c *config) { c.formats = 3 })[proxyRow].billed; got < 5*big.billed/2 || got > 3*big.billed+catalogue {
		t.Errorf("3 formats: %d deliveries, want about 3 × %d", got, big.billed)
	}
}

func TestDayStart(t *testing.T) {
	at := func(h time.Duration) []row {
		return mustSimulate(t, testConfig(func(c *config) { c.dayStart = h * time.Hour }))
	}
	best, worst := at(7), at(15)
	// 15:00..07:00 UTC crosses the 24h window's re-signing point (23:00).
	if worst[stableDay].billed <= best[stableDay].billed {
		t.Errorf("window 24h: %d deliveries from 15:00, %d from 07:00; want more from 15:00", worst[stableDay].billed, best[stableDay].billed)
	}
	// Per-request signing does not care about the clock.
	for _, j := range []int{naive, perRequestCached} {
		if worst[j].billed != best[j].billed {
			t.Errorf("%s: %d deliveries from 15:00, %d from 07:00; want equal", best[j].name, worst[j].billed, best[j].billed)
		}
	}
}
