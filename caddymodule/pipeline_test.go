package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// caddyContext returns a context of a real Caddy config, whose modules log
// through Caddy's logging, and a function returning what they logged at
// WARN or above. Modules loaded through it are cleaned up with the test.
func caddyContext(t testing.TB) (caddy.Context, func() string) {
	t.Helper()
	logFile := filepath.Join(t.TempDir(), "warn.log")
	ctx := caddyContextWith(t, map[string]any{"observed": map[string]any{
		"writer": map[string]any{"output": "file", "filename": logFile, "roll": false},
		"level":  "WARN",
	}})
	return ctx, func() string {
		b, _ := os.ReadFile(logFile)
		return string(b)
	}
}

// quietContext is a Caddy context that discards every log line, for
// benchmarks. It makes the discarding log Caddy's default for the rest of
// the process.
func quietContext(t testing.TB) caddy.Context {
	return caddyContextWith(t, map[string]any{"default": map[string]any{"writer": map[string]any{"output": "discard"}}})
}

// caddyContextWith provisions a Caddy config with the given logs and
// returns a context of it that is cancelled, cleaning up what was loaded
// through it, when the test ends.
func caddyContextWith(t testing.TB, logs map[string]any) caddy.Context {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"logging": map[string]any{"logs": logs}})
	var cfg caddy.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	base, err := caddy.ProvisionContext(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	return ctx
}

// caddyServer adapts a Caddyfile with one site and provisions its HTTP app
// in a real Caddy context, without listening: the server's ServeHTTP runs
// Caddy's whole request path, handle_errors included.
func caddyServer(t *testing.T, src string) *caddyhttp.Server {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	var cfg caddy.Config
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	ctx, _ := caddyContext(t)
	v, err := ctx.LoadModuleByID("http", cfg.AppsRaw["http"])
	if err != nil {
		t.Fatal(err)
	}
	app := v.(*caddyhttp.App)
	if len(app.Servers) != 1 {
		t.Fatalf("%d servers", len(app.Servers))
	}
	for _, srv := range app.Servers {
		return srv
	}
	return nil
}

// TestHandleErrorsAnswersRefusals runs refusals through Caddy itself: a
// handle_errors route answers the statuses it names, with the handler's
// headers kept and {http.cf_images.outcome} available; any other refusal
// is Caddy's bare status with an empty body.
func TestHandleErrorsAnswersRefusals(t *testing.T) {
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	t.Setenv("TEST_CF_KEY", testKey)
	srv := caddyServer(t, `{
	auto_https off
}
http://:8080 {
	cf_images {
		account_hash AccHash_x1
		signing_key  {env.TEST_CF_KEY}
		variants     public
		session jwt {
			cookie session
			header Authorization
			secret {env.TEST_JWT_SECRET}
		}
		authorize claim images {id}
	}
	handle_errors 401 403 {
		respond "placeholder: {http.cf_images.outcome}" {err.status_code}
	}
}`)
	cookie := "session=" + mint(t, "alice", time.Hour, map[string]string{"images": "mine"}, time.Now())
	for _, tc := range []struct {
		target, cookie string
		status         int
		body           string
		header, value  string
	}{
		{"/img/mine/public", cookie, 302, "", "Location", "https://imagedelivery.net/AccHash_x1/mine/public?exp="},
		{"/img/mine/public", "", 401, "placeholder: unauthenticated", "Www-Authenticate", "Bearer"},
		{"/img/theirs/public", cookie, 403, "placeholder: forbidden", "Cache-Control", "no-store"},
		{"/img/mine/original", cookie, 404, "", "Cache-Control", "no-store"},
		{"/img/mine/%2E%2E/public", cookie, 400, "", "Cache-Control", "no-store"},
	} {
		r := httptest.NewRequest("GET", "http://localhost:8080"+tc.target, nil)
		if tc.cookie != "" {
			r.Header.Set("Cookie", tc.cookie)
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, r)
		if w.Code != tc.status || w.Body.String() != tc.body || !strings.HasPrefix(w.Header().Get(tc.header), tc.value) {
			t.Errorf("%s: %d %q %s=%q; want %d %q %s=%q…", tc.target, w.Code, w.Body.String(),
				tc.header, w.Header().Get(tc.header), tc.status, tc.body, tc.header, tc.value)
		}
	}
}

// TestJWTWithoutAudienceWarns: a public key or JWKS is usually shared by
// every application of an identity provider, so a jwt session that
// accepts any audience says so at start; an HMAC secret or an audience
// does not.
func TestJWTWithoutAudienceWarns(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pemFile := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	for _, tc := range []struct {
		session *JWTSession
		warns   bool
	}{
		{&JWTSession{PublicKeyFile: pemFile}, true},
		{&JWTSession{PublicKeyFile: pemFile, Audience: "images"}, false},
		{&JWTSession{Secret: "{env.TEST_JWT_SECRET}"}, false},
	} {
		ctx, logged := caddyContext(t)
		h := &Handler{AccountHash: "AccHash_x1", SigningKey: "{env.TEST_JWT_SECRET}", Variants: []string{"public"},
			SessionRaw: sessionJSON("jwt", tc.session)}
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		_ = h.Cleanup()
		if got := strings.Contains(logged(), "session jwt without audience"); got != tc.warns {
			t.Errorf("%+v: warned %v, want %v; log:\n%s", tc.session, got, tc.warns, logged())
		}
	}
}
