package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sessionApp is an application on loopback that judges sessions by the
// "sid" cookie, recording what it was sent.
type sessionApp struct {
	*httptest.Server
	calls   atomic.Int64
	release chan struct{} // closed by open to let "block" sessions answer
	once    sync.Once
	mu      sync.Mutex
	seen    []http.Header
}

func newSessionApp(t *testing.T) *sessionApp {
	a := &sessionApp{release: make(chan struct{})}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		a.open()
		a.Close()
	})
	return a
}

func (a *sessionApp) open() { a.once.Do(func() { close(a.release) }) }

func (a *sessionApp) serve(w http.ResponseWriter, r *http.Request) {
	a.calls.Add(1)
	a.mu.Lock()
	a.seen = append(a.seen, r.Header.Clone())
	a.mu.Unlock()
	sid := ""
	if c, err := r.Cookie("sid"); err == nil {
		sid = c.Value
	}
	if sid == "" {
		sid = strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	}
	switch sid {
	case "alice", "bob":
		w.Header().Set("X-User-Id", sid)
	case "alice-short":
		w.Header().Set("X-User-Id", "alice")
		w.Header().Set("Cache-Control", "private, max-age=2")
	case "alice-nostore":
		w.Header().Set("X-User-Id", "alice")
		w.Header().Set("Cache-Control", "no-store")
	case "alice-long":
		w.Header().Set("X-User-Id", "alice")
		w.Header().Set("Cache-Control", "max-age=300")
	case "per-image":
		if r.Header.Get("X-Image-Id") != "img-a" || r.Header.Get("X-Image-Variant") != "thumb" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("X-User-Id", "carol")
	case "nope":
		w.WriteHeader(http.StatusForbidden)
	case "err":
		w.WriteHeader(http.StatusInternalServerError)
	case "redirect":
		http.Redirect(w, r, "/login", http.StatusFound)
	case "block":
		select {
		case <-a.release:
			w.Header().Set("X-User-Id", "blocked")
		case <-r.Context().Done():
		}
	default:
		w.WriteHeader(http.StatusUnauthorized)
	}
}

func (a *sessionApp) lastSeen() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.seen[len(a.seen)-1]
}

func withSID(sid string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/img/x/public", nil)
	if sid != "" {
		r.AddCookie(&http.Cookie{Name: "sid", Value: sid})
	}
	r.AddCookie(&http.Cookie{Name: "tracking", Value: "do-not-forward"})
	return r
}

func newTestIntrospect(t *testing.T, cfg IntrospectConfig) *Introspect {
	t.Helper()
	if cfg.Cookies == nil && cfg.Headers == nil {
		cfg.Cookies = []string{"sid"}
	}
	i, err := NewIntrospect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

func TestIntrospectAnswers(t *testing.T) {
	app := newSessionApp(t)
	tests := []struct {
		name string
		sid  string
		want error
		sub  string
	}{
		{"allows", "alice", nil, "alice"},
		{"401", "mallory", ErrUnauthenticated, ""},
		{"403", "nope", ErrForbidden, ""},
		{"500", "err", ErrUnavailable, ""},
		{"redirect is not followed", "redirect", ErrUnavailable, ""},
		{"no credentials, no call", "", ErrUnauthenticated, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, CacheSize: -1})
			before := app.calls.Load()
			id, out, err := i.Authenticate(withSID(tc.sid), Image{ID: "img-a", Variant: "thumb"})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if id.Subject != tc.sub || out.CacheHit {
				t.Fatalf("identity %+v outcome %+v", id, out)
			}
			calls := app.calls.Load() - before
			if tc.sid == "" && calls != 0 || tc.sid != "" && calls != 1 {
				t.Fatalf("calls = %d", calls)
			}
			if err != nil && strings.Contains(err.Error(), tc.sid) && tc.sid != "" && tc.sid != "err" {
				t.Fatalf("error names the session: %v", err)
			}
		})
	}
}

func TestIntrospectForwardsOnlyConfigured(t *testing.T) {
	app := newSessionApp(t)
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Cookies: []string{"sid"}, Headers: []string{"x-tenant"}})
	r := withSID("alice")
	r.Header.Set("Authorization", "Bearer secret-token")
	r.Header.Set("X-Tenant", "t1")
	if _, _, err := i.Authenticate(r, Image{ID: "img-a", Variant: "thumb"}); err != nil {
		t.Fatal(err)
	}
	h := app.lastSeen()
	if got := h.Get("Cookie"); got != "sid=alice" {
		t.Errorf("forwarded Cookie = %q, want only sid", got)
	}
	if h.Get("Authorization") != "" || h.Get("X-Image-Id") != "" {
		t.Errorf("forwarded unconfigured headers: %v", h)
	}
	if h.Get("X-Tenant") != "t1" {
		t.Errorf("X-Tenant not forwarded")
	}
}

