// Command billing estimates what Cloudflare Images would bill for a
// workload under different ways of handing out signed URLs, by simulating
// browsers that cache as HTTP says they may.
//
// Cloudflare bills every image it delivers, edge-cache hits included; only
// a hit in the browser's own cache, or in the gateway's byte cache in proxy
// mode, is free. The strategies:
//
//   - per request, 302 not cached: exp = now + ttl on every view, so every
//     view is a new URL and a delivery;
//   - per request, 302 cached: the same URL, but the 302 carries
//     `private, max-age = ttl - margin`, so the browser reuses it, and then
//     the image, until the 302 goes stale;
//   - stable: imagegate's window rule (signer.Window), the 302's max-age
//     running to exp - min_remaining;
//   - proxy: the gateway serves the bytes itself with a private max-age
//     from -proxy_window, from a byte cache shared by all users (an LRU of
//     bounded bytes whose entries expire -cache_ttl after they are stored).
//
// The workload: each day, during -awake hours from -daystart (UTC), each
// user looks at -distinct different images, drawn without replacement,
// -views times in all; every chosen image is viewed at least once. Images
// are each user's own and new each day, or, with -catalogue N, drawn from
// N shared images by Zipf popularity (-zipf 0 is uniform), and then a
// browser keeps its cache from day to day. An "image" is one (image,
// variant) pair. -reasks is the chance that a view goes back to the gateway
// although the browser holds a fresh answer (a new session cookie under
// Vary: Cookie, an app that asks for the URL each time).
//
//	go run ./bench/billing [-users 2000 -views 50 -distinct 20 -days 30] [-sessions 5 -visit 10m]
//	go run ./bench/billing -catalogue 5000 -zipf 1 -cache_size 512MiB,16MiB,0
//	go run ./bench/billing -spread    # also min/median/max over day starts 00:00..23:00 UTC
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "billing:", err)
		}
		os.Exit(2)
	}
}

