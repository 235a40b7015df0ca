package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func gatewayCaddyfile(adminAddr, siteAddr string, cacheSize int) string {
	global := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tgrace_period 5s\n}\n", adminAddr)
	return global + gatewaySite(siteAddr, "", fmt.Sprintf(`variants public thumbnail
		cache_size %d
		session    none`, cacheSize))
}

var redirectCount = regexp.MustCompile(`(?m)^imagegate_requests_total\{outcome="redirect",variant="public"\} (\S+)$`)

// scrapeRedirects reads the public variant's redirect counter from Caddy's
// admin /metrics.
func scrapeRedirects(t *testing.T, adminAddr string) float64 {
	t.Helper()
	resp, body := get(t, "GET", "http://"+adminAddr+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	m := redirectCount.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no redirect counter for public:\n%s", grepLines(body, "imagegate_requests_total"))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloadUnderTraffic reloads the config ten times through the admin API
// while clients keep asking for images: no request may fail, metrics must
// stay registered (no duplicate-registration error, no panic), and the
// process-wide counters must keep counting across reloads.
func TestReloadUnderTraffic(t *testing.T) {
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, gatewayCaddyfile(admin, site, 1000), gatewayEnv, admin, site)

	var (
		served, failed atomic.Int64
		stop           = make(chan struct{})
		wg             sync.WaitGroup
		firstFailure   atomic.Value
	)
	// A fresh connection per request, retried on a transport error as
	// browsers retry idempotent requests: on Linux, Caddy's reload swaps
	// SO_REUSEPORT listeners, and connections still queued on the old
	// socket are reset by the kernel before any handler sees them. What the
	// gateway owns, every request that reaches it answered correctly, must
	// hold with no exception.
	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: noRedirect.CheckRedirect,
		Transport:     &http.Transport{DisableKeepAlives: true},
	}
	var retried atomic.Int64
	fetch := func(url string) (int, error) {
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				retried.Add(1)
			}
			var resp *http.Response
			if resp, err = client.Get(url); err == nil {
				resp.Body.Close()
				return resp.StatusCode, nil
			}
		}
		return 0, err
	}
	for w := range 2 {
		wg.Go(func() {
			for i := 0; i < 20_000; i++ { // bounded; stopped much earlier
				select {
				case <-stop:
					return
				default:
				}
				code, err := fetch(fmt.Sprintf("http://%s/img/w%d-%d/public", site, w, i%50))
				switch {
				case err != nil:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
				case code != http.StatusFound:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprint("status ", code))
				default:
					served.Add(1)
				}
			}
		})
	}

	last := 0.0
	for i := 1; i <= 10; i++ {
		// Let traffic flow between reloads (bounded wait).
		for target, deadline := served.Load()+20, time.Now().Add(3*time.Second); served.Load() < target && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		cfg := gatewayCaddyfile(admin, site, 1000+i) // a real change, so Caddy reloads
		req, _ := http.NewRequest("POST", "http://"+admin+"/load", strings.NewReader(cfg))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload %d: status %d", i, resp.StatusCode)
		}
		got := scrapeRedirects(t, admin)
		if got < last {
			t.Fatalf("reload %d: redirect counter went back from %v to %v", i, last, got)
		}
		last = got
	}
	close(stop)
	wg.Wait()

	if f := failed.Load(); f != 0 {
		t.Fatalf("%d requests failed during reloads; first: %v", f, firstFailure.Load())
	}
	t.Logf("%d requests served across 10 reloads; %d connection-level retries", served.Load(), retried.Load())
	if served.Load() == 0 {
		t.Fatal("no traffic was served during the reloads")
	}
	if final := scrapeRedirects(t, admin); final < float64(served.Load()) {
		t.Fatalf("counter %v is below the %d redirects served: counts were lost across reloads", final, served.Load())
	}
}
