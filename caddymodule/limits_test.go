package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

const testAccountID = "0123456789abcdef0123456789abcdef"

// cfAPI stands in for the Cloudflare Images API on 127.0.0.1: image
// details with an owner in the metadata, direct uploads, and switchable
// failure modes. It counts every call it receives.
type cfAPI struct {
	srv *httptest.Server

	mu     sync.Mutex
	owners map[string]string // image id → meta.owner
	calls  map[string]int    // image id, or "direct_upload" → calls
	mode   apiMode
}

type apiMode int

const (
	apiUp      apiMode = iota
	apiLimited         // 429 with Retry-After: 30
	apiDown            // 500 with an error envelope
)

func newCFAPI(t testing.TB, owners map[string]string) *cfAPI {
	a := &cfAPI{owners: owners, calls: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *cfAPI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer api-token" {
		w.WriteHeader(403)
		return
	}
	base := "/accounts/" + testAccountID + "/images/"
	var key string
	switch {
	case r.Method == "GET" && strings.HasPrefix(r.URL.Path, base+"v1/"):
		key = strings.TrimPrefix(r.URL.Path, base+"v1/")
	case r.Method == "POST" && r.URL.Path == base+"v2/direct_upload":
		key = "direct_upload"
	default:
		w.WriteHeader(404)
		return
	}
	a.mu.Lock()
	a.calls[key]++
	n, mode, owner, found := a.calls[key], a.mode, "", false
	if key != "direct_upload" {
		owner, found = a.owners[key]
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case mode == apiLimited:
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(429)
	case mode == apiDown:
		w.WriteHeader(500)
		_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":10000,"message":"internal error"}],"messages":[],"result":null}`))
	case key == "direct_upload":
		_, _ = w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":{"id":"up-` + strconv.Itoa(n) + `","uploadURL":"http://127.0.0.1:1/up"}}`))
	case !found:
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`))
	default:
		meta, _ := json.Marshal(map[string]string{"owner": owner})
		_, _ = w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":{"id":"` + key + `","meta":` + string(meta) + `}}`))
	}
}

func (a *cfAPI) setMode(m apiMode) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.mode = m
}

// count returns the calls made for key: an image id or "direct_upload".
func (a *cfAPI) count(key string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[key]
}

// total returns every call made.
func (a *cfAPI) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.calls {
		n += c
	}
	return n
}

// caddyfileHandler reads `cf_images { <body> }` as the Caddyfile adapter
// would, round-trips it through JSON as Caddy does, and provisions it.
func caddyfileHandler(t testing.TB, body string) (*Handler, error) {
	t.Helper()
	var parsed Handler
	if err := parsed.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cf_images {\n" + body + "\n}")); err != nil {
		return nil, err
	}
	js, err := json.Marshal(&parsed)
	if err != nil {
		t.Fatal(err)
	}
	h := new(Handler)
	if err := json.Unmarshal(js, h); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := newContext(t)
	t.Cleanup(cancel)
	t.Cleanup(func() { _ = h.Cleanup() })
	return h, h.Provision(ctx)
}

// apiHandler provisions a gateway whose callers carry an HS256 JWT in the
// `session` cookie or a bearer token, talking to api, with extra lines.
func apiHandler(t testing.TB, api *cfAPI, extra string) *Handler {
	t.Helper()
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	t.Setenv("TEST_API_TOKEN", "api-token")
	h, err := caddyfileHandler(t, `
		account_hash AccHash_x1
		signing_key  `+testKey+`
		variants     public thumbnail
		session jwt {
			cookie session
			header Authorization
			secret {env.TEST_JWT_SECRET}
		}
		account_id `+testAccountID+`
		api_token {env.TEST_API_TOKEN}
		api_url `+api.srv.URL+`
		`+extra)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return h
}

// as returns the cookie of a session for sub.
func as(t *testing.T, sub string) map[string]string {
	return map[string]string{"Cookie": "session=" + mint(t, sub, time.Hour, nil, time.Now())}
}

