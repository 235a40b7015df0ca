package session

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// oidcProvider serves a discovery document and a JWKS on 127.0.0.1; it
// can be made to fail, and to name another issuer.
type oidcProvider struct {
	*httptest.Server
	mu        sync.Mutex
	down      bool
	issuer    string // overrides the issuer in the document when set
	jwks      []byte
	discovery atomic.Int64
}

func newOIDCProvider(t testing.TB, jwks []byte, down bool) *oidcProvider {
	p := &oidcProvider{jwks: jwks, down: down}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		down, iss, jwks := p.down, p.issuer, p.jwks
		p.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case discoveryPath:
			p.discovery.Add(1)
			if iss == "" {
				iss = p.URL
			}
			b, _ := jsonMarshal(map[string]any{"issuer": iss, "jwks_uri": p.URL + "/keys"})
			_, _ = w.Write(b)
		case "/keys":
			_, _ = w.Write(jwks)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *oidcProvider) set(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
}

func TestDiscoveryFindsKeys(t *testing.T) {
	k := keys()
	p := newOIDCProvider(t, jwksDoc(t, "a", &k.rsa.PublicKey), false)
	clk := newClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := NewDiscoveredJWKS(ctx, p.URL, JWKSConfig{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWT(JWTConfig{JWKS: set, Issuer: p.URL, Audience: "imagegate", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwa.RS256(), k.rsa, "a", claims("iss", p.URL))
	if id, _, err := j.Authenticate(bearer(tok), Image{}); err != nil || id.Subject != "alice" {
		t.Fatalf("discovered keys: %+v, %v", id, err)
	}
	// A trailing slash on the issuer is not doubled in the document's
	// address, but the issuer must then match the document exactly.
	if got := DiscoveryURL("https://id.test/realm/"); got != "https://id.test/realm/.well-known/openid-configuration" {
		t.Fatalf("DiscoveryURL = %q", got)
	}
}

func TestDiscoveryIssuerMustMatch(t *testing.T) {
	k := keys()
	p := newOIDCProvider(t, jwksDoc(t, "a", &k.rsa.PublicKey), false)
	p.set(func() { p.issuer = "https://evil.test" })
	clk := newClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := NewDiscoveredJWKS(ctx, p.URL, JWKSConfig{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Err(); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("Err() = %v, want an issuer mismatch", err)
	}
	j, err := NewJWT(JWTConfig{JWKS: set, Issuer: p.URL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = j.Authenticate(bearer(sign(t, jwa.RS256(), k.rsa, "a", claims("iss", p.URL))), Image{})
	if Classify(err) != Unavailable {
		t.Fatalf("issuer mismatch: %v, want Unavailable", err)
	}
}

func TestDiscoveryProviderDownAtStart(t *testing.T) {
	// The provider is down when the server starts: requests answer
	// Unavailable (503, Retry-After), the outage is reported once however
	// many retries fail, and the set loads by itself, with backoff, once
	// the provider is back.
	k := keys()
	p := newOIDCProvider(t, jwksDoc(t, "a", &k.rsa.PublicKey), true)
	var mu sync.Mutex
	var reports []error
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := NewDiscoveredJWKS(ctx, p.URL, JWKSConfig{
		RetryBackoff:       time.Millisecond,
		MinRefetchInterval: 20 * time.Millisecond,
		OnStateChange: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			reports = append(reports, err)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWT(JWTConfig{JWKS: set, Issuer: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwa.RS256(), k.rsa, "a", map[string]any{"sub": "alice", "iss": p.URL, "exp": time.Now().Add(time.Hour)})
	d := NewGate(j, nil).Image(bearer(tok), Image{ID: "x"})
	if d.Verdict != Unavailable || d.RetryAfter <= 0 {
		t.Fatalf("provider down: %+v, want Unavailable with Retry-After", d)
	}
	waitFor(t, "several failed retries", func() bool {
		set.mu.Lock()
		defer set.mu.Unlock()
		return set.failures >= 4
	})
	p.set(func() { p.down = false })
	waitFor(t, "the keys", func() bool { return set.Err() == nil && set.keys.Load() != nil })
	if _, _, err := j.Authenticate(bearer(tok), Image{}); err != nil {
		t.Fatalf("provider back: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 2 || reports[0] == nil || reports[1] != nil {
		t.Fatalf("reports = %v, want one error then one recovery", reports)
	}
	cancel()
	select {
	case <-set.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("retries did not stop with the context")
	}
}

func TestDiscoveryBackoff(t *testing.T) {
	k := &JWKS{backoff: time.Second, minRefetch: time.Minute, refresh: 15 * time.Minute}
	for _, c := range []struct {
		failures int
		want     time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {4, 8 * time.Second}, {7, time.Minute}, {100, time.Minute}} {
		k.failures = c.failures
		if got := k.nextDelay(); got != c.want {
			t.Errorf("%d failures: %v, want %v", c.failures, got, c.want)
		}
	}
}

func TestNewDiscoveredJWKSConfig(t *testing.T) {
	for _, iss := range []string{"", "id.test", "ftp://id.test"} {
		if _, err := NewDiscoveredJWKS(context.Background(), iss, JWKSConfig{}); err == nil {
			t.Errorf("issuer %q: want error", iss)
		}
	}
	if _, err := NewDiscoveredJWKS(context.Background(), "https://id.test", JWKSConfig{URL: "https://id.test/keys"}); err == nil {
		t.Error("issuer and url: want error")
	}
}
