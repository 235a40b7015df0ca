package session

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
)

func newTestJWKS(t *testing.T, url string, clk *fakeClock) (*JWKS, *JWT) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	set, err := NewJWKS(ctx, JWKSConfig{URL: url, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWT(JWTConfig{JWKS: set, Now: clk.Now, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return set, j
}

func TestJWKSRotation(t *testing.T) {
	k := keys()
	clk := newClock()
	srv := newJWKSServer(t, jwksDoc(t, "old", &k.rsa.PublicKey))
	_, j := newTestJWKS(t, srv.URL, clk)
	auth := func(kid string, key any) error {
		alg := jwa.RS256()
		if kid == "ec" {
			alg = jwa.ES256()
		}
		_, _, err := j.Authenticate(bearer(sign(t, alg, key, kid, claims())), Image{})
		return err
	}
	if got := srv.hits.Load(); got != 1 {
		t.Fatalf("fetches at start = %d, want 1", got)
	}
	if err := auth("old", k.rsa); err != nil {
		t.Fatal(err)
	}
	// The provider rotates: a token with the new kid triggers one refetch.
	srv.set(jwksDoc(t, "old", &k.rsa.PublicKey, "new", &k.rsa2.PublicKey), http.StatusOK)
	if err := auth("new", k.rsa2); err != nil {
		t.Fatalf("new kid after rotation: %v", err)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2", got)
	}
	// Within the minute, unknown kids do not refetch, however many.
	srv.set(jwksDoc(t, "new", &k.rsa2.PublicKey, "ec", &k.ec.PublicKey), http.StatusOK)
	for range 5 {
		if err := auth("ec", k.ec); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("unknown kid within the minute: %v", err)
		}
		clk.Add(10 * time.Second)
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want still 2", got)
	}
	if err := auth("old", k.rsa); err != nil {
		t.Fatalf("old kid still in the cached set: %v", err)
	}
	// A minute after the last refetch the next unknown kid refetches.
	clk.Add(10 * time.Second)
	if err := auth("ec", k.ec); err != nil {
		t.Fatalf("after a minute: %v", err)
	}
	if got := srv.hits.Load(); got != 3 {
		t.Fatalf("fetches = %d, want 3", got)
	}
	// The retired key is gone with the new set.
	if err := auth("old", k.rsa); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("retired kid: %v", err)
	}
}

func TestJWKSConcurrentUnknownKid(t *testing.T) {
	k := keys()
	clk := newClock()
	srv := newJWKSServer(t, jwksDoc(t, "a", &k.ec.PublicKey))
	_, j := newTestJWKS(t, srv.URL, clk)
	srv.set(jwksDoc(t, "a", &k.ec.PublicKey, "b", &k.ec2.PublicKey), http.StatusOK)
	tok := sign(t, jwa.ES256(), k.ec2, "b", claims())
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, _, err := j.Authenticate(bearer(tok), Image{})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := srv.hits.Load(); got != 2 {
		t.Fatalf("fetches = %d, want 2 (start + one refetch)", got)
	}
}

func TestJWKSRefreshFailureKeepsLastGoodSet(t *testing.T) {
	k := keys()
	clk := newClock()
	srv := newJWKSServer(t, jwksDoc(t, "a", &k.rsa.PublicKey))
	set, j := newTestJWKS(t, srv.URL, clk)
	tok := sign(t, jwa.RS256(), k.rsa, "a", claims())
	for _, fail := range []struct {
		name   string
		doc    []byte
		status int
	}{
		{"500", []byte("oops"), http.StatusInternalServerError},
		{"not json", []byte("<html>"), http.StatusOK},
		{"empty set", []byte(`{"keys":[]}`), http.StatusOK},
		{"only a secret", []byte(`{"keys":[{"kty":"oct","kid":"a","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`), http.StatusOK},
	} {
		srv.set(fail.doc, fail.status)
		if err := set.Refresh(context.Background()); err == nil || set.Err() == nil {
			t.Fatalf("%s: refresh succeeded", fail.name)
		}
		if _, _, err := j.Authenticate(bearer(tok), Image{}); err != nil {
			t.Fatalf("%s: last good set not kept: %v", fail.name, err)
		}
	}
	// The server goes away entirely.
	srv.Close()
	if err := set.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a closed server succeeded")
	}
	if _, _, err := j.Authenticate(bearer(tok), Image{}); err != nil {
		t.Fatalf("server down: last good set not kept: %v", err)
	}
}

