package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// fakeMeta is a MetadataSource over a map of image id to owner that counts
// its lookups and can be made to fail.
type fakeMeta struct {
	calls  atomic.Int64
	mu     sync.Mutex
	owners map[string]string
	err    error // if set, every lookup fails with it
}

func newFakeMeta() *fakeMeta {
	return &fakeMeta{owners: map[string]string{"img1": "alice", "img2": "bob", "img3": "bob"}}
}

func (f *fakeMeta) ImageMeta(ctx context.Context, id string) (map[string]any, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	owner, ok := f.owners[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrImageNotFound, id)
	}
	return map[string]any{"owner": owner}, nil
}

func (f *fakeMeta) set(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn()
}

// counted counts the lookups of a MetadataSource it wraps.
type counted struct {
	MetadataSource
	calls atomic.Int64
}

func (c *counted) ImageMeta(ctx context.Context, id string) (map[string]any, error) {
	c.calls.Add(1)
	return c.MetadataSource.ImageMeta(ctx, id)
}

// step is one check of an Owner and what it must give.
type step struct {
	name    string
	advance time.Duration
	sub, id string
	want    error // nil: allowed
	calls   int64 // lookups made so far
}

func runSteps(t *testing.T, o *Owner, clk *fakeClock, calls func() int64, steps []step) {
	t.Helper()
	for _, s := range steps {
		clk.Add(s.advance)
		err := o.Allow(context.Background(), Identity{Subject: s.sub}, Image{ID: s.id})
		if (s.want == nil) != (err == nil) || !errors.Is(err, s.want) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.want)
		}
		if got := calls(); got != s.calls {
			t.Fatalf("%s: %d lookups, want %d", s.name, got, s.calls)
		}
	}
}

