package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/signer"
)

// loopbackPort returns a loopback port that was free a moment ago.
func loopbackPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// runCaddy adapts a Caddyfile and runs it in this process, as `imagegate
// run` would: listeners, the admin endpoint, every app started. The config
// is stopped, and its admin endpoint closed, when the test ends.
func runCaddy(t *testing.T, src string) {
	t.Helper()
	// Nothing the run writes (autosave, storage) may land outside the test.
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Logf("adapter warning: line %d: %s", w.Line, w.Message)
	}
	if err := caddy.Load(out, true); err != nil {
		t.Fatalf("loading: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// A config without an admin endpoint closes the test's one.
		_ = caddy.Load([]byte(`{"admin":{"disabled":true}}`), true)
		_ = caddy.Stop()
	})
}

// liveHandlers returns the running config's cf_images handlers by prefix.
func liveHandlers(t *testing.T) map[string]*Handler {
	t.Helper()
	app := liveApp.Load()
	if app == nil {
		t.Fatal("no running config has the cf_images app")
	}
	hs := map[string]*Handler{}
	for _, h := range app.handlers.list(func(*Handler) bool { return true }) {
		hs[h.prefix] = h
	}
	return hs
}

// httpGet sends one request without following redirects.
func httpGet(t *testing.T, method, url string, hdr map[string]string, body string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

// appGlobal is the global options of the app tests: an admin endpoint on
// a free loopback port, and the `cf_images` app block with the given
// settings.
func appGlobal(admin, settings string) string {
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	auto_https off
	cf_images {
		%s
	}
}
`, admin, settings)
}

// appAccount is the app block's account: the test account of the API
// stand-in, secrets from the environment (set by setAppEnv).
func appAccount(apiURL, deliveryURL string) string {
	return fmt.Sprintf(`account_id    {env.TEST_CF_ACCOUNT_ID}
		api_token     {env.TEST_CF_API_TOKEN}
		account_hash  {env.TEST_CF_ACCOUNT_HASH}
		signing_key   {env.TEST_CF_IMAGES_KEY}
		delivery_url  %s
		api_url       %s
		api_max_in_flight 8`, deliveryURL, apiURL)
}

func setAppEnv(t *testing.T) {
	t.Setenv("TEST_CF_ACCOUNT_ID", testAccountID)
	t.Setenv("TEST_CF_API_TOKEN", "api-token")
	t.Setenv("TEST_CF_ACCOUNT_HASH", "AppHash_1")
	t.Setenv("TEST_CF_IMAGES_KEY", testKey)
	t.Setenv("TEST_OWN_KEY", "own-signing-key")
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
}

// TestAppBlockFromIssue runs the issue's config: the account in the global
// `cf_images` block, a site with `session jwt` and `authorize owner`, a
// site with `session none`, and a third site that names its own account
// hash, key and delivery URL. The first two sign with the app's account and
// key and look owners up with the app's API account; the third's own
// settings win.
func TestAppBlockFromIssue(t *testing.T) {
	setAppEnv(t)
	api := newCFAPI(t, map[string]string{"img1": "alice"})
	delivery := fmt.Sprintf("http://127.0.0.1:%d", loopbackPort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	siteA := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	siteB := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	siteC := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	runCaddy(t, appGlobal(admin, appAccount(api.srv.URL, delivery))+fmt.Sprintf(`
http://%s {
	cf_images {
		variants thumbnail public
		session jwt {
			cookie session
			secret {env.TEST_JWT_SECRET}
		}
		authorize owner
	}
}
http://%s {
	cf_images {
		prefix /photos
		variants thumbnail
		session none
	}
}
http://%s {
	cf_images {
		prefix /own
		account_hash OwnHash_2
		signing_key  {env.TEST_OWN_KEY}
		delivery_url http://127.0.0.1:1
		variants public
		session none
	}
}
`, siteA, siteB, siteC))

	hs := liveHandlers(t)
	a, b, c := hs["/img"], hs["/photos"], hs["/own"]
	if a == nil || b == nil || c == nil {
		t.Fatalf("live handlers %v, want /img, /photos and /own", slices.Collect(maps.Keys(hs)))
	}
	for _, h := range []*Handler{a, b} {
		if h.cfg.AccountHash != "AppHash_1" || h.cfg.DeliveryURL != delivery || h.keyID != signer.Fingerprint([]byte(testKey)) {
			t.Errorf("%s: account hash %q, delivery URL %q, key %s: want the app's", h.prefix, h.cfg.AccountHash, h.cfg.DeliveryURL, h.keyID)
		}
	}
	if a.api == nil || a.api.AccountID != testAccountID || a.api.BaseURL != api.srv.URL {
		t.Errorf("/img: API client %+v, want the app's account and API URL", a.api)
	}
	if c.cfg.AccountHash != "OwnHash_2" || c.cfg.DeliveryURL != "http://127.0.0.1:1" || c.keyID != signer.Fingerprint([]byte("own-signing-key")) {
		t.Errorf("/own: account hash %q, delivery URL %q, key %s: want its own settings", c.cfg.AccountHash, c.cfg.DeliveryURL, c.keyID)
	}

	// The same through the listeners: where each site's redirect points.
	cookie := map[string]string{"Cookie": "session=" + mint(t, "alice", time.Hour, nil, time.Now())}
	for _, tc := range []struct {
		url    string
		hdr    map[string]string
		status int
		prefix string
	}{
		{"http://" + siteA + "/img/img1/public", cookie, 302, delivery + "/AppHash_1/img1/public?exp="},
		{"http://" + siteA + "/img/img1/public", nil, 401, ""},
		{"http://" + siteB + "/photos/img2/thumbnail", nil, 302, delivery + "/AppHash_1/img2/thumbnail?exp="},
		{"http://" + siteC + "/own/img3/public", nil, 302, "http://127.0.0.1:1/OwnHash_2/img3/public?exp="},
	} {
		resp := httpGet(t, "GET", tc.url, tc.hdr, "")
		if loc := resp.Header.Get("Location"); resp.StatusCode != tc.status || !strings.HasPrefix(loc, tc.prefix) {
			t.Errorf("GET %s: %d, Location %q; want %d, %q…", tc.url, resp.StatusCode, loc, tc.status, tc.prefix)
		}
	}
	if n := api.count("img1"); n != 1 {
		t.Errorf("the API was asked %d times for img1's owner, want once (through the app's account)", n)
	}
}

// TestTwoSitesShareOneAPIBudget: two sites on one account and token get
// one API client, so a 429 seen by one pauses the other: site B's lookup
// fails fast with 503 and Retry-After, without calling the API. A site on
// another token has a client of its own.
func TestTwoSitesShareOneAPIBudget(t *testing.T) {
	setAppEnv(t)
	t.Setenv("TEST_OTHER_TOKEN", "api-token-2")
	api := newCFAPI(t, map[string]string{"img1": "alice", "img2": "alice"})
	admin := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	siteA := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	siteB := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	siteC := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	site := func(addr, prefix, extra string) string {
		return fmt.Sprintf(`