func TestJWKSDownAtStart(t *testing.T) {
	k := keys()
	clk := newClock()
	set, j := newTestJWKS(t, closedURL(t), clk)
	if set.Err() == nil {
		t.Fatal("Err() = nil after a failed first fetch")
	}
	_, _, err := j.Authenticate(bearer(sign(t, jwa.RS256(), k.rsa, "a", claims())), Image{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("no key set: want ErrUnavailable, got %v", err)
	}
}

func TestJWKSIgnoresUnusableKeys(t *testing.T) {
	k := keys()
	clk := newClock()
	sig, _ := jwk.Import(&k.rsa.PublicKey)
	_ = sig.Set(jwk.KeyIDKey, "sig")
	enc, _ := jwk.Import(&k.rsa2.PublicKey)
	_ = enc.Set(jwk.KeyIDKey, "enc")
	_ = enc.Set(jwk.KeyUsageKey, "enc")
	ps, _ := jwk.Import(&k.rsa2.PublicKey)
	_ = ps.Set(jwk.KeyIDKey, "ps")
	_ = ps.Set(jwk.AlgorithmKey, jwa.PS256())
	oct, _ := jwk.Import(testSecret)
	_ = oct.Set(jwk.KeyIDKey, "oct")
	s := jwk.NewSet()
	for _, key := range []jwk.Key{sig, enc, ps, oct} {
		_ = s.AddKey(key)
	}
	doc, err := jsonMarshal(s)
	if err != nil {
		t.Fatal(err)
	}
	srv := newJWKSServer(t, doc)
	_, j := newTestJWKS(t, srv.URL, clk)
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"signature key", sign(t, jwa.RS256(), k.rsa, "sig", claims()), true},
		{"encryption key", sign(t, jwa.RS256(), k.rsa2, "enc", claims()), false},
		{"key pinned to PS256", sign(t, jwa.PS256(), k.rsa2, "ps", claims()), true},
		{"pinned key used with RS256", sign(t, jwa.RS256(), k.rsa2, "ps", claims()), false},
		{"secret from the set", sign(t, jwa.HS256(), testSecret, "oct", claims()), false},
	}
	for _, tc := range tests {
		_, _, err := j.Authenticate(bearer(tc.tok), Image{})
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestJWKSBackgroundStops(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwksDoc(t, "a", &k.rsa.PublicKey))
	ctx, cancel := context.WithCancel(context.Background())
	set, err := NewJWKS(ctx, JWKSConfig{URL: srv.URL, RefreshInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case <-set.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("background refresh did not stop")
	}
}

func TestJWKSBackgroundRefreshes(t *testing.T) {
	k := keys()
	srv := newJWKSServer(t, jwksDoc(t, "a", &k.rsa.PublicKey))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A real (short) interval: the loop's timer is the thing under test.
	if _, err := NewJWKS(ctx, JWKSConfig{URL: srv.URL, RefreshInterval: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a background refresh", func() bool { return srv.hits.Load() >= 3 })
}

func TestNewJWKSConfig(t *testing.T) {
	for _, u := range []string{"", "ftp://x/keys", "/keys", "http://"} {
		if _, err := NewJWKS(context.Background(), JWKSConfig{URL: u}); err == nil {
			t.Errorf("url %q: want error", u)
		}
	}
}
