package session

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// authServer is an RFC 7662 introspection endpoint on 127.0.0.1 that
// answers from a table of tokens, checks the client's credentials and the
// form, and counts its calls.
type authServer struct {
	*httptest.Server
	t      testing.TB
	calls  atomic.Int64
	mu     sync.Mutex
	tokens map[string]map[string]any // token -> answer
	status int                       // non-200 to fail
	delay  time.Duration
}

func newAuthServer(t testing.TB) *authServer {
	s := &authServer{t: t, tokens: map[string]map[string]any{}, status: http.StatusOK}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		s.mu.Lock()
		status, delay := s.status, s.delay
		s.mu.Unlock()
		time.Sleep(delay)
		// RFC 6749 §2.3.1: the credentials are form-encoded inside Basic.
		id, secret, ok := r.BasicAuth()
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if r.Method != http.MethodPost || !ok || id != "imagegate" || secret != "s3cret&=" ||
			r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
			http.Error(w, "bad client", http.StatusUnauthorized)
			return
		}
		if err := r.ParseForm(); err != nil || r.PostForm.Get("token_type_hint") != "access_token" {
			http.Error(w, "bad form", http.StatusBadRequest)
			return
		}
		if status != http.StatusOK {
			http.Error(w, "failing", status)
			return
		}
		s.mu.Lock()
		ans, ok := s.tokens[r.PostForm.Get("token")]
		s.mu.Unlock()
		if !ok {
			ans = map[string]any{"active": false}
		}
		b, _ := jsonMarshal(ans)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *authServer) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// activeAnswer is the answer for alice's token, changed by kv pairs (a nil
// value deletes the member).
func activeAnswer(kv ...any) map[string]any {
	a := map[string]any{
		"active":    true,
		"sub":       "alice",
		"iss":       "https://idp.test",
		"aud":       []string{"https://img.test", "other"},
		"scope":     "openid images:read",
		"client_id": "app",
		"exp":       t0.Add(time.Hour).Unix(),
		"iat":       t0.Add(-time.Minute).Unix(),
		"sid":       "s1",
		"jti":       "j1",
		"images":    []string{"img1", "users/alice/*"},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(a, kv[i].(string))
			continue
		}
		a[kv[i].(string)] = kv[i+1]
	}
	return a
}