func TestIntrospectHeaderCredential(t *testing.T) {
	app := newSessionApp(t)
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Headers: []string{"Authorization"}})
	if i.Challenge() != "Bearer" {
		t.Errorf("Challenge() = %q", i.Challenge())
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("Authorization", "Bearer bob")
	id, _, err := i.Authenticate(r, Image{})
	if err != nil || id.Subject != "bob" {
		t.Fatalf("got %+v, %v", id, err)
	}
}

func TestIntrospectPerImage(t *testing.T) {
	app := newSessionApp(t)
	clk := newClock()
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, PerImage: true, Now: clk.Now})
	steps := []struct {
		img   Image
		want  error
		calls int64
	}{
		{Image{"img-a", "thumb"}, nil, 1},
		{Image{"img-b", "thumb"}, ErrForbidden, 2},
		{Image{"img-a", "public"}, ErrForbidden, 3},
		{Image{"img-a", "thumb"}, nil, 3}, // cached per image
		{Image{"img-b", "thumb"}, ErrForbidden, 3},
	}
	for n, s := range steps {
		id, _, err := i.Authenticate(withSID("per-image"), s.img)
		if !errors.Is(err, s.want) || (s.want == nil && (err != nil || id.Subject != "carol")) {
			t.Fatalf("step %d: %+v, %v; want %v", n, id, err, s.want)
		}
		if got := app.calls.Load(); got != s.calls {
			t.Fatalf("step %d: calls = %d, want %d", n, got, s.calls)
		}
	}
}

func TestIntrospectCacheIsolation(t *testing.T) {
	app := newSessionApp(t)
	clk := newClock()
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Now: clk.Now})
	img := Image{ID: "img-a", Variant: "thumb"}
	for round := range 2 { // the second round is served from the cache
		for _, c := range []struct {
			sid  string
			sub  string
			want error
		}{
			{"alice", "alice", nil},
			{"bob", "bob", nil},
			{"mallory", "", ErrUnauthenticated},
			{"nope", "", ErrForbidden},
		} {
			id, out, err := i.Authenticate(withSID(c.sid), img)
			if !errors.Is(err, c.want) || (c.want == nil && err != nil) || id.Subject != c.sub {
				t.Fatalf("round %d, %s: %+v, %v", round, c.sid, id, err)
			}
			if out.CacheHit != (round == 1) {
				t.Fatalf("round %d, %s: CacheHit = %v", round, c.sid, out.CacheHit)
			}
		}
	}
	if got := app.calls.Load(); got != 4 {
		t.Fatalf("calls = %d, want 4", got)
	}
	// Unforwarded cookies are not part of the key, forwarded ones are.
	r := withSID("alice")
	r.AddCookie(&http.Cookie{Name: "other", Value: "x"})
	if _, out, err := i.Authenticate(r, img); err != nil || !out.CacheHit {
		t.Fatalf("extra unforwarded cookie: hit=%v err=%v", out.CacheHit, err)
	}
}

// TestIntrospectKeyIsWhatIsForwarded checks that the decision cache is
// keyed on the bytes sent to the application: sid="alice" and sid=alice
// parse to the same value but are different cookies to the application,
// so each gets its own call, while requests that forward the same bytes
// share one.
func TestIntrospectKeyIsWhatIsForwarded(t *testing.T) {
	app := newSessionApp(t)
	clk := newClock()
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Cookies: []string{"sid", "csrftoken"}, Now: clk.Now})
	img := Image{ID: "img-a", Variant: "thumb"}
	tests := []struct {
		cookie    string // the request's Cookie header
		forwarded string // what the application must see
		hit       bool
	}{
		{`sid="alice"`, `sid="alice"`, false},
		{`sid=alice`, `sid=alice`, false},
		{`sid="alice"; other=1`, `sid="alice"`, true},
		{`other=2; sid=alice`, `sid=alice`, true},
		{`csrftoken=t; sid=alice`, `sid=alice; csrftoken=t`, false},
		{`sid=alice;csrftoken=t`, `sid=alice; csrftoken=t`, true},
		{`sid=alice; csrftoken="t"`, `sid=alice; csrftoken="t"`, false},
	}
	for n, tc := range tests {
		r := httptest.NewRequest(http.MethodGet, "/img/img-a/thumb", nil)
		r.Header.Set("Cookie", tc.cookie)
		before := app.calls.Load()
		id, out, err := i.Authenticate(r, img)
		if err != nil || id.Subject != "alice" {
			t.Fatalf("%d %s: %+v, %v", n, tc.cookie, id, err)
		}
		if out.CacheHit != tc.hit {
			t.Fatalf("%d %s: CacheHit = %v, want %v", n, tc.cookie, out.CacheHit, tc.hit)
		}
		if tc.hit {
			if app.calls.Load() != before {
				t.Fatalf("%d %s: a cache hit called the application", n, tc.cookie)
			}
			continue
		}
		if got := app.lastSeen().Values("Cookie"); len(got) != 1 || got[0] != tc.forwarded {
			t.Fatalf("%d %s: forwarded Cookie %q, want %q", n, tc.cookie, got, tc.forwarded)
		}
	}
	if got := app.calls.Load(); got != 4 {
		t.Fatalf("calls = %d, want 4", got)
	}
}