func TestOwnerLimitsLookups(t *testing.T) {
	const budget = 5
	src := newFakeMeta()
	clk := newClock()
	o, err := NewOwner(OwnerConfig{
		Field:   "owner",
		Source:  src,
		Now:     clk.Now,
		Limiter: limit.NewLocal(limit.Rate{Events: budget, Per: time.Hour}, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	bob := Identity{Subject: "bob"}
	if err := o.Allow(ctx, bob, Image{ID: "img2"}); err != nil {
		t.Fatal(err)
	}
	// Mallory cycles through made-up ids: each costs a lookup until her
	// budget is spent, then none.
	for i := range 3 * budget {
		err := o.Allow(ctx, Identity{Subject: "mallory"}, Image{ID: "fresh-" + strconv.Itoa(i)})
		if i < budget {
			if !errors.Is(err, ErrForbidden) {
				t.Fatalf("id %d, within budget: %v", i, err)
			}
			continue
		}
		var le *LimitedError
		if !errors.Is(err, ErrLimited) || !errors.As(err, &le) || le.RetryAfter <= 0 ||
			errors.Is(err, ErrForbidden) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("id %d, over budget: err = %v, want a LimitedError with RetryAfter", i, err)
		}
	}
	if got := src.calls.Load(); got != 1+budget {
		t.Fatalf("%d lookups, want %d", got, 1+budget)
	}
	// Answers she already has cost nothing: a missing id stays Forbidden.
	if err := o.Allow(ctx, Identity{Subject: "mallory"}, Image{ID: "fresh-0"}); !errors.Is(err, ErrForbidden) {
		t.Fatalf("cached id while limited: %v", err)
	}
	// Bob is unaffected, and cached checks never spend his budget.
	for i := range 4 * budget {
		if err := o.Allow(ctx, bob, Image{ID: "img2"}); err != nil {
			t.Fatalf("bob's cached image, check %d: %v", i, err)
		}
	}
	if err := o.Allow(ctx, bob, Image{ID: "img3"}); err != nil {
		t.Fatalf("bob's uncached image: %v", err)
	}
	if got := src.calls.Load(); got != 2+budget {
		t.Fatalf("%d lookups, want %d", got, 2+budget)
	}
}

// countingLimiter allows everything and counts the checks it was asked
// about: those that needed a lookup.
type countingLimiter struct{ n atomic.Int64 }

func (c *countingLimiter) Allow(context.Context, string) limit.Result {
	c.n.Add(1)
	return limit.Result{Allowed: true}
}

func TestOwnerLimiterOnlyOnLookup(t *testing.T) {
	src := newFakeMeta()
	clk := newClock()
	lim := &countingLimiter{}
	o, err := NewOwner(OwnerConfig{Field: "owner", Source: src, Now: clk.Now, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, o, clk, lim.n.Load, []step{
		{"lookup", 0, "alice", "img1", nil, 1},
		{"cached", time.Minute, "alice", "img1", nil, 1},
		{"cached, someone else", 0, "bob", "img1", ErrForbidden, 1},
		{"missing", 0, "bob", "ghost", ErrForbidden, 2},
		{"missing, cached", 0, "bob", "ghost", ErrForbidden, 2},
		{"anonymous", 0, "", "img9", ErrForbidden, 2},
		{"stale", 5 * time.Minute, "alice", "img1", nil, 3},
	})
	if got := src.calls.Load(); got != 3 {
		t.Fatalf("%d lookups, %d limiter checks", got, lim.n.Load())
	}
}

func TestOwnerLimitedNeverServesStale(t *testing.T) {
	// Alice spends her own lookup budget, then the image is reassigned to
	// bob. Once her cached entry is no longer fresh she must get 429, not
	// the stale "alice owns it" (issue 16: she kept access for up to
	// metadata_stale). A fresh entry still answers without a lookup.
	src := newFakeMeta()
	clk := newClock()
	o, err := NewOwner(OwnerConfig{
		Field:   "owner",
		Source:  src,
		Now:     clk.Now,
		TTL:     5 * time.Minute,
		Stale:   time.Hour,
		Limiter: limit.NewLocal(limit.Rate{Events: 1, Per: 24 * time.Hour}, 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, o, clk, src.calls.Load, []step{
		{"first lookup", 0, "alice", "img1", nil, 1},
		{"budget spent", 0, "alice", "ghost", ErrLimited, 1},
		{"fresh while limited", time.Minute, "alice", "img1", nil, 1},
	})
	src.set(func() { src.owners["img1"] = "bob" })
	runSteps(t, o, clk, src.calls.Load, []step{
		{"stale while limited", 10 * time.Minute, "alice", "img1", ErrLimited, 1},
		{"past stale", time.Hour, "alice", "img1", ErrLimited, 1},
		{"bob's own lookup", 0, "bob", "img1", nil, 2},
		{"alice, fresh entry says bob", 0, "alice", "img1", ErrForbidden, 2},
	})
}

func TestOwnerServesStaleOnError(t *testing.T) {
	tests := []struct {
		name string
		// source returns the MetadataSource, a function that makes it
		// fail or recover, and its lookup count.
		source func(t *testing.T, clk *fakeClock) (MetadataSource, func(failing bool), func() int64)
	}{
		{"API error", func(t *testing.T, _ *fakeClock) (MetadataSource, func(bool), func() int64) {
			src := newFakeMeta()
			fail := func(failing bool) {
				src.set(func() {
					src.err = nil
					if failing {
						src.err = errors.New("cloudflare images: get image: status 500")
					}
				})
			}
			return src, fail, src.calls.Load
		}},
		{"timeout", func(t *testing.T, _ *fakeClock) (MetadataSource, func(bool), func() int64) {
			src := newFakeMeta()
			fail := func(failing bool) {
				src.set(func() {
					src.err = nil
					if failing {
						src.err = fmt.Errorf("get image: %w", context.DeadlineExceeded)
					}
				})
			}
			return src, fail, src.calls.Load
		}},
		{"Cloudflare's rate limit", func(t *testing.T, clk *fakeClock) (MetadataSource, func(bool), func() int64) {
			api := newRateLimitedAPI(t)
			client := &cfapi.Client{BaseURL: api.URL, AccountID: "acct", APIToken: "tok", Now: clk.Now}
			src := &counted{MetadataSource: CloudflareMetadata{Client: client}}
			return src, api.limited.Store, src.calls.Load
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			src, fail, calls := tc.source(t, clk)
			o, err := NewOwner(OwnerConfig{Field: "owner", Source: src, Now: clk.Now, TTL: 5 * time.Minute, Stale: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			runSteps(t, o, clk, calls, []step{
				{"lookup", 0, "alice", "img1", nil, 1},
				{"fresh", 4 * time.Minute, "alice", "img1", nil, 1},
			})
			fail(true)
			runSteps(t, o, clk, calls, []step{
				{"failed refresh serves stale", 2 * time.Minute, "alice", "img1", nil, 2},
				{"stale decides for others too", 0, "bob", "img1", ErrForbidden, 2},
				{"no new lookup right after a failure", 29 * time.Second, "alice", "img1", nil, 2},
				{"lookups are retried", time.Second, "alice", "img1", nil, 3},
				{"still stale near the end", 58 * time.Minute, "alice", "img1", nil, 4},
				{"nothing cached is still unavailable", 0, "alice", "img2", ErrUnavailable, 5},
				{"past stale", 30 * time.Second, "alice", "img1", ErrUnavailable, 6},
			})
			fail(false)
			runSteps(t, o, clk, calls, []step{
				{"recovered", time.Minute, "alice", "img1", nil, 7},
			})
		})
	}
}

func TestOwnerNotFoundIsNotServedStale(t *testing.T) {
	src := newFakeMeta()
	clk := newClock()
	o, err := NewOwner(OwnerConfig{Field: "owner", Source: src, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, o, clk, src.calls.Load, []step{
		{"missing", 0, "alice", "ghost", ErrForbidden, 1},
		{"owned", 0, "alice", "img1", nil, 2},
	})
	// img1 is deleted: the refresh after TTL says so, and that answer
	// replaces the owner that would otherwise be served stale.
	src.set(func() { delete(src.owners, "img1") })
	runSteps(t, o, clk, src.calls.Load, []step{
		{"deleted", 6 * time.Minute, "alice", "img1", ErrForbidden, 3},
	})
	src.set(func() { src.err = errors.New("status 500") })
	runSteps(t, o, clk, src.calls.Load, []step{
		{"missing, failing", 31 * time.Second, "alice", "ghost", ErrUnavailable, 4},
		{"deleted, failing", 0, "alice", "img1", ErrUnavailable, 5},
	})
}

func TestOwnerStaleDisabled(t *testing.T) {
	src := newFakeMeta()
	clk := newClock()
	o, err := NewOwner(OwnerConfig{Field: "owner", Source: src, Now: clk.Now, Stale: -1})
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, o, clk, src.calls.Load, []step{{"lookup", 0, "alice", "img1", nil, 1}})
	src.set(func() { src.err = errors.New("status 500") })
	runSteps(t, o, clk, src.calls.Load, []step{{"after TTL", 5 * time.Minute, "alice", "img1", ErrUnavailable, 2}})
}

// rateLimitedAPI is a loopback Images API that owns img1 to alice and,
// while limited, answers every call 429 with Retry-After: 2.
type rateLimitedAPI struct {
	*httptest.Server
	limited atomic.Bool
}

func newRateLimitedAPI(t *testing.T) *rateLimitedAPI {
	a := &rateLimitedAPI{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if a.limited.Load() {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"success":false,"errors":[{"code":971,"message":"Please wait and consider throttling your request speed"}],"messages":[],"result":null}`)
			return
		}
		if r.URL.Path != "/accounts/acct/images/v1/img1" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`)
			return
		}
		_, _ = io.WriteString(w, `{"success":true,"errors":[],"messages":[],"result":{"id":"img1","meta":{"owner":"alice"}}}`)
	}))
	t.Cleanup(a.Close)
	return a
}
