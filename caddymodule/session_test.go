package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/session"
)

const jwtSecret = "0123456789abcdef0123456789abcdef-test"

func mint(t *testing.T, sub string, ttl time.Duration, claims map[string]string, now time.Time) string {
	t.Helper()
	tok, err := session.MintHS256([]byte(jwtSecret), sub, ttl, claims, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// algNone is a token claiming to need no signature.
func algNone(sub string) string {
	enc := base64.RawURLEncoding.EncodeToString
	payload, _ := json.Marshal(map[string]any{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
	return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."
}

func jwtHandler(t *testing.T, authorize json.RawMessage) *Handler {
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	return newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Sources: []CredentialSource{{Cookie: "session"}, {Header: "Authorization"}},
			Secret: "{env.TEST_JWT_SECRET}"})
		h.AuthorizeRaw = authorize
	})
}

// sessionJSON and authorizeJSON return a guest module's JSON with its name
// under the inline key, as the Caddyfile adapter writes it.
func sessionJSON(name string, m any) json.RawMessage {
	return caddyconfig.JSONModuleObject(m, "method", name, nil)
}

func authorizeJSON(name string, m any) json.RawMessage {
	return caddyconfig.JSONModuleObject(m, "policy", name, nil)
}

func TestJWTSession(t *testing.T) {
	h := jwtHandler(t, nil)
	now := time.Now()
	good := mint(t, "alice", time.Hour, nil, now)
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":9999999999}`)) + "." + parts[2]
	for i, tc := range []struct {
		name       string
		hdr        map[string]string
		wantStatus int
	}{
		{"cookie", map[string]string{"Cookie": "session=" + good}, 302},
		{"bearer", map[string]string{"Authorization": "Bearer " + good}, 302},
		{"none", nil, 401},
		{"expired", map[string]string{"Cookie": "session=" + mint(t, "alice", time.Minute, nil, now.Add(-time.Hour))}, 401},
		{"not yet valid", map[string]string{"Cookie": "session=" + mint(t, "alice", time.Hour, nil, now.Add(time.Hour))}, 401},
		{"alg none", map[string]string{"Cookie": "session=" + algNone("alice")}, 401},
		{"tampered", map[string]string{"Cookie": "session=" + tampered}, 401},
		{"garbage", map[string]string{"Authorization": "Bearer not.a.token"}, 401},
		{"oversized", map[string]string{"Cookie": "session=" + strings.Repeat("a", 9000)}, 401},
	} {
		w, _ := serve(t, h, "GET", "/img/abc/public", tc.hdr)
		if w.Code != tc.wantStatus {
			t.Errorf("case %d %s: status %d, want %d", i, tc.name, w.Code, tc.wantStatus)
			continue
		}
		if w.Code == 401 {
			if w.Header().Get("WWW-Authenticate") != "Bearer" || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("case %d %s: 401 headers %v", i, tc.name, w.Header())
			}
			if w.Header().Get("Location") != "" || strings.Contains(w.Body.String(), "sig=") {
				t.Errorf("case %d %s: a 401 carries a URL", i, tc.name)
			}
		}
	}
}

func TestClaimPolicy(t *testing.T) {
	h := jwtHandler(t, authorizeJSON("claim", &ClaimAuthorizer{Claim: "images", Template: "{id}"}))
	tok := mint(t, "alice", time.Hour, map[string]string{"images": "mine"}, time.Now())
	cookie := map[string]string{"Cookie": "session=" + tok}
	if w, _ := serve(t, h, "GET", "/img/mine/public", cookie); w.Code != 302 {
		t.Errorf("own image: status %d", w.Code)
	}
	forbidden := metrics.sessionChecks.WithLabelValues("jwt", "forbidden")
	before := testutil.ToFloat64(forbidden)
	if w, _ := serve(t, h, "GET", "/img/theirs/public", cookie); w.Code != 403 || w.Header().Get("Location") != "" {
		t.Errorf("other image: status %d", w.Code)
	}
	if testutil.ToFloat64(forbidden)-before != 1 {
		t.Error("the denial was not counted")
	}
}