http://%s {
	cf_images {
		prefix %s
		variants public
		session jwt {
			cookie session
			secret {env.TEST_JWT_SECRET}
		}
		authorize owner
		%s
	}
}
`, addr, prefix, extra)
	}
	runCaddy(t, appGlobal(admin, appAccount(api.srv.URL, "http://127.0.0.1:1"))+
		site(siteA, "/a", "")+site(siteB, "/b", "")+
		site(siteC, "/c", "account_id "+testAccountID+"\n\t\tapi_token {env.TEST_OTHER_TOKEN}"))

	hs := liveHandlers(t)
	a, b, c := hs["/a"], hs["/b"], hs["/c"]
	if a == nil || b == nil || c == nil {
		t.Fatalf("live handlers %v", slices.Collect(maps.Keys(hs)))
	}
	if a.api == nil || a.api != b.api {
		t.Errorf("sites A and B on one account and token: API clients %p and %p, want one", a.api, b.api)
	}
	if c.api == a.api {
		t.Errorf("site C on another token shares site A's API client")
	}

	api.setMode(apiLimited) // 429, Retry-After: 30
	cookie := map[string]string{"Cookie": "session=" + mint(t, "alice", time.Hour, nil, time.Now())}
	resp := httpGet(t, "GET", "http://"+siteA+"/a/img1/public", cookie, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("site A while the API answers 429: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := api.total(); n != 1 {
		t.Fatalf("site A's lookup made %d API calls, want 1", n)
	}
	resp = httpGet(t, "GET", "http://"+siteB+"/b/img2/public", cookie, "")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("site B after site A's 429: %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if n := api.total(); n != 1 {
		t.Errorf("site B's lookup called the API (%d calls in all): the two sites do not share the pause after a 429", n)
	}
}

// imageUpstream stands in for Cloudflare's delivery: every signed URL
// answers a small PNG.
func imageUpstream(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write([]byte("\x89PNG\r\n\x1a\n" + strings.Repeat("x", 1000)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// proxyHandler provisions a proxy-mode handler on upstream, with Redis at
// redisURL if not "".
func proxyHandler(t *testing.T, upstream, redisURL string) *Handler {
	return newTestHandler(t, func(h *Handler) {
		h.DeliveryURL = upstream
		h.Mode = "proxy"
		if redisURL != "" {
			h.Redis = &RedisConfig{URLs: []string{redisURL}}
		}
	})
}

// fill serves id's public variant through h until its memory tier holds
// it, and returns the entries it holds.
func fill(t *testing.T, h *Handler, id string) int {
	t.Helper()
	if w, _ := serve(t, h, "GET", "/img/"+id+"/public", nil); w.Code != 200 {
		t.Fatalf("%s: proxying %s: status %d", h.prefix, id, w.Code)
	}
	for deadline := time.Now().Add(5 * time.Second); h.mem.Len() == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the memory tier is still empty after proxying %s", h.prefix, id)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return h.mem.Len()
}

// TestRedisEventsStayOnTheirRedis: a reconnect's clear and a purge message
// on one handler's Redis empty that handler's memory tier, and change
// nothing for a handler without Redis, even one caching the same image of
// the same account.
func TestRedisEventsStayOnTheirRedis(t *testing.T) {
	rs := redistest.Start(t)
	upstream := imageUpstream(t)
	onRedis := proxyHandler(t, upstream.URL, rs.URL)
	alone := proxyHandler(t, upstream.URL, "")
	if onRedis.fleet == nil || alone.fleet != nil {
		t.Fatalf("fleet connections %v and %v: want one on Redis, one without", onRedis.fleet, alone.fleet)
	}
	if onRedis.mem == alone.mem {
		t.Fatal("the handler on Redis shares its memory tier with the one without")
	}

	fill(t, onRedis, "abc")
	kept := fill(t, alone, "abc")
	onRedis.fleet.clearMemoryTiers()
	if n := onRedis.mem.Len(); n != 0 {
		t.Errorf("after its Redis's reconnect clear, the handler on Redis holds %d entries, want 0", n)
	}
	if n := alone.mem.Len(); n != kept {
		t.Errorf("a reconnect of another handler's Redis changed this handler's memory tier: %d entries, want %d", n, kept)
	}

	// A purge message published on that Redis comes back through its
	// subscription to the handlers on it, and to no one else.
	fill(t, onRedis, "abc")
	for deadline := time.Now().Add(5 * time.Second); onRedis.mem.Len() != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the purge message never reached the handler on Redis (%d entries)", onRedis.mem.Len())
		}
		if err := onRedis.fleet.purger.Publish(context.Background(), "abc", ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := alone.mem.Len(); n != kept {
		t.Errorf("a purge message on another handler's Redis changed this handler's memory tier: %d entries, want %d", n, kept)
	}
}

// TestAdminPurgeRefusals: the admin route refuses a purge naming a variant
// no handler serves, a body with anything after its JSON object, and an
// unknown field, each with 400; a good purge answers how many entries it
// dropped.
func TestAdminPurgeRefusals(t *testing.T) {
	setAppEnv(t)
	upstream := imageUpstream(t)
	admin := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	site := fmt.Sprintf("127.0.0.1:%d", loopbackPort(t))
	runCaddy(t, appGlobal(admin, "account_hash {env.TEST_CF_ACCOUNT_HASH}\n\t\tsigning_key {env.TEST_CF_IMAGES_KEY}\n\t\tdelivery_url "+upstream.URL)+fmt.Sprintf(`