// run parses args, runs the model and writes its tables to out.
func run(args []string, out io.Writer) error {
	var c config
	fs := flag.NewFlagSet("billing", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.IntVar(&c.users, "users", 2000, "users")
	fs.IntVar(&c.views, "views", 50, "image views per user per day")
	fs.IntVar(&c.distinct, "distinct", 20, "different images a user views per day (at most -views of them are viewed)")
	fs.IntVar(&c.days, "days", 30, "days to simulate")
	fs.DurationVar(&c.awake, "awake", 16*time.Hour, "length of the day during which users view images")
	fs.DurationVar(&c.dayStart, "daystart", 7*time.Hour, "when the viewing day starts, after 00:00 UTC")
	fs.IntVar(&c.sessions, "sessions", 0, "if > 0, views come in this many visits a day, each lasting -visit; 0 spreads them uniformly")
	fs.DurationVar(&c.visit, "visit", 10*time.Minute, "length of one visit")
	fs.IntVar(&c.catalogue, "catalogue", 0, "shared images users draw from; 0: every user's images are their own and new each day")
	fs.Float64Var(&c.zipf, "zipf", 1, "popularity exponent over the catalogue (weight of rank r is r^-zipf); 0 is uniform")
	fs.IntVar(&c.formats, "formats", 1, "output-format buckets among browsers (AVIF, WebP, original): proxy mode caches one copy per bucket")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed")
	fs.DurationVar(&c.cacheTTL, "cache_ttl", 24*time.Hour, "proxy mode: how long the byte cache keeps an image")
	price := fs.Float64("price", 1.0/100_000, "dollars per delivered image")
	spread := fs.Bool("spread", false, "instead, run day starts 00:00..23:00 UTC and print each strategy's best, median and worst")
	reasks := fs.String("reasks", "0", "probability that a view asks the gateway although the browser's answer is fresh; several, comma-separated, add a table")
	ttls := fs.String("ttl", "1h/5m,24h/1h", "per-request signing, as ttl/margin (exp = now + ttl, 302 max-age ttl - margin), comma-separated")
	windows := fs.String("windows", "1h/5m,6h/30m,24h/1h", "stable windows, as size/min_remaining, comma-separated")
	proxyWindow := fs.String("proxy_window", "1h/5m", "proxy mode: the window whose exp - min_remaining - now is the image's max-age")
	cacheSizes := fs.String("cache_size", "512MiB,16MiB,0", "proxy mode: byte cache sizes, one row each, comma-separated; 0 is no cache")
	imageBytes := fs.String("image_bytes", "30KiB", "proxy mode: average size of one delivered image")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if c.windows, err = parseWindows(*windows); err != nil {
		return err
	}
	pairs, err := parseWindows(*ttls)
	if err != nil {
		return err
	}
	for _, p := range pairs {
		c.perRequest = append(c.perRequest, perRequest{p.Size, p.MinRemaining})
	}
	pw, err := parseWindows(*proxyWindow)
	if err != nil || len(pw) != 1 {
		return fmt.Errorf("proxy_window %q: want one size/min_remaining", *proxyWindow)
	}
	c.proxyWindow = pw[0]
	if c.imageBytes, err = parseBytes(*imageBytes); err != nil {
		return err
	}
	for s := range strings.SplitSeq(*cacheSizes, ",") {
		n, err := parseBytes(s)
		if err != nil {
			return err
		}
		c.cacheSizes = append(c.cacheSizes, n)
	}
	var sweep []float64
	for s := range strings.SplitSeq(*reasks, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("reasks %q: %w", s, err)
		}
		sweep = append(sweep, r)
	}
	c.reasks = sweep[0]
	if err := c.validate(); err != nil {
		return err
	}
	for _, r := range sweep[1:] {
		if r < 0 || r > 1 {
			return errors.New("reasks must be in [0, 1]")
		}
	}

	if *spread && len(sweep) > 1 {
		return errors.New("-spread takes one -reasks")
	}

	// Every run this invocation needs, in parallel: one per reasks, or one
	// per whole-hour day start.
	var runs []config
	for _, r := range sweep {
		cr := c
		cr.reasks = r
		runs = append(runs, cr)
	}
	if *spread {
		runs = runs[:0]
		for h := range 24 {
			ch := c
			ch.dayStart = time.Duration(h) * time.Hour
			runs = append(runs, ch)
		}
	}
	results := simulateAll(runs)

	views, days := float64(c.users*c.views), float64(c.days)
	perDay := func(n int64) float64 { return float64(n) / days }
	if *spread {
		printSpread(out, &c, results, perDay, *price)
		return nil
	}
	fmt.Fprintf(out, "%s\n\n", describe(&c, clock(c.dayStart)+" UTC"))
	fmt.Fprintln(out, "| signing | billed/day | $ per 30 days | of views | gateway requests/day | byte-cache evictions/day |")
	fmt.Fprintln(out, "|---|--:|--:|--:|--:|--:|")
	for _, r := range results[0] {
		ev := "–"
		if r.proxy {
			ev = thousands(perDay(r.evictions))
		}
		fmt.Fprintf(out, "| %s | %s | $%.2f | %.0f%% | %s | %s |\n", r.name, thousands(perDay(r.billed)), perDay(r.billed)*30**price,
			100*perDay(r.billed)/views, thousands(perDay(r.gateway)), ev)
	}

	if len(sweep) > 1 {
		fmt.Fprintf(out, "\nBilled/day by -reasks, the share of views that ask the gateway although the browser's answer is fresh:\n\n| signing |")
		for _, r := range sweep {
			fmt.Fprintf(out, " reasks %g |", r)
		}
		fmt.Fprintf(out, "\n|---|%s\n", strings.Repeat("--:|", len(sweep)))
		for j, r := range results[0] {
			fmt.Fprintf(out, "| %s |", r.name)
			for i := range sweep {
				fmt.Fprintf(out, " %s |", thousands(perDay(results[i][j].billed)))
			}
			fmt.Fprintln(out)
		}
	}

	return nil
}

