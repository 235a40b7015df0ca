package session

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/cfapi"
)

func TestClaim(t *testing.T) {
	img := Image{ID: "5f0e-c1", Variant: "thumb"}
	tests := []struct {
		name, claim, template string
		value                 any
		ok                    bool
	}{
		{"id in array", "images", "{id}", []any{"other", "5f0e-c1"}, true},
		{"id in []string", "images", "{id}", []string{"5f0e-c1"}, true},
		{"id as string", "images", "{id}", "5f0e-c1", true},
		{"id absent", "images", "{id}", []any{"other"}, false},
		{"id is not a prefix match", "images", "{id}", []any{"5f0e-c1-x", "5f0e"}, false},
		{"claim missing", "images", "{id}", nil, false},
		{"claim wrong type", "images", "{id}", 42.0, false},
		{"array of non-strings", "images", "{id}", []any{1.0, true}, false},
		{"scope", "scopes", "img:{id}", []any{"profile", "img:5f0e-c1"}, true},
		{"scope for another image", "scopes", "img:{id}", []any{"img:9a2b"}, false},
		{"space-separated string is one value", "scopes", "img:{id}", "profile img:5f0e-c1", false},
		{"id and variant", "grants", "{id}/{variant}", []any{"5f0e-c1/thumb"}, true},
		{"wrong variant", "grants", "{id}/{variant}", []any{"5f0e-c1/public"}, false},
		{"variant only", "variants", "{variant}", []any{"thumb"}, true},
		{"prefix rule", "scopes", "img:{id}:*", []any{"img:5f0e-c1:read"}, true},
		{"prefix rule needs the prefix", "scopes", "img:{id}:*", []any{"img:5f0e-c1"}, false},
		{"static prefix", "folders", "users/alice/*", []any{"users/alice/2024"}, true},
		{"static prefix other user", "folders", "users/alice/*", []any{"users/alicex", "users/bob/1"}, false},
		{"bare star needs any string", "images", "*", []any{"x"}, true},
		{"bare star without claim", "images", "*", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClaim(tc.claim, tc.template)
			if err != nil {
				t.Fatal(err)
			}
			id := Identity{Subject: "alice", Claims: map[string]any{}}
			if tc.value != nil {
				id.Claims[tc.claim] = tc.value
			}
			err = c.Allow(context.Background(), id, img)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrForbidden)) {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	// Identities without claims never match.
	c, _ := NewClaim("images", "*")
	if err := c.Allow(context.Background(), Identity{Subject: "alice"}, img); !errors.Is(err, ErrForbidden) {
		t.Fatalf("no claims: %v", err)
	}
}

func TestNewClaimErrors(t *testing.T) {
	for _, tc := range [][2]string{
		{"", "{id}"},
		{"images", ""},
		{"images", "{uid}"},
		{"images", "{id"},
		{"images", "a*b"},
		{"images", "**"},
	} {
		if _, err := NewClaim(tc[0], tc[1]); err == nil {
			t.Errorf("NewClaim(%q, %q): want error", tc[0], tc[1])
		}
	}
}

func TestAny(t *testing.T) {
	if err := (Any{}).Allow(context.Background(), Identity{}, Image{ID: "x"}); err != nil {
		t.Fatal(err)
	}
}

func TestTrustedAndNone(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	tr := Trusted{User: func(r *http.Request) string { return r.Header.Get("X-Test-User") }}
	if _, _, err := tr.Authenticate(r, Image{}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("no user: %v", err)
	}
	if _, _, err := (Trusted{}).Authenticate(r, Image{}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("nil func: %v", err)
	}
	r.Header.Set("X-Test-User", "dave")
	if id, _, err := tr.Authenticate(r, Image{}); err != nil || id.Subject != "dave" {
		t.Fatalf("user: %+v %v", id, err)
	}
	if id, _, err := (None{}).Authenticate(r, Image{}); err != nil || id.Subject != "" {
		t.Fatalf("none: %+v %v", id, err)
	}
	for _, m := range []struct {
		m    interface{ Method() string }
		want string
	}{{tr, "caddy_auth"}, {None{}, "none"}, {&JWT{}, "jwt"}, {&Introspect{}, "introspect"}} {
		if m.m.Method() != m.want {
			t.Errorf("Method() = %q, want %q", m.m.Method(), m.want)
		}
	}
}

// imagesAPI is a loopback stub of GET /accounts/{acct}/images/v1/{id}.
type imagesAPI struct {
	*httptest.Server
	calls   atomic.Int64
	gate    chan struct{} // if non-nil, requests wait for it
	mu      sync.Mutex
	owners  map[string]string
	failing bool
}

func newImagesAPI(t *testing.T) *imagesAPI {
	a := &imagesAPI{owners: map[string]string{"img1": "alice", "img2": "bob"}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		if a.gate != nil {
			select {
			case <-a.gate:
			case <-r.Context().Done(): // the client gave up; don't block Close
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`))
			return
		}
		id, ok := strings.CutPrefix(r.URL.Path, "/client/v4/accounts/acct/images/v1/")
		a.mu.Lock()
		owner, found := a.owners[id]
		failing := a.failing
		a.mu.Unlock()
		switch {
		case failing:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":5500,"message":"internal"}],"messages":[],"result":null}`))
		case !ok || !found:
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`))
		default:
			res := map[string]any{"id": id, "meta": map[string]any{"owner": owner}, "requireSignedURLs": true}
			_ = json.NewEncoder(w).Encode(map[string]any{"success": true, "errors": []any{}, "messages": []any{}, "result": res})
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *imagesAPI) set(f func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f()
}

func newTestOwner(t *testing.T, api *imagesAPI, clk *fakeClock, token string) *Owner {
	t.Helper()
	client := &cfapi.Client{BaseURL: api.URL + "/client/v4", AccountID: "acct", APIToken: token}
	o, err := NewOwner(OwnerConfig{Field: "owner", Source: CloudflareMetadata{Client: client}, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOwner(t *testing.T) {
	api := newImagesAPI(t)
	clk := newClock()
	o := newTestOwner(t, api, clk, "tok")
	ctx := context.Background()
	steps := []struct {
		name    string
		advance time.Duration
		sub, id string
		want    error
		calls   int64
	}{
		{"owner", 0, "alice", "img1", nil, 1},
		{"owner, cached", 0, "alice", "img1", nil, 1},
		{"not the owner, cached", 0, "bob", "img1", ErrForbidden, 1},
		{"other image", 0, "bob", "img2", nil, 2},
		{"anonymous", 0, "", "img2", ErrForbidden, 2},
		{"missing image is forbidden", 0, "alice", "ghost", ErrForbidden, 3},
		{"missing image, cached", 10 * time.Second, "alice", "ghost", ErrForbidden, 3},
		{"missing image, expired", 21 * time.Second, "alice", "ghost", ErrForbidden, 4},
		{"owner after 5m refetches", 5 * time.Minute, "alice", "img1", nil, 5},
	}
	for _, s := range steps {
		clk.Add(s.advance)
		err := o.Allow(ctx, Identity{Subject: s.sub}, Image{ID: s.id, Variant: "public"})
		if !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.want)
		}
		if got := api.calls.Load(); got != s.calls {
			t.Fatalf("%s: calls = %d, want %d", s.name, got, s.calls)
		}
	}
	// Ownership changes are seen after the TTL.
	api.set(func() { api.owners["img1"] = "bob" })
	clk.Add(5 * time.Minute)
	if err := o.Allow(ctx, Identity{Subject: "bob"}, Image{ID: "img1"}); err != nil {
		t.Fatalf("new owner: %v", err)
	}
}

func TestOwnerFailsClosed(t *testing.T) {
	api := newImagesAPI(t)
	clk := newClock()
	ctx := context.Background()
	api.set(func() { api.failing = true })
	o := newTestOwner(t, api, clk, "tok")
	if err := o.Allow(ctx, Identity{Subject: "alice"}, Image{ID: "img1"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("API 500: %v", err)
	}
	// Failures are not cached.
	api.set(func() { api.failing = false })
	if err := o.Allow(ctx, Identity{Subject: "alice"}, Image{ID: "img1"}); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	bad := newTestOwner(t, api, clk, "wrong-token")
	err := bad.Allow(ctx, Identity{Subject: "alice"}, Image{ID: "img1"})
	if !errors.Is(err, ErrUnavailable) || strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("bad token: %v", err)
	}
	api.Close()
	down := newTestOwner(t, api, clk, "tok")
	if err := down.Allow(ctx, Identity{Subject: "alice"}, Image{ID: "img1"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("API down: %v", err)
	}
}

func TestOwnerSingleflight(t *testing.T) {
	api := newImagesAPI(t)
	api.gate = make(chan struct{})
	clk := newClock()
	o := newTestOwner(t, api, clk, "tok")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- o.Allow(context.Background(), Identity{Subject: "alice"}, Image{ID: "img1"}) })
	}
	waitFor(t, "all callers to miss", func() bool { return o.misses.Load() == n })
	close(api.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := api.calls.Load(); got != 1 {
		t.Fatalf("calls = %d, want 1", got)
	}
}

func TestNewOwnerErrors(t *testing.T) {
	src := CloudflareMetadata{Client: &cfapi.Client{}}
	for _, cfg := range []OwnerConfig{{Source: src}, {Field: "owner"}} {
		if _, err := NewOwner(cfg); err == nil {
			t.Errorf("%+v: want error", cfg)
		}
	}
}