http://%s {
	cf_images {
		variants public
		session none
		mode proxy
	}
}
`, site))
	if resp := httpGet(t, "GET", "http://"+site+"/img/abc/public", nil, ""); resp.StatusCode != 200 {
		t.Fatalf("proxying: status %d", resp.StatusCode)
	}
	h := liveHandlers(t)["/img"]
	for deadline := time.Now().Add(5 * time.Second); h.mem.Len() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	hdr := map[string]string{"Content-Type": "application/json"}
	for _, tc := range []struct {
		body   string
		status int
		says   string
	}{
		{`{"id":"abc","variant":"nosuch"}`, 400, "variant"},
		{`{"id":"abc"} {"id":"def"}`, 400, "nothing after it"},
		{`{"id":"abc"} x`, 400, "nothing after it"},
		{`{"id":"abc","extra":1}`, 400, "want a JSON body"},
		{`{"id":"abc","variant":"public"}`, 200, `"dropped":1`},
	} {
		resp := httpGet(t, "POST", "http://"+admin+"/cf_images/purge", hdr, tc.body)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || !strings.Contains(string(b), tc.says) {
			t.Errorf("POST %s: %d %s; want %d saying %q", tc.body, resp.StatusCode, b, tc.status, tc.says)
		}
	}
}

// fiveMistakes is a JSON config with one mistake in each of the app block
// (api_max_in_flight), the handler (window), a guest module (session jwt
// with no key source), `mode proxy` (max_object) and `redis` (key_prefix),
// and an unset placeholder in the Redis URL.
const fiveMistakes = `{
	"admin": {"disabled": true},
	"apps": {
		"cf_images": {
			"api_max_in_flight": -1,
			"account_hash": "AccHash_x1",
			"signing_key": "{env.TEST_CF_IMAGES_KEY}"
		},
		"http": {"servers": {"gw": {
			"listen": ["127.0.0.1:0"],
			"routes": [{"handle": [{
				"handler": "cf_images",
				"variants": ["public"],
				"window": "10s",
				"session": {"method": "jwt"},
				"mode": "proxy",
				"proxy": {"max_object": -1},
				"redis": {"urls": ["redis://127.0.0.1:1/0"], "key_prefix": "a{b}:"}
			}]}]
		}}}
	}
}`

// TestEveryConfigErrorAtOnce: one provisioning reports every mistake of a
// config, each named by its setting.
func TestEveryConfigErrorAtOnce(t *testing.T) {
	t.Setenv("TEST_CF_IMAGES_KEY", testKey)
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(fiveMistakes), &cfg); err != nil {
		t.Fatal(err)
	}
	err := caddy.Validate(&cfg)
	if err == nil {
		t.Fatal("a config with five mistakes validated")
	}
	t.Logf("the error:\n%v", err)
	for _, setting := range []string{"api_max_in_flight", "window", "session", "max_object", "key_prefix"} {
		if !strings.Contains(err.Error(), setting) {
			t.Errorf("the error does not name %s", setting)
		}
	}
}

// TestPlaceholderHints: an unset placeholder in a secret is named, never
// its value nor the rest of the setting, and the hint names only settings
// that exist (there is no redis_file).
func TestPlaceholderHints(t *testing.T) {
	t.Setenv("TEST_REDIS_PASSWORD", "")
	t.Setenv("TEST_CF_IMAGES_KEY", "")
	_, err := caddyfileHandler(t, `
		account_hash AccHash_x1
		signing_key {env.TEST_CF_IMAGES_KEY}
		variants public
		session none
		redis redis://:{env.TEST_REDIS_PASSWORD}@127.0.0.1:1/0`)
	if err == nil {
		t.Fatal("provisioned with unset placeholders")
	}
	t.Logf("the error:\n%v", err)
	for _, want := range []string{"{env.TEST_CF_IMAGES_KEY} is empty", "{env.TEST_REDIS_PASSWORD} is empty"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say %q", want)
		}
	}
	for _, missing := range []string{"redis_file", "127.0.0.1:1"} {
		if strings.Contains(err.Error(), missing) {
			t.Errorf("the error says %q", missing)
		}
	}
}