// introspectApp is the application behind `session introspect`.
func introspectApp(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		c, err := r.Cookie("sessionid")
		switch {
		case err != nil:
			w.WriteHeader(401)
		case c.Value == "alice" && r.Header.Get("X-Image-Id") != "secret":
			w.Header().Set("X-User-Id", "alice")
			w.WriteHeader(204)
		case c.Value == "broken":
			w.WriteHeader(500)
		default:
			w.WriteHeader(403)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

func TestIntrospectSession(t *testing.T) {
	app, calls := introspectApp(t)
	h := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("introspect", &IntrospectSession{URL: app.URL, PerImage: true,
			Sources: []CredentialSource{{Cookie: "sessionid"}}})
		h.AuthorizeRaw = authorizeJSON("introspect", IntrospectAuthorizer{})
	})
	for i, tc := range []struct {
		cookie, id string
		want       int
	}{
		{"alice", "abc", 302},
		{"alice", "secret", 403},
		{"bob", "abc", 403},
		{"", "abc", 401},
		{"broken", "abc", 503},
	} {
		hdr := map[string]string{}
		if tc.cookie != "" {
			hdr["Cookie"] = "sessionid=" + tc.cookie
		}
		if w, _ := serve(t, h, "GET", "/img/"+tc.id+"/public", hdr); w.Code != tc.want {
			t.Errorf("case %d: status %d, want %d", i, w.Code, tc.want)
		}
	}
	n := calls.Load()
	serve(t, h, "GET", "/img/abc/public", map[string]string{"Cookie": "sessionid=alice"})
	if calls.Load() != n {
		t.Error("a cached decision called the application again")
	}
	app.Close() // down: cached decisions still answer, new ones fail closed
	if w, _ := serve(t, h, "GET", "/img/other/public", map[string]string{"Cookie": "sessionid=alice"}); w.Code != 503 {
		t.Errorf("application down: status %d, want 503", w.Code)
	}
}

func TestCaddyAuthSession(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.SessionRaw = sessionJSON("caddy_auth", CaddyAuthSession{}) })
	for user, want := range map[string]int{"alice": 302, "": 401} {
		r := httptest.NewRequest("GET", "/img/abc/public", nil)
		repl := caddyhttp.NewTestReplacer(r)
		if user != "" {
			repl.Set("http.auth.user.id", user)
		}
		w, _, _ := serveRequest(t, h, r)
		if w.Code != want {
			t.Errorf("user %q: status %d, want %d", user, w.Code, want)
		}
	}
}

// imagesAPI stands in for the Cloudflare Images API: image "a1" is owned
// by alice, "down" makes the API fail.
func imagesAPI(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer api-token" {
			w.WriteHeader(403)
			return
		}
		switch r.URL.Path {
		case "/accounts/0123456789abcdef0123456789abcdef/images/v1/a1":
			_, _ = w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":{"id":"a1","meta":{"owner":"alice"}}}`))
		case "/accounts/0123456789abcdef0123456789abcdef/images/v1/down":
			w.WriteHeader(502)
		default:
			w.WriteHeader(404)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestOwnerPolicy(t *testing.T) {
	api := imagesAPI(t)
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	t.Setenv("TEST_API_TOKEN", "api-token")
	h := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Sources: []CredentialSource{{Cookie: "session"}}, Secret: "{env.TEST_JWT_SECRET}"})
		h.AuthorizeRaw = authorizeJSON("owner", &OwnerAuthorizer{Field: "owner"})
		h.AccountID, h.APIToken, h.APIURL = "0123456789abcdef0123456789abcdef", "{env.TEST_API_TOKEN}", api.URL
	})
	as := func(sub string) map[string]string {
		return map[string]string{"Cookie": "session=" + mint(t, sub, time.Hour, nil, time.Now())}
	}
	for i, tc := range []struct {
		sub, id string
		want    int
	}{
		{"alice", "a1", 302},
		{"bob", "a1", 403},
		{"alice", "missing", 403},
		{"alice", "down", 503},
	} {
		if w, _ := serve(t, h, "GET", "/img/"+tc.id+"/public", as(tc.sub)); w.Code != tc.want {
			t.Errorf("case %d: %s asking for %s: status %d, want %d", i, tc.sub, tc.id, w.Code, tc.want)
		}
	}
}

