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
		{"wildcard grant for the image's variants", "scopes", "img:{id}:{variant}", []any{"img:5f0e-c1:*"}, true},
		{"wildcard grant for another image", "scopes", "img:{id}:{variant}", []any{"img:5f0e-c2:*"}, false},
		{"star alone covers everything", "images", "{id}", []any{"*"}, true},
		{"empty grant covers nothing", "images", "{id}", []any{""}, false},
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
	// Identities without claims never match, even with a "*" grant
	// elsewhere.
	c, _ := NewClaim("images", "{id}")
	if err := c.Allow(context.Background(), Identity{Subject: "alice"}, img); !errors.Is(err, ErrForbidden) {
		t.Fatalf("no claims: %v", err)
	}
}

// TestClaimGrantDirection checks that the wildcard is the grant's, never
// the request's: a request cannot pick an image id that happens to be a
// prefix of a value the caller holds.
func TestClaimGrantDirection(t *testing.T) {
	tests := []struct {
		name, template, grant, id string
		ok                        bool
	}{
		{"request id is a prefix of an exact grant", "img:{id}", "img:team:42", "team", false},
		{"request id is a prefix of the grant's folder", "img:{id}", "img:team:42", "team:4", false},
		{"exact grant", "img:{id}", "img:team:42", "team:42", true},
		{"exact grant, longer id", "img:{id}", "img:team:42", "team:421", false},
		{"folder grant, file", "{id}", "users/alice/*", "users/alice/photo-123", true},
		{"folder grant, nested", "{id}", "users/alice/*", "users/alice/x/y", true},
		{"folder grant, the folder itself", "{id}", "users/alice/*", "users/alice", false},
		{"folder grant, the folder with slash", "{id}", "users/alice/*", "users/alice/", true},
		{"folder grant, another user", "{id}", "users/alice/*", "users/bob/1", false},
		{"folder grant, a longer name", "{id}", "users/alice/*", "users/alicex/1", false},
		{"folder grant, the parent", "{id}", "users/alice/*", "users", false},
		{"folder grant, a request id with a star", "{id}", "users/alice/*", "users/*", false},
		{"prefixed folder grant", "img:{id}", "img:users/alice/*", "users/alice/photo-123", true},
		{"prefixed folder grant, another user", "img:{id}", "img:users/alice/*", "users/bob/1", false},
		{"prefixed folder grant, the folder itself", "img:{id}", "img:users/alice/*", "users/alice", false},
		{"star alone, any id", "img:{id}", "*", "anything/at/all", true},
		{"star alone, empty id", "{id}", "*", "", true},
		{"star inside a grant is literal", "img:{id}", "img:*:42", "team:42", false},
		{"star inside a grant matches itself only", "img:{id}", "img:*:42", "*:42", true},
		{"empty grant, empty id", "{id}", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClaim("grants", tc.template)
			if err != nil {
				t.Fatal(err)
			}
			id := Identity{Subject: "alice", Claims: map[string]any{"grants": []any{tc.grant}}}
			err = c.Allow(context.Background(), id, Image{ID: tc.id, Variant: "public"})
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrForbidden)) {
				t.Fatalf("grant %q, image %q: err = %v, want ok=%v", tc.grant, tc.id, err, tc.ok)
			}
		})
	}
}

func TestNewClaimErrors(t *testing.T) {
	for _, tc := range []struct{ name, template, want string }{
		{"", "{id}", "empty claim name"},
		{"images", "", "empty template"},
		{"images", "{uid}", "unknown placeholder {uid}"},
		{"images", "{id", "unclosed {"},
		{"images", "*", "belongs in the granted claim value"},
		{"images", "{id}*", "belongs in the granted claim value"},
		{"images", "users/alice/*", "belongs in the granted claim value"},
		{"images", "a*b", "belongs in the granted claim value"},
	} {
		_, err := NewClaim(tc.name, tc.template)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewClaim(%q, %q) = %v, want an error containing %q", tc.name, tc.template, err, tc.want)
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
	lim := &countingLimiter{} // charged once per caller that misses the cache
	o.limiter = lim
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() { errs <- o.Allow(context.Background(), Identity{Subject: "alice"}, Image{ID: "img1"}) })
	}
	waitFor(t, "all callers to miss", func() bool { return lim.n.Load() == n })
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
