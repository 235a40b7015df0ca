package cfapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/internal/testclock"
)

const okImage = `{"success":true,"errors":[],"messages":[],"result":{"id":"x","meta":{"owner":"alice"}}}`

// clock is a settable clock for a Client under test.

type clock = testclock.Clock

func newClock() *clock { return testclock.New(time.Unix(1_800_000_000, 0)) }

func TestRateLimited(t *testing.T) {
	var calls atomic.Int64
	var limited atomic.Bool
	limited.Store(true)
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if limited.Load() {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}],"messages":[],"result":null}`)
			return
		}
		_, _ = io.WriteString(w, okImage)
	})
	clk := newClock()
	var hook atomic.Int64
	c.Now = clk.Now
	c.OnRateLimited = func() { hook.Add(1) }
	ctx := context.Background()

	steps := []struct {
		name      string
		advance   time.Duration
		upload    bool
		wantRetry time.Duration // 0: the call succeeds
		wantCalls int64
	}{
		{"429 from the API", 0, false, 2 * time.Second, 1},
		{"fails fast", 0, false, 2 * time.Second, 1},
		{"fails fast, rounded up", 500 * time.Millisecond, false, 2 * time.Second, 1},
		{"uploads fail fast too", 0, true, 2 * time.Second, 1},
		{"fails fast until the end", 1499 * time.Millisecond, false, time.Second, 1},
		{"calls again after Retry-After", time.Millisecond, false, 0, 2},
	}
	for i, s := range steps {
		clk.Add(s.advance)
		if i == len(steps)-1 {
			limited.Store(false)
		}
		var err error
		if s.upload {
			_, _, err = c.DirectUpload(ctx, DirectUploadRequest{})
		} else {
			_, err = c.Image(ctx, "x")
		}
		if got := calls.Load(); got != s.wantCalls {
			t.Fatalf("%s: server called %d times, want %d", s.name, got, s.wantCalls)
		}
		if s.wantRetry == 0 {
			if err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			continue
		}
		var rl *RateLimitError
		if !errors.Is(err, ErrRateLimited) || !errors.As(err, &rl) || rl.RetryAfter != s.wantRetry {
			t.Fatalf("%s: err = %v, want ErrRateLimited with RetryAfter %v", s.name, err, s.wantRetry)
		}
		if errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), token) {
			t.Fatalf("%s: err = %v", s.name, err)
		}
		if got := hook.Load(); got != int64(i+1) {
			t.Fatalf("%s: OnRateLimited called %d times, want %d", s.name, got, i+1)
		}
	}
}

func TestRateLimitOnlyGrows(t *testing.T) {
	clk := newClock()
	c := &Client{Now: clk.Now}
	_ = c.rateLimited("get image", "30")
	_ = c.rateLimited("get image", "2") // a late answer to an earlier call
	clk.Add(10 * time.Second)
	var rl *RateLimitError
	if err := c.checkBlocked("get image"); !errors.As(err, &rl) || rl.RetryAfter != 20*time.Second {
		t.Fatalf("err = %v, want 20s left", err)
	}
	clk.Add(20 * time.Second)
	if err := c.checkBlocked("get image"); err != nil {
		t.Fatalf("after 30s: %v", err)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"2", 2 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"", time.Minute},
		{"soon", time.Minute},
		{"-5", time.Minute},
		{"1.5", time.Minute},
		{"0", time.Second},
		{"600", 10 * time.Minute},
		{"601", 10 * time.Minute},
		{"18446744073709551615", 10 * time.Minute},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Second},
		{now.Add(24 * time.Hour).Format(http.TimeFormat), 10 * time.Minute},
		{"Wednesday, 02-Jan-30 03:05:35 GMT", 90 * time.Second}, // RFC 850, an obsolete HTTP date
	}
	for _, tc := range tests {
		if got := parseRetryAfter(tc.header, now); got != tc.want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

func TestMaxConcurrent(t *testing.T) {
	const limit, n = 4, 50
	var inFlight, maxInFlight, calls atomic.Int64
	gate := make(chan struct{})
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if now <= m || maxInFlight.CompareAndSwap(m, now) {
				break
			}
		}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, okImage)
	})
	c.MaxConcurrent = limit
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := c.Image(context.Background(), "x")
			errs <- err
		})
	}
	waitFor(t, "the slots to fill", func() bool { return inFlight.Load() >= limit })
	// Give calls that ignore the cap time to show up. Passing never
	// depends on this pause; only catching a broken cap does.
	time.Sleep(100 * time.Millisecond)
	if got := inFlight.Load(); got != limit {
		t.Fatalf("%d calls in flight, cap %d", got, limit)
	}

	// While the slots are full, a call waits for one only as long as its
	// context allows, and never reaches the server.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Image(ctx, "x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting past the deadline: %v", err)
	}
	if got := calls.Load(); got != limit {
		t.Fatalf("server called %d times while %d slots were full", got, limit)
	}

	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := maxInFlight.Load(); got != limit {
		t.Fatalf("max in flight = %d, want %d", got, limit)
	}
	if got := calls.Load(); got != n {
		t.Fatalf("calls = %d, want %d", got, n)
	}
}

func TestDefaultMaxConcurrent(t *testing.T) {
	c := &Client{}
	c.init()
	if cap(c.slots) != DefaultMaxConcurrent {
		t.Fatalf("slots = %d, want %d", cap(c.slots), DefaultMaxConcurrent)
	}
}

func TestNotAPIError(t *testing.T) {
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {
		http.NotFound(w, r)
	})
	_, err := c.Image(context.Background(), "x")
	if !errors.Is(err, ErrNotAPI) || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "check api_url") {
		t.Fatalf("err = %v", err)
	}
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("err = %#v, want an *APIError with status 404", err)
	}
}

func TestValidateBaseURL(t *testing.T) {
	const secret = "hunter2"
	tests := []struct {
		url string
		ok  bool
	}{
		{DefaultBaseURL, true},
		{"http://127.0.0.1:8787/client/v4/", true},
		{"https://api.example", true},
		{"", false},
		{"api.cloudflare.com/client/v4", false},
		{"/client/v4", false},
		{"ftp://api.example/client/v4", false},
		{"https://", false},
		{"https:api.example", false},
		{"https://alice:" + secret + "@api.example/client/v4", false},
		{"https://" + secret + "@api.example/client/v4", false},
		{"alice:" + secret + "@api.example", false},
		{"https://alice:" + secret + "@[::1/client/v4", false},
		{"https://alice:" + secret + "@api.example/%zz", false},
		{"https://api.example/client/v4?x=" + secret, false},
		{"https://api.example/client/v4?", false},
		{"https://api.example/client/v4#" + secret, false},
		{"https://api.example/client/v4#", false},
		{"https://api.example/client/v4\n", false},
	}
	for _, tc := range tests {
		err := ValidateBaseURL(tc.url)
		if tc.ok != (err == nil) {
			t.Errorf("ValidateBaseURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
		if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "alice")) {
			t.Errorf("ValidateBaseURL(%q) = %v: echoes the URL", tc.url, err)
		}
	}
}

// waitFor polls cond, failing after a generous bound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