// TestSessionConfigErrors: what the guest modules refuse, including a
// setting of another method (strict JSON decoding, no hand-kept table).
func TestSessionConfigErrors(t *testing.T) {
	for i, tc := range []struct {
		s, a string
		want string
	}{
		{`{"method":"jwt"}`, ``, "sessions.jwt"},
		{`{"method":"jwt","secret":"short"}`, ``, "sessions.jwt"},
		{`{"method":"introspect"}`, ``, "sessions.introspect"},
		{`{"method":"none"}`, `{"policy":"claim","claim":"c","template":"{id}"}`, "claims, such as session jwt"},
		{`{"method":"none"}`, `{"policy":"owner","field":"owner"}`, "authorize owner: needs a session method that names the caller"},
		{`{"method":"caddy_auth"}`, `{"policy":"owner"}`, "needs account_id and api_token"},
		{`{"method":"none"}`, `{"policy":"everyone"}`, "unknown module: http.handlers.cf_images.authorizers.everyone"},
		{`{"method":"magic"}`, ``, "unknown module: http.handlers.cf_images.sessions.magic"},
		{`{"method":"none","secret":"x"}`, ``, `unknown field "secret"`},
		{`{"method":"caddy_auth","sources":[{"cookie":"c"}]}`, ``, `unknown field "sources"`},
		// Caddy re-encodes a guest's JSON without the inline key, in
		// key order, so the first foreign setting reported is per_image.
		{`{"method":"jwt","secret":"` + jwtSecret + `","url":"http://127.0.0.1:1","per_image":true}`, ``, `unknown field "per_image"`},
		{`{"method":"introspect","url":"http://127.0.0.1:1","sources":[{"cookie":"c"}],"issuer":"x"}`, ``, `unknown field "issuer"`},
		{`{"method":"jwt","secret":"` + jwtSecret + `"}`, `{"policy":"introspect"}`, "authorize introspect: needs a session method that asks its backend per image"},
	} {
		h := &Handler{AccountHash: "acc", SigningKey: "k", Variants: []string{"public"}, SessionRaw: json.RawMessage(tc.s)}
		if tc.a != "" {
			h.AuthorizeRaw = json.RawMessage(tc.a)
		}
		ctx, cancel := newContext(t)
		err := h.Provision(ctx)
		_ = h.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: Provision() = %v, want %q", i, err, tc.want)
		}
	}
}

