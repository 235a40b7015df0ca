package caddymodule

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/seed-a64a90cf/imagegate/session"
)

// introspectionEndpoint is an RFC 7662 endpoint on 127.0.0.1 that knows
// one active token, "tok-alice", until it is revoked.
func introspectionEndpoint(t *testing.T) (*httptest.Server, *atomic.Bool, *atomic.Int64) {
	var revoked atomic.Bool
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		id, secret, _ := r.BasicAuth()
		if id != "imagegate" || secret != "introspect-secret" || r.ParseForm() != nil {
			http.Error(w, "who", http.StatusUnauthorized)
			return
		}
		ans := map[string]any{"active": false}
		if r.PostForm.Get("token") == "tok-alice" && !revoked.Load() {
			ans = map[string]any{"active": true, "sub": "alice", "aud": []string{"https://img.example.com"},
				"iss": "https://id.example.com", "scope": "openid images:read", "images": []string{"abc"},
				"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Add(-time.Minute).Unix(), "sid": "sess-1"}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(ans)
	}))
	t.Cleanup(srv.Close)
	return srv, &revoked, &calls
}

func TestOAuth2IntrospectSession(t *testing.T) {
	srv, revokedAtProvider, calls := introspectionEndpoint(t)
	t.Setenv("TEST_INTROSPECT_SECRET", "introspect-secret")
	h := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("oauth2_introspect", &OAuth2IntrospectSession{
			Endpoint: srv.URL + "/oauth2/introspect", ClientID: "imagegate", ClientSecret: "{env.TEST_INTROSPECT_SECRET}",
			Audience: "https://img.example.com", Issuer: "https://id.example.com", Scope: "images:read",
			CacheTTL: caddy.Duration(time.Hour),
		})
		h.AuthorizeRaw = authorizeJSON("claim", ClaimAuthorizer{Claim: "images", Template: "{id}"})
	})
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	for i, tc := range []struct {
		hdr  map[string]string
		id   string
		want int
	}{
		{bearer("tok-alice"), "abc", 302},
		{bearer("tok-alice"), "other", 403}, // the answer's claims feed authorize claim
		{bearer("tok-unknown"), "abc", 401},
		{nil, "abc", 401},
	} {
		if w, _ := serve(t, h, "GET", "/img/"+tc.id+"/public", tc.hdr); w.Code != tc.want {
			t.Errorf("case %d: status %d, want %d", i, w.Code, tc.want)
		}
	}
	// Revoked at the provider: the cached answer holds for cache_ttl (an
	// hour here); a revocation at the gateway bites at once.
	revokedAtProvider.Store(true)
	n := calls.Load()
	if w, _ := serve(t, h, "GET", "/img/abc/public", bearer("tok-alice")); w.Code != 302 || calls.Load() != n {
		t.Fatalf("cached answer: %d, %d calls", w.Code, calls.Load()-n)
	}
	revs := h.method.(*OAuth2IntrospectSession).revs
	if _, err := revs.Revoke(session.RevocationRequest{SessionID: "sess-1"}, session.SourceAdmin); err != nil {
		t.Fatal(err)
	}
	if w, _ := serve(t, h, "GET", "/img/abc/public", bearer("tok-alice")); w.Code != 401 {
		t.Fatalf("revoked session: %d, want 401", w.Code)
	}
	srv.Close()
	if w, _ := serve(t, h, "GET", "/img/abc/public", bearer("tok-new")); w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("endpoint down: %d %q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}

func TestUnmarshalOAuth2IntrospectBlock(t *testing.T) {
	// The block of issue 16, as an operator would write it.
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`cf_images {
		session oauth2_introspect {
			endpoint           https://id.example.com/oauth2/introspect
			client_id          imagegate
			client_secret_file /run/secrets/introspect   # or client_secret {env.X}
			header             Authorization             # Bearer token; or cookie <name>
			audience           https://img.example.com   # optional: the token's aud must contain it
			issuer             https://id.example.com    # optional: the token's iss must equal it
			scope              images:read               # optional: the token's scope must contain it
			cache_ttl          30s                       # never past the token's exp
			subject_claim      sub
			backchannel_logout /auth/backchannel-logout
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"audience":"https://img.example.com","backchannel_logout":"/auth/backchannel-logout","cache_ttl":30000000000,"client_id":"imagegate","client_secret_file":"/run/secrets/introspect","endpoint":"https://id.example.com/oauth2/introspect","header":"Authorization","issuer":"https://id.example.com","method":"oauth2_introspect","scope":"images:read","subject_claim":"sub"}`
	if got := string(h.SessionRaw); got != want {
		t.Fatalf("session = %s\nwant      %s", got, want)
	}
	for _, bad := range []string{
		`session oauth2_introspect https://x { }`,
		"session oauth2_introspect {\n endpoint\n }",
		`session oauth2_introspect { magic 1 }`,
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cf_images {\n" + bad + "\n}")); err == nil {
			t.Errorf("%s: want error", bad)
		}
	}
}