// TestConfigFixturesStillLoad: every config that worked before the app
// (Caddyfile.example and the configs the tests run, kept in
// testdata/configs) still adapts and provisions.
func TestConfigFixturesStillLoad(t *testing.T) {
	var files []string
	for _, pattern := range []string{"Caddyfile.example", "*.Caddyfile", "*.json"} {
		m, _ := filepath.Glob(filepath.Join("testdata", "configs", pattern))
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures in testdata/configs")
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	api := newCFAPI(t, nil)
	for _, env := range [][2]string{
		{"CF_ACCOUNT_HASH", "AccHash_x1"}, {"CF_IMAGES_KEY", testKey},
		{"CF_ACCOUNT_ID", testAccountID}, {"CF_API_TOKEN", "api-token"},
		{"JWT_SECRET", jwtSecret}, {"API_URL", api.srv.URL}, {"REPO", repo},
	} {
		t.Setenv("FIXTURE_"+env[0], env[1])
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out := src
			if filepath.Ext(f) != ".json" {
				if out, _, err = caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": f}); err != nil {
					t.Fatalf("adapting: %v", err)
				}
			}
			var cfg caddy.Config
			if err := json.Unmarshal(out, &cfg); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(src), "dev/") {
				t.Chdir(repo) // Caddyfile.example's secrets are relative to the repository
			}
			if err := caddy.Validate(&cfg); err != nil {
				t.Fatalf("provisioning: %v", err)
			}
		})
	}
}