// wantStatus serves one request and checks its status, and that a 429 or
// 503 says when to come back.
func wantStatus(t *testing.T, h *Handler, method, target string, hdr map[string]string, want int) *httptest.ResponseRecorder {
	t.Helper()
	w, _ := serve(t, h, method, target, hdr)
	if w.Code != want {
		t.Fatalf("%s %s: status %d, want %d", method, target, w.Code, want)
	}
	if ra := w.Header().Get("Retry-After"); (want == 429 || want == 503) != (ra != "") {
		t.Fatalf("%s %s: status %d with Retry-After %q", method, target, w.Code, ra)
	}
	return w
}

// TestLookupLimit: a caller cycling through made-up ids spends its lookup
// budget, then gets 429 without reaching the API, while answers already
// cached keep coming, for it and for others.
func TestLookupLimit(t *testing.T) {
	api := newCFAPI(t, map[string]string{"b1": "bob"})
	h := apiHandler(t, api, "authorize owner\nlookup_limit 5 1m")
	alice, bob := as(t, "alice"), as(t, "bob")

	wantStatus(t, h, "GET", "/img/b1/public", bob, 302)
	for i := range 5 {
		wantStatus(t, h, "GET", "/img/fresh-"+strconv.Itoa(i)+"/public", alice, 403)
	}
	calls := api.total()
	if calls != 6 {
		t.Fatalf("the API saw %d calls, want 6", calls)
	}
	w := wantStatus(t, h, "GET", "/img/fresh-5/public", alice, 429)
	if !retryAfterWithin(w.Header().Get("Retry-After"), "12") { // one lookup refills every 60s/5
		t.Errorf("Retry-After %q, want at most 12", w.Header().Get("Retry-After"))
	}
	wantStatus(t, h, "GET", "/img/fresh-6/thumbnail", alice, 429)
	wantStatus(t, h, "GET", "/img/fresh-0/public", alice, 403) // cached: costs nothing
	wantStatus(t, h, "GET", "/img/b1/public", bob, 302)
	wantStatus(t, h, "GET", "/img/b1/thumbnail", alice, 403)
	if got := api.total(); got != calls {
		t.Fatalf("the API saw %d calls after alice's budget was spent, want %d", got, calls)
	}
}

// TestLookupLimitOff: `lookup_limit 0` lets a caller look up more than the
// default budget of 120 per minute.
func TestLookupLimitOff(t *testing.T) {
	api := newCFAPI(t, nil)
	h := apiHandler(t, api, "authorize owner\nlookup_limit 0")
	alice := as(t, "alice")
	for i := range 130 {
		wantStatus(t, h, "GET", "/img/fresh-"+strconv.Itoa(i)+"/public", alice, 403)
	}
	if got := api.total(); got != 130 {
		t.Fatalf("the API saw %d calls, want 130", got)
	}
}

// TestUploadLimit: the third upload URL in an hour is refused with 429 and
// never requested from the API; `upload_limit 0` turns the limit off.
func TestUploadLimit(t *testing.T) {
	api := newCFAPI(t, nil)
	h := apiHandler(t, api, "upload_path /img/upload\nupload_limit 2 1h")
	alice := as(t, "alice")
	wantStatus(t, h, "POST", "/img/upload", alice, 200)
	wantStatus(t, h, "POST", "/img/upload", alice, 200)
	w := wantStatus(t, h, "POST", "/img/upload", alice, 429)
	if !retryAfterWithin(w.Header().Get("Retry-After"), "1800") || w.Header().Get("Retry-After") == "1" {
		t.Errorf("Retry-After %q, want about 1800 (one upload refills every 30m)", w.Header().Get("Retry-After"))
	}
	wantStatus(t, h, "POST", "/img/upload", as(t, "bob"), 200)
	if got := api.count("direct_upload"); got != 3 {
		t.Fatalf("the API saw %d direct uploads, want 3 (two of alice's, one of bob's)", got)
	}

	api = newCFAPI(t, nil)
	h = apiHandler(t, api, "upload_path /img/upload\nupload_limit 0")
	for range 25 { // more than the default 20 per hour
		wantStatus(t, h, "POST", "/img/upload", alice, 200)
	}
}