func newTestOAuth2(t testing.TB, s *authServer, clk *fakeClock, mod func(*OAuth2IntrospectConfig)) *OAuth2Introspect {
	t.Helper()
	cfg := OAuth2IntrospectConfig{
		Endpoint:     s.URL + "/oauth2/introspect",
		ClientID:     "imagegate",
		ClientSecret: []byte("s3cret&="),
		Now:          clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	o, err := NewOAuth2Introspect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOAuth2Active(t *testing.T) {
	s := newAuthServer(t)
	s.tokens["tok-alice"] = activeAnswer()
	clk := newClock()
	o := newTestOAuth2(t, s, clk, func(c *OAuth2IntrospectConfig) {
		c.Audience, c.Issuer, c.Scope = "https://img.test", "https://idp.test", "images:read"
	})
	id, out, err := o.Authenticate(bearer("tok-alice"), Image{})
	if err != nil || out.CacheHit || id.Subject != "alice" {
		t.Fatalf("active: %+v %+v %v", id, out, err)
	}
	if exp, ok := id.Claims["exp"].(time.Time); !ok || !exp.Equal(t0.Add(time.Hour)) {
		t.Errorf("exp claim = %#v, want a time.Time like a JWT's", id.Claims["exp"])
	}
	if aud, ok := id.Claims["aud"].([]string); !ok || len(aud) != 2 {
		t.Errorf("aud claim = %#v, want []string", id.Claims["aud"])
	}
	if id.SessionID != "s1" || id.TokenID != "j1" || !id.IssuedAt.Equal(t0.Add(-time.Minute)) {
		t.Errorf("sid/jti/iat = %q %q %v", id.SessionID, id.TokenID, id.IssuedAt)
	}
	hydra := newTestOAuth2(t, s, clk, nil)
	s.tokens["tok-hydra"] = activeAnswer("sid", nil, "ext", map[string]any{"sid": "s-hydra"})
	if id, _, err := hydra.Authenticate(bearer("tok-hydra"), Image{}); err != nil || id.SessionID != "s-hydra" {
		t.Errorf("sid in ext: %q, %v", id.SessionID, err)
	}
	if _, ok := id.Claims["active"]; ok {
		t.Error(`"active" is not a claim`)
	}
	// The answer's members feed `authorize claim` like JWT claims.
	p, err := NewClaim("images", "{id}")
	if err != nil {
		t.Fatal(err)
	}
	g := NewGate(o, p)
	for img, want := range map[string]Verdict{"img1": Allowed, "users/alice/x": Allowed, "img2": Forbidden} {
		if d := g.Image(bearer("tok-alice"), Image{ID: img}); d.Verdict != want {
			t.Errorf("claim policy, %s: %v (%v), want %v", img, d.Verdict, d.Err, want)
		}
	}
	if n := s.calls.Load(); n != 2 {
		t.Errorf("%d calls, want 2, alice's and the Hydra-shaped token's (the rest cached)", n)
	}
	if got := o.Challenge(); got != "Bearer" {
		t.Errorf("Challenge = %q", got)
	}
}

func TestOAuth2Refusals(t *testing.T) {
	s := newAuthServer(t)
	clk := newClock()
	cases := []struct {
		name   string
		answer map[string]any // nil: unknown token, active:false
	}{
		{"inactive", nil},
		{"wrong audience", activeAnswer("aud", "https://other.test")},
		{"no audience", activeAnswer("aud", nil)},
		{"wrong issuer", activeAnswer("iss", "https://evil.test")},
		{"scope missing", activeAnswer("scope", "openid images:write")},
		{"scope is a prefix", activeAnswer("scope", "images:read:all")},
		{"expired", activeAnswer("exp", t0.Add(-time.Second).Unix())},
		{"not yet valid", activeAnswer("nbf", t0.Add(time.Hour).Unix())},
		{"no subject", activeAnswer("sub", nil)},
		{"exp not a number", activeAnswer("exp", "soon")},
	}
	for i, c := range cases {
		tok := "tok-" + string(rune('a'+i))
		if c.answer != nil {
			s.tokens[tok] = c.answer
		}
		o := newTestOAuth2(t, s, clk, func(c *OAuth2IntrospectConfig) {
			c.Audience, c.Issuer, c.Scope = "https://img.test", "https://idp.test", "images:read"
		})
		d := NewGate(o, nil).Image(bearer(tok), Image{ID: "x"})
		if d.Verdict != Unauthenticated {
			t.Errorf("%s: %v (%v), want Unauthenticated", c.name, d.Verdict, d.Err)
		}
		if d.Err != nil && strings.Contains(d.Err.Error(), tok) {
			t.Errorf("%s: the error quotes the token: %v", c.name, d.Err)
		}
	}
	o := newTestOAuth2(t, s, clk, nil)
	before := s.calls.Load()
	for _, r := range []*http.Request{bearer(""), basicAuth()} {
		if _, _, err := o.Authenticate(r, Image{}); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("no bearer token: %v", err)
		}
	}
	if s.calls.Load() != before {
		t.Error("a request without a token made a call")
	}
}

func basicAuth() *http.Request {
	r := bearer("")
	r.SetBasicAuth("u", "p")
	return r
}

func TestOAuth2CacheBounds(t *testing.T) {
	s := newAuthServer(t)
	s.tokens["long"] = activeAnswer()
	s.tokens["short"] = activeAnswer("exp", t0.Add(10*time.Second).Unix())
	clk := newClock()
	o := newTestOAuth2(t, s, clk, func(c *OAuth2IntrospectConfig) { c.CacheTTL = 30 * time.Second })
	auth := func(tok string) error {
		_, _, err := o.Authenticate(bearer(tok), Image{})
		return err
	}
	for _, tok := range []string{"long", "short", "long", "short"} {
		if err := auth(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.calls.Load(); n != 2 {
		t.Fatalf("%d calls, want 2", n)
	}
	// Revoked at the provider: seen once cache_ttl has passed, and the
	// short token's answer is not used past its exp.
	s.set(func() { delete(s.tokens, "long"); delete(s.tokens, "short") })
	clk.Add(10 * time.Second)
	if err := auth("short"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("past exp: %v", err)
	}
	if err := auth("long"); err != nil {
		t.Fatalf("within cache_ttl: %v", err)
	}
	clk.Add(20 * time.Second)
	if err := auth("long"); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("revoked at the provider, past cache_ttl: %v", err)
	}
}

func TestOAuth2ProviderDown(t *testing.T) {
	// Provider errors and timeouts fail closed (503) while cached answers
	// keep working; nothing failed is cached.
	s := newAuthServer(t)
	s.tokens["cached"] = activeAnswer()
	s.tokens["new"] = activeAnswer("sub", "bob")
	clk := newClock()
	var calls []error
	var mu sync.Mutex
	o := newTestOAuth2(t, s, clk, func(c *OAuth2IntrospectConfig) {
		c.Timeout = 50 * time.Millisecond
		c.OnCall = func(d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, err)
		}
	})
	g := NewGate(o, nil)
	if d := g.Image(bearer("cached"), Image{ID: "x"}); d.Verdict != Allowed {
		t.Fatal(d.Err)
	}
	for _, fail := range []func(){
		func() { s.status = http.StatusInternalServerError },
		func() { s.status, s.delay = http.StatusOK, 200*time.Millisecond },
	} {
		s.set(fail)
		d := g.Image(bearer("new"), Image{ID: "x"})
		if d.Verdict != Unavailable || d.RetryAfter <= 0 {
			t.Fatalf("provider failing: %+v, want Unavailable", d)
		}
		if d := g.Image(bearer("cached"), Image{ID: "x"}); d.Verdict != Allowed || !d.CacheHit {
			t.Fatalf("cached answer while the provider fails: %+v", d)
		}
	}
	s.set(func() { s.delay = 0 })
	if d := g.Image(bearer("new"), Image{ID: "x"}); d.Verdict != Allowed || d.Identity.Subject != "bob" {
		t.Fatalf("provider back: %+v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 4 || calls[0] != nil || calls[1] == nil || calls[2] == nil || calls[3] != nil {
		t.Fatalf("OnCall saw %v", calls)
	}
}

func TestOAuth2Revoked(t *testing.T) {
	s := newAuthServer(t)
	s.tokens["t"] = activeAnswer()
	clk := newClock()
	rev := NewRevocations(RevocationsConfig{Now: clk.Now})
	o := newTestOAuth2(t, s, clk, func(c *OAuth2IntrospectConfig) { c.Revocations = rev })
	if _, _, err := o.Authenticate(bearer("t"), Image{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rev.Revoke(RevocationRequest{SessionID: "s1"}, SourceBackchannel); err != nil {
		t.Fatal(err)
	}
	_, out, err := o.Authenticate(bearer("t"), Image{})
	if !errors.Is(err, ErrRevoked) || !out.CacheHit {
		t.Fatalf("cached answer, session revoked: %v %+v", err, out)
	}
}

func TestOAuth2CookieAndCacheKey(t *testing.T) {
	s := newAuthServer(t)
	s.tokens["c"] = activeAnswer()
	clk := newClock()
	o := newTestOAuth2(t, s, clk, func(c *OAuth2IntrospectConfig) { c.Source = TokenSource{Cookie: "at"} })
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.AddCookie(&http.Cookie{Name: "at", Value: "c"})
	if _, _, err := o.Authenticate(r, Image{}); err != nil {
		t.Fatal(err)
	}
	if got := o.Vary(); len(got) != 1 || got[0] != "Cookie" || o.Challenge() != "" {
		t.Fatalf("Vary %v, Challenge %q", got, o.Challenge())
	}
	// The cache is keyed with a secret per authenticator: the same token
	// hashes differently in another, and differently from its SHA-256.
	o2 := newTestOAuth2(t, s, clk, nil)
	if o.key("c") == o2.key("c") || o.key("c") == o.key("d") {
		t.Fatal("cache keys are not keyed per authenticator")
	}
}

func TestNewOAuth2IntrospectConfig(t *testing.T) {
	good := OAuth2IntrospectConfig{Endpoint: "https://id.test/introspect", ClientID: "c", ClientSecret: []byte("s")}
	if _, err := NewOAuth2Introspect(good); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*OAuth2IntrospectConfig){
		"no endpoint":   func(c *OAuth2IntrospectConfig) { c.Endpoint = "" },
		"relative":      func(c *OAuth2IntrospectConfig) { c.Endpoint = "/introspect" },
		"no client id":  func(c *OAuth2IntrospectConfig) { c.ClientID = "" },
		"no secret":     func(c *OAuth2IntrospectConfig) { c.ClientSecret = nil },
		"cookie+header": func(c *OAuth2IntrospectConfig) { c.Source = TokenSource{Cookie: "a", Header: "b"} },
	} {
		cfg := good
		mod(&cfg)
		if _, err := NewOAuth2Introspect(cfg); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}