func TestUnmarshalSessionBlocks(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`cf_images {
		authorize claim images {id}
		session jwt {
			cookie session
			header Authorization
			secret_file /run/secrets/jwt
			issuer https://id.example
			audience images
			leeway 10s
			subject_claim uid
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(h.SessionRaw), `{"audience":"images","issuer":"https://id.example","leeway":10000000000,"method":"jwt","secret_file":"/run/secrets/jwt","sources":[{"cookie":"session"},{"header":"Authorization"}],"subject_claim":"uid"}`; got != want {
		t.Fatalf("session = %s\nwant      %s", got, want)
	}
	if got, want := string(h.AuthorizeRaw), `{"claim":"images","policy":"claim","template":"{id}"}`; got != want {
		t.Fatalf("authorize = %s, want %s", got, want)
	}

	// authorize introspect no longer edits the session block, so it may
	// come first.
	h = Handler{}
	err = h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`cf_images {
		authorize introspect per_image
		session introspect http://127.0.0.1:9000/auth {
			cookie sessionid
			timeout 1s
			cache_ttl 1m
			negative_ttl 2s
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(h.SessionRaw), `{"cache_ttl":60000000000,"method":"introspect","negative_ttl":2000000000,"sources":[{"cookie":"sessionid"}],"timeout":1000000000,"url":"http://127.0.0.1:9000/auth"}`; got != want {
		t.Fatalf("session = %s\nwant      %s", got, want)
	}

	for i, src := range []string{
		"cf_images {\n session jwt {\n per_image\n }\n}",
		"cf_images {\n session introspect {\n cookie a\n }\n}",
		"cf_images {\n authorize claim images\n}",
		"cf_images {\n session oauth\n}",
		"cf_images {\n session none\n session jwt\n}",
		"cf_images {\n authorize any\n authorize owner\n}",
		"cf_images {\n session none {\n cookie a\n }\n}",
		"cf_images {\n authorize introspect\n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err == nil {
			t.Errorf("case %d: %q parsed without error", i, src)
		}
	}
}

// TestVaryNamesTheCredential: a URL handed out on a cookie or a bearer
// token varies on it, so a shared browser never reuses one user's cached
// answer for another. caddy_auth cannot know which credential the earlier
// handler read, so it varies on both.
func TestVaryNamesTheCredential(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	for i, tc := range []struct {
		session json.RawMessage
		want    string
	}{
		{sessionJSON("none", NoSession{}), "Accept"},
		{sessionJSON("caddy_auth", CaddyAuthSession{}), "Accept, Cookie, Authorization"},
		{sessionJSON("jwt", &JWTSession{Secret: "{env.TEST_JWT_SECRET}"}), "Accept, Authorization"},
		{sessionJSON("jwt", &JWTSession{Secret: "{env.TEST_JWT_SECRET}", Sources: []CredentialSource{{Cookie: "session"}, {Header: "authorization"}}}), "Accept, Cookie, Authorization"},
		{sessionJSON("introspect", &IntrospectSession{URL: "http://127.0.0.1:1", Sources: []CredentialSource{{Cookie: "sessionid"}, {Cookie: "csrftoken"}}}), "Accept, Cookie"},
	} {
		h := newTestHandler(t, func(h *Handler) { h.SessionRaw = tc.session })
		if got := strings.Join(h.gate.Vary(), ", "); got != tc.want {
			t.Errorf("case %d: Vary %q, want %q", i, got, tc.want)
		}
	}
	h := jwtHandler(t, nil)
	w, _ := serve(t, h, "GET", "/img/abc/public", map[string]string{"Cookie": "session=" + mint(t, "alice", time.Hour, nil, time.Now())})
	if w.Code != 302 || w.Header().Get("Vary") != "Accept, Cookie, Authorization" {
		t.Fatalf("status %d Vary %q", w.Code, w.Header().Get("Vary"))
	}
}

func TestIntrospectURLPlaceholder(t *testing.T) {
	app, calls := introspectApp(t)
	t.Setenv("TEST_AUTH_URL", app.URL)
	h := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("introspect", &IntrospectSession{URL: "{env.TEST_AUTH_URL}", Sources: []CredentialSource{{Cookie: "sessionid"}}})
	})
	if w, _ := serve(t, h, "GET", "/img/abc/public", map[string]string{"Cookie": "sessionid=alice"}); w.Code != 302 || calls.Load() != 1 {
		t.Fatalf("status %d after %d calls", w.Code, calls.Load())
	}
}

func TestLeewayZeroMeansNone(t *testing.T) {
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cf_images {\n session jwt {\n leeway 0\n }\n}")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h.SessionRaw), `"leeway":-1`) {
		t.Fatalf("leeway 0 parsed as %s, want a negative value (none)", h.SessionRaw)
	}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cf_images {\n session jwt {\n leeway -5s\n }\n}")); err == nil {
		t.Fatal("a negative leeway was accepted")
	}
}