// TestAPIRateLimit: once the API answers 429 with Retry-After, lookups for
// uncached images fail with 503 and Retry-After without calling it until
// the pause is over, while cached owners keep their images.
func TestAPIRateLimit(t *testing.T) {
	api := newCFAPI(t, map[string]string{"b1": "bob", "a1": "alice"})
	h := apiHandler(t, api, "authorize owner\nlookup_limit 0")
	alice, bob := as(t, "alice"), as(t, "bob")
	limited := testutil.ToFloat64(metrics.apiRateLimited)

	wantStatus(t, h, "GET", "/img/b1/public", bob, 302)
	api.setMode(apiLimited)
	wantStatus(t, h, "GET", "/img/a1/public", alice, 503) // the call that gets the 429
	if api.count("a1") != 1 {
		t.Fatalf("the API saw %d calls for a1, want 1", api.count("a1"))
	}
	calls := api.total()
	wantStatus(t, h, "GET", "/img/fresh/public", alice, 503)
	wantStatus(t, h, "GET", "/img/a1/thumbnail", alice, 503)
	if got := api.total(); got != calls {
		t.Fatalf("the API was called %d times during its Retry-After", got-calls)
	}
	wantStatus(t, h, "GET", "/img/b1/thumbnail", bob, 302)
	if got := testutil.ToFloat64(metrics.apiRateLimited) - limited; got != 3 {
		t.Errorf("imagegate_api_rate_limited_total grew by %v, want 3 (one 429, two calls held back)", got)
	}
}

// TestAPIOutageServesStale: when the API fails after metadata_ttl, an
// owner already known keeps seeing the image (stale-if-error), and an
// image never looked up answers 503.
func TestAPIOutageServesStale(t *testing.T) {
	api := newCFAPI(t, map[string]string{"b1": "bob"})
	h := apiHandler(t, api, "authorize owner\nmetadata_ttl 1s\nlookup_limit 0")
	bob := as(t, "bob")
	wantStatus(t, h, "GET", "/img/b1/public", bob, 302)
	api.setMode(apiDown)

	// The owner policy takes no clock from the handler, so wait for the
	// real 1s TTL: poll until the expired entry makes the gateway ask the
	// failing API again. Every answer on the way must still be 302.
	deadline := time.Now().Add(10 * time.Second)
	for api.count("b1") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the gateway never looked b1 up again after metadata_ttl")
		}
		wantStatus(t, h, "GET", "/img/b1/public", bob, 302)
		time.Sleep(20 * time.Millisecond)
	}
	wantStatus(t, h, "GET", "/img/b1/public", bob, 302)
	if got := api.count("b1"); got != 2 {
		t.Errorf("the API saw %d calls for b1; a failed refresh should hold the stale owner for a while", got)
	}
	wantStatus(t, h, "GET", "/img/b1/public", as(t, "mallory"), 403)
	wantStatus(t, h, "GET", "/img/fresh/public", bob, 503)
}

// TestAPIRateLimitRetryAfter: while the API's Retry-After holds calls
// back, the image path and the upload path tell the caller the same wait:
// the API's, not a default, so clients do not come back while every
// lookup is still refused.
func TestAPIRateLimitRetryAfter(t *testing.T) {
	api := newCFAPI(t, nil)
	h := apiHandler(t, api, "authorize owner\nlookup_limit 0\nupload_path /img/upload")
	alice := as(t, "alice")
	api.setMode(apiLimited)
	image := wantStatus(t, h, "GET", "/img/fresh-1/public", alice, 503)
	upload := wantStatus(t, h, "POST", "/img/upload", alice, 503)
	later := wantStatus(t, h, "GET", "/img/fresh-2/public", alice, 503)
	for name, w := range map[string]*httptest.ResponseRecorder{"image": image, "upload": upload, "image during the pause": later} {
		if n, _ := strconv.Atoi(w.Header().Get("Retry-After")); n < 29 || n > 30 {
			t.Errorf("%s: Retry-After %q, want the API's 30", name, w.Header().Get("Retry-After"))
		}
	}
}
