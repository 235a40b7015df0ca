package session

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const testIssuer = "https://idp.test"

// logoutClaims returns a valid logout token's claims for alice's session
// s1 at t0, changed by kv pairs (a nil value deletes the claim).
func logoutClaims(kv ...any) map[string]any {
	c := map[string]any{
		"iss":    testIssuer,
		"aud":    "imagegate-client",
		"iat":    t0.Add(-5 * time.Second),
		"exp":    t0.Add(2 * time.Minute),
		"jti":    "logout-1",
		"sub":    "alice",
		"sid":    "s1",
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(c, kv[i].(string))
			continue
		}
		c[kv[i].(string)] = kv[i+1]
	}
	return c
}

// signLogout signs c with key under kid, with the JOSE typ header typ
// ("" for none).
func signLogout(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid, typ string, c map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range c {
		if err := tok.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	if typ != "" {
		_ = hdr.Set(jws.TypeKey, typ)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newTestLogout serves the issuer's keys (RSA "a", ECDSA "e") from a JWKS
// on 127.0.0.1 and returns a receiver validating against it.
func newTestLogout(t *testing.T, clk *fakeClock) (*BackchannelLogout, *Revocations) {
	t.Helper()
	k := keys()
	srv := newJWKSServer(t, jwksDoc(t, "a", &k.rsa.PublicKey, "e", &k.ec.PublicKey))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	set, err := NewJWKS(ctx, JWKSConfig{URL: srv.URL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	rev := NewRevocations(RevocationsConfig{Now: clk.Now})
	b, err := NewBackchannelLogout(BackchannelLogoutConfig{Issuer: testIssuer, Audience: "imagegate-client", JWKS: set, Revocations: rev, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return b, rev
}

func postLogout(h http.Handler, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/auth/backchannel-logout", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func logoutForm(tok string) string { return url.Values{"logout_token": {tok}}.Encode() }

func TestBackchannelLogoutAccepts(t *testing.T) {
	k := keys()
	clk := newClock()
	for _, c := range []struct {
		name, typ string
		claims    map[string]any
		want      Revocation
	}{
		{"sid and sub: the session", "logout+jwt", logoutClaims(), Revocation{Kind: RevokeSession, Value: "s1"}},
		{"sub only: every session", "logout+jwt", logoutClaims("sid", nil), Revocation{Kind: RevokeSubject, Value: "alice"}},
		{"sid only", "logout+jwt", logoutClaims("sub", nil), Revocation{Kind: RevokeSession, Value: "s1"}},
		{"typ JWT, from a provider before explicit typing", "JWT", logoutClaims(), Revocation{Kind: RevokeSession, Value: "s1"}},
		{"no typ", "", logoutClaims(), Revocation{Kind: RevokeSession, Value: "s1"}},
		{"no exp but issued just now (Hydra v2.3.0)", "JWT", logoutClaims("exp", nil), Revocation{Kind: RevokeSession, Value: "s1"}},
	} {
		b, rev := newTestLogout(t, clk)
		w := postLogout(b, logoutForm(signLogout(t, jwa.RS256(), k.rsa, "a", c.typ, c.claims)))
		if w.Code != http.StatusOK || w.Header().Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %q %q", c.name, w.Code, w.Header().Get("Cache-Control"), w.Body.String())
			continue
		}
		got := rev.List()
		if len(got) != 1 || got[0].Kind != c.want.Kind || got[0].Value != c.want.Value || got[0].Source != SourceBackchannel {
			t.Errorf("%s: recorded %+v, want %+v", c.name, got, c.want)
		}
	}
	// An ECDSA key of the set works too.
	b, _ := newTestLogout(t, clk)
	if w := postLogout(b, logoutForm(signLogout(t, jwa.ES256(), k.ec, "e", "logout+jwt", logoutClaims()))); w.Code != http.StatusOK {
		t.Errorf("ES256: %d", w.Code)
	}
}

func TestBackchannelLogoutRefuses(t *testing.T) {
	// One case per rule of OpenID Connect Back-Channel Logout 1.0 §2.6:
	// each breaks exactly one, gets 400 {"error":"invalid_request"}, and
	// records nothing.
	k := keys()
	clk := newClock()
	rs := func(c map[string]any) string { return signLogout(t, jwa.RS256(), k.rsa, "a", "logout+jwt", c) }
	cases := []struct {
		name string
		body string
	}{
		{"signed by another key", logoutForm(signLogout(t, jwa.RS256(), k.rsa2, "a", "logout+jwt", logoutClaims()))},
		{"unknown key id", logoutForm(signLogout(t, jwa.RS256(), k.rsa2, "zz", "logout+jwt", logoutClaims()))},
		{"HMAC with the public key's bytes", logoutForm(signLogout(t, jwa.HS256(), testSecret, "a", "logout+jwt", logoutClaims()))},
		{"unsigned", logoutForm(unsigned(t, logoutClaims()))},
		{"wrong issuer", logoutForm(rs(logoutClaims("iss", "https://evil.test")))},
		{"no issuer", logoutForm(rs(logoutClaims("iss", nil)))},
		{"wrong audience", logoutForm(rs(logoutClaims("aud", "another-client")))},
		{"no audience", logoutForm(rs(logoutClaims("aud", nil)))},
		{"no iat", logoutForm(rs(logoutClaims("iat", nil)))},
		{"iat in the future", logoutForm(rs(logoutClaims("iat", t0.Add(time.Hour))))},
		{"no exp, issued too long ago", logoutForm(rs(logoutClaims("exp", nil, "iat", t0.Add(-3*time.Minute))))},
		{"expired", logoutForm(rs(logoutClaims("exp", t0.Add(-time.Minute))))},
		{"no jti", logoutForm(rs(logoutClaims("jti", nil)))},
		{"no events", logoutForm(rs(logoutClaims("events", nil)))},
		{"events without the logout event", logoutForm(rs(logoutClaims("events", map[string]any{"http://schemas.openid.net/event/other": map[string]any{}})))},
		{"logout event not an object", logoutForm(rs(logoutClaims("events", map[string]any{backchannelLogoutEvent: "yes"})))},
		{"nonce present", logoutForm(rs(logoutClaims("nonce", "n-0S6_WzA2Mj")))},
		{"neither sub nor sid", logoutForm(rs(logoutClaims("sub", nil, "sid", nil)))},
		{"typ of an access token", logoutForm(signLogout(t, jwa.RS256(), k.rsa, "a", "at+jwt", logoutClaims()))},
		{"no logout_token", "other=1"},
		{"not a JWT", logoutForm("not-a-jwt")},
	}
	for _, c := range cases {
		b, rev := newTestLogout(t, clk)
		w := postLogout(b, c.body)
		if w.Code != http.StatusBadRequest || w.Body.String() != `{"error":"invalid_request"}` ||
			w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: %d %q, want 400 invalid_request", c.name, w.Code, w.Body.String())
		}
		if n := len(rev.List()); n != 0 {
			t.Errorf("%s: recorded %d entries", c.name, n)
		}
	}
}

func TestBackchannelLogoutReplay(t *testing.T) {
	k := keys()
	clk := newClock()
	b, _ := newTestLogout(t, clk)
	body := logoutForm(signLogout(t, jwa.RS256(), k.rsa, "a", "logout+jwt", logoutClaims()))
	if w := postLogout(b, body); w.Code != http.StatusOK {
		t.Fatalf("first: %d", w.Code)
	}
	if w := postLogout(b, body); w.Code != http.StatusBadRequest {
		t.Fatalf("replayed jti: %d, want 400", w.Code)
	}
	other := logoutForm(signLogout(t, jwa.RS256(), k.rsa, "a", "logout+jwt", logoutClaims("jti", "logout-2")))
	if w := postLogout(b, other); w.Code != http.StatusOK {
		t.Fatalf("another jti: %d", w.Code)
	}
}

func TestBackchannelLogoutMethodAndKeys(t *testing.T) {
	clk := newClock()
	b, _ := newTestLogout(t, clk)
	r := httptest.NewRequest(http.MethodGet, "/auth/backchannel-logout", nil)
	w := httptest.NewRecorder()
	b.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != http.MethodPost {
		t.Fatalf("GET: %d", w.Code)
	}
	// Keys never loaded: 503, so the provider retries rather than drops
	// the logout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := NewJWKS(ctx, JWKSConfig{URL: closedURL(t), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	b2, err := NewBackchannelLogout(BackchannelLogoutConfig{Issuer: testIssuer, Audience: "imagegate-client", JWKS: set, Revocations: NewRevocations(RevocationsConfig{}), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	k := keys()
	w = postLogout(b2, logoutForm(signLogout(t, jwa.RS256(), k.rsa, "a", "logout+jwt", logoutClaims())))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		body, _ := io.ReadAll(w.Body)
		t.Fatalf("keys down: %d %s", w.Code, body)
	}
}

func TestBackchannelLogoutRefusesCaller(t *testing.T) {
	// End to end in one process: a JWT session and the logout receiver
	// share the issuer's keys and the revocation set; after the logout the
	// session's cached token is refused.
	k := keys()
	clk := newClock()
	b, rev := newTestLogout(t, clk)
	j, err := NewJWT(JWTConfig{PublicKeyPEM: pemPublic(t, &k.rsa.PublicKey), Revocations: rev, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	access := sign(t, jwa.RS256(), k.rsa, "a", claims("sid", "s1"))
	g := NewGate(j, nil)
	if d := g.Image(bearer(access), Image{ID: "x"}); d.Verdict != Allowed {
		t.Fatal(d.Err)
	}
	if w := postLogout(b, logoutForm(signLogout(t, jwa.RS256(), k.rsa, "a", "logout+jwt", logoutClaims()))); w.Code != http.StatusOK {
		t.Fatal(w.Code)
	}
	if d := g.Image(bearer(access), Image{ID: "x"}); d.Verdict != Unauthenticated || d.Err == nil {
		t.Fatalf("after logout: %+v", d)
	}
}