func TestIntrospectTTL(t *testing.T) {
	app := newSessionApp(t)
	tests := []struct {
		name  string
		sid   string
		steps []time.Duration // clock advance before each request
		calls int64           // total calls to the app
	}{
		{"allow cached 30s", "alice", []time.Duration{0, 29 * time.Second, 2 * time.Second}, 2},
		{"deny cached 5s", "mallory", []time.Duration{0, 4 * time.Second, 2 * time.Second}, 2},
		{"max-age shortens", "alice-short", []time.Duration{0, time.Second, 2 * time.Second}, 2},
		{"max-age lengthens", "alice-long", []time.Duration{0, time.Minute, 3 * time.Minute, 61 * time.Second}, 2},
		{"no-store", "alice-nostore", []time.Duration{0, 0, 0}, 3},
		{"errors are not cached", "err", []time.Duration{0, 0}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Now: clk.Now})
			before := app.calls.Load()
			for _, d := range tc.steps {
				clk.Add(d)
				_, _, _ = i.Authenticate(withSID(tc.sid), Image{})
			}
			if got := app.calls.Load() - before; got != tc.calls {
				t.Fatalf("calls = %d, want %d", got, tc.calls)
			}
		})
	}
}

func TestIntrospectSingleflight(t *testing.T) {
	app := newSessionApp(t)
	// Every caller reads the clock once to check the cache before it joins
	// the shared call, and the one making the call reads it once more to
	// check again: n+1 reads mean every caller has missed.
	var reads atomic.Int64
	clk := newClock()
	now := func() time.Time { reads.Add(1); return clk.Now() }
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Timeout: 10 * time.Second, Now: now})
	const n = 16
	var wg sync.WaitGroup
	results := make(chan string, n)
	for range n {
		wg.Go(func() {
			id, _, err := i.Authenticate(withSID("block"), Image{})
			if err != nil {
				results <- err.Error()
				return
			}
			results <- id.Subject
		})
	}
	// Let the app answer only once every caller has missed the cache.
	waitFor(t, "all callers to miss", func() bool { return reads.Load() >= n+1 && app.calls.Load() >= 1 })
	app.open()
	wg.Wait()
	close(results)
	for r := range results {
		if r != "blocked" {
			t.Fatalf("result %q", r)
		}
	}
	if got := app.calls.Load(); got != 1 {
		t.Fatalf("calls = %d, want 1", got)
	}
}

func TestIntrospectHangs(t *testing.T) {
	app := newSessionApp(t)
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL, Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, _, err := i.Authenticate(withSID("block"), Image{})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestIntrospectAppDown(t *testing.T) {
	i := newTestIntrospect(t, IntrospectConfig{URL: closedURL(t) + "/check"})
	_, _, err := i.Authenticate(withSID("alice"), Image{})
	if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "alice") {
		t.Fatalf("err = %v", err)
	}
}

func TestIntrospectCallerCancel(t *testing.T) {
	// The first caller's cancellation must not fail the shared call.
	app := newSessionApp(t)
	app.open()
	i := newTestIntrospect(t, IntrospectConfig{URL: app.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := withSID("alice").WithContext(ctx)
	if id, _, err := i.Authenticate(r, Image{}); err != nil || id.Subject != "alice" {
		t.Fatalf("got %+v, %v", id, err)
	}
}

func TestNewIntrospectConfig(t *testing.T) {
	for _, cfg := range []IntrospectConfig{
		{URL: "", Cookies: []string{"sid"}},
		{URL: "localhost:8000/check", Cookies: []string{"sid"}},
		{URL: "http://127.0.0.1/check"},
	} {
		if _, err := NewIntrospect(cfg); err == nil {
			t.Errorf("%+v: want error", cfg)
		}
	}
}

func TestCacheControlTTL(t *testing.T) {
	tests := []struct {
		in  []string
		ttl time.Duration
		ok  bool
	}{
		{nil, 0, false},
		{[]string{"private"}, 0, false},
		{[]string{"private, max-age=60"}, time.Minute, true},
		{[]string{`max-age="10"`}, 10 * time.Second, true},
		{[]string{"max-age=0"}, 0, true},
		{[]string{"max-age=60", "no-store"}, 0, true},
		{[]string{"No-Cache"}, 0, true},
		{[]string{"max-age=-1"}, 0, false},
		{[]string{"max-age=abc"}, 0, false},
	}
	for _, tc := range tests {
		ttl, ok := cacheControlTTL(tc.in)
		if ttl != tc.ttl || ok != tc.ok {
			t.Errorf("%q: %v %v, want %v %v", tc.in, ttl, ok, tc.ttl, tc.ok)
		}
	}
}