// printSpread prints each strategy's best, median and worst over the runs
// byStart, one per whole-hour day start.
func printSpread(out io.Writer, c *config, byStart [][]row, perDay func(int64) float64, price float64) {
	fmt.Fprintf(out, "%s\n\n", describe(c, "each whole hour UTC"))
	fmt.Fprintln(out, "| signing | best (day start) | median | worst (day start) | $ per 30 days |")
	fmt.Fprintln(out, "|---|--:|--:|--:|--:|")
	for j, r := range byStart[0] {
		billed := make([]int64, len(byStart))
		for h := range byStart {
			billed[h] = byStart[h][j].billed
		}
		sorted := slices.Sorted(slices.Values(billed))
		lo, hi := sorted[0], sorted[len(sorted)-1]
		med := (perDay(sorted[len(sorted)/2-1]) + perDay(sorted[len(sorted)/2])) / 2
		at := func(v int64) string {
			if lo == hi {
				return "any"
			}
			return clock(time.Duration(slices.Index(billed, v)) * time.Hour)
		}
		fmt.Fprintf(out, "| %s | %s (%s) | %s | %s (%s) | $%.2f..%.2f |\n", r.name,
			thousands(perDay(lo)), at(lo), thousands(med), thousands(perDay(hi)), at(hi), perDay(lo)*30*price, perDay(hi)*30*price)
	}
}

// simulateAll runs the configurations in parallel, one per CPU.
func simulateAll(runs []config) [][]row {
	results := make([][]row, len(runs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i := range runs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = simulate(&runs[i])
		})
	}
	wg.Wait()
	return results
}

// describe says what the model simulated; from is when the day starts.
func describe(c *config, from string) string {
	images := "each user's own, new each day"
	if c.catalogue > 0 {
		images = fmt.Sprintf("from a shared catalogue of %s, zipf %g", thousands(float64(c.catalogue)), c.zipf)
	}
	pattern := "spread uniformly"
	if c.sessions > 0 {
		pattern = fmt.Sprintf("in %d visits of %s", c.sessions, short(c.visit))
	}
	s := fmt.Sprintf("%s users × %d views/day of %d images/day (%s), %s over %s from %s, %d days, reasks %g, seed %d",
		thousands(float64(c.users)), c.views, min(c.distinct, c.views), images, pattern, short(c.awake), from, c.days, c.reasks, c.seed)
	if c.formats > 1 {
		s += fmt.Sprintf(", %d formats", c.formats)
	}
	return s + fmt.Sprintf("; proxy: images of %s", formatBytes(c.imageBytes))
}

func parseWindows(s string) ([]signer.Window, error) {
	var ws []signer.Window
	for part := range strings.SplitSeq(s, ",") {
		size, rem, ok := strings.Cut(strings.TrimSpace(part), "/")
		if !ok {
			return nil, fmt.Errorf("window %q: want size/min_remaining", part)
		}
		var w signer.Window
		var err1, err2 error
		w.Size, err1 = time.ParseDuration(size)
		w.MinRemaining, err2 = time.ParseDuration(rem)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("window %q: %w", part, err)
		}
		ws = append(ws, w)
	}
	return ws, nil
}

var byteUnits = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}

// parseBytes reads "512MiB", "30KB", "0" or a plain number of bytes.
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	unit := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, unit = num, u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a whole number of B, KB, KiB, MB, MiB, GB or GiB", s)
	}
	return n * unit, nil
}

func formatBytes(n int64) string {
	for _, u := range byteUnits[:3] {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d %s", n/u.n, u.suffix)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// short prints 1h0m0s as 1h and 1h30m0s as 1h30m.
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func clock(d time.Duration) string {
	return fmt.Sprintf("%02d:%02d", int(d.Hours()), int(d.Minutes())%60)
}

// thousands rounds x and groups its digits: 92763.4 → "92,763".
func thousands(x float64) string {
	s := strconv.FormatInt(int64(x+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