func TestOAuth2IntrospectConfigErrors(t *testing.T) {
	for i, tc := range []struct {
		s, want string
	}{
		{`{"method":"oauth2_introspect"}`, "endpoint"},
		{`{"method":"oauth2_introspect","endpoint":"https://id.test/i"}`, "client_id and client_secret are required"},
		{`{"method":"oauth2_introspect","endpoint":"https://id.test/i","client_id":"c","client_secret":"{env.IMAGEGATE_UNSET_X}"}`, "client_secret:"},
		{`{"method":"oauth2_introspect","endpoint":"https://id.test/i","client_id":"c","client_secret":"s","header":"A","cookie":"b"}`, "not both"},
		{`{"method":"oauth2_introspect","endpoint":"https://id.test/i","client_id":"c","client_secret":"s","backchannel_logout":"/bcl"}`, "needs issuer"},
	} {
		h := &Handler{AccountHash: "acc", SigningKey: "k", Variants: []string{"public"}, SessionRaw: json.RawMessage(tc.s)}
		ctx, cancel := newContext(t)
		err := h.Provision(ctx)
		_ = h.Cleanup()
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: Provision() = %v, want %q", i, err, tc.want)
		}
	}
}

// oidcTestProvider serves a discovery document and an RS256 JWKS on
// 127.0.0.1, and can be down.
type oidcTestProvider struct {
	*httptest.Server
	key  *rsa.PrivateKey
	down atomic.Bool
}

var providerKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newOIDCTestProvider(t *testing.T) *oidcTestProvider {
	p := &oidcTestProvider{key: providerKey()}
	pub, err := jwk.Import(&p.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyIDKey, "k1")
	_ = pub.Set(jwk.AlgorithmKey, jwa.RS256())
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	doc, _ := json.Marshal(set)
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.URL, "jwks_uri": p.URL + "/jwks"})
		case "/jwks":
			_, _ = w.Write(doc)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

// sign signs claims with the provider's key; typ "" means the default.
func (p *oidcTestProvider) sign(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range claims {
		_ = tok.Set(k, v)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, "k1")
	if typ != "" {
		_ = hdr.Set(jws.TypeKey, typ)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), p.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJWTSessionDiscoveryAndBackchannelLogout(t *testing.T) {
	p := newOIDCTestProvider(t)
	p.down.Store(true) // down at start: Caddy still starts
	h := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Issuer: p.URL, Audience: "https://img.example.com",
			BackchannelLogout: "/auth/backchannel-logout", BackchannelAudience: "imagegate-client"})
	})
	now := time.Now()
	access := p.sign(t, "", map[string]any{"iss": p.URL, "aud": "https://img.example.com", "sub": "carol",
		"sid": "sess-carol", "iat": now.Add(-time.Minute), "exp": now.Add(time.Hour)})
	hdr := map[string]string{"Authorization": "Bearer " + access}
	w, _ := serve(t, h, "GET", "/img/abc/public", hdr)
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("provider down: %d %q, want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	p.down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if w, _ = serve(t, h, "GET", "/img/abc/public", hdr); w.Code == 302 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("provider back: still %d", w.Code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The logout route, as the lead's handler will mount it.
	lr, ok := h.method.(LogoutReceiver)
	if !ok {
		t.Fatal("session jwt is not a LogoutReceiver")
	}
	path, logout := lr.LogoutRoute()
	if path != "/auth/backchannel-logout" || logout == nil {
		t.Fatalf("LogoutRoute = %q, %v", path, logout)
	}
	lt := p.sign(t, "logout+jwt", map[string]any{"iss": p.URL, "aud": "imagegate-client", "iat": now, "exp": now.Add(2 * time.Minute),
		"jti": "lt-1", "sid": "sess-carol", "events": map[string]any{"http://schemas.openid.net/event/backchannel-logout": map[string]any{}}})
	post := func(tok string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rw := httptest.NewRecorder()
		logout.ServeHTTP(rw, r)
		return rw
	}
	if rw := post(lt); rw.Code != 200 || rw.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("logout: %d %q", rw.Code, rw.Header().Get("Cache-Control"))
	}
	if w, _ := serve(t, h, "GET", "/img/abc/public", hdr); w.Code != 401 {
		t.Fatalf("after back-channel logout: %d, want 401", w.Code)
	}
	if rw := post(lt); rw.Code != 400 || rw.Body.String() != `{"error":"invalid_request"}` {
		t.Fatalf("replayed logout token: %d %s", rw.Code, rw.Body.String())
	}
}
