package session

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// BenchmarkJWT measures Authenticate+Allow on the hit path: a valid token,
// with and without the verification cache.
func BenchmarkJWT(b *testing.B) {
	k := keys()
	clk := newClock()
	cases := []struct {
		name string
		cfg  JWTConfig
		tok  string
	}{
		{"HS256", JWTConfig{Secret: testSecret}, sign(b, jwa.HS256(), testSecret, "", claims())},
		{"ES256", JWTConfig{PublicKeyPEM: pemPublic(b, &k.ec.PublicKey)}, sign(b, jwa.ES256(), k.ec, "", claims())},
		{"RS256", JWTConfig{PublicKeyPEM: pemPublic(b, &k.rsa.PublicKey)}, sign(b, jwa.RS256(), k.rsa, "", claims())},
	}
	for _, tc := range cases {
		for _, cache := range []struct {
			name string
			size int
		}{{"cache", 0}, {"nocache", -1}} {
			b.Run(tc.name+"/"+cache.name, func(b *testing.B) {
				cfg := tc.cfg
				cfg.Now, cfg.CacheSize = clk.Now, cache.size
				cfg.Issuer, cfg.Audience = "https://idp.test", "imagegate"
				j, err := NewJWT(cfg)
				if err != nil {
					b.Fatal(err)
				}
				benchAuth(b, j, Any{}, bearer(tc.tok))
			})
		}
	}
	b.Run("HS256/cache+revocations", func(b *testing.B) {
		// The cached path with a revocation set holding 1000 other
		// subjects, sessions and tokens: the cost of checking it on every
		// request.
		rev := NewRevocations(RevocationsConfig{Now: clk.Now})
		for i := range 1000 {
			n := strconv.Itoa(i)
			if _, err := rev.Revoke(RevocationRequest{Subject: "u" + n, SessionID: "s" + n, TokenID: "j" + n}, SourceAdmin); err != nil {
				b.Fatal(err)
			}
		}
		j, err := NewJWT(JWTConfig{Secret: testSecret, Now: clk.Now, Revocations: rev})
		if err != nil {
			b.Fatal(err)
		}
		benchAuth(b, j, Any{}, bearer(sign(b, jwa.HS256(), testSecret, "", claims("sid", "s-alice", "jti", "j-alice"))))
	})
	b.Run("HS256/cookie/cache+claim", func(b *testing.B) {
		j, err := NewJWT(JWTConfig{Sources: []TokenSource{{Cookie: "session"}}, Secret: testSecret, Now: clk.Now})
		if err != nil {
			b.Fatal(err)
		}
		p, err := NewClaim("images", "{id}")
		if err != nil {
			b.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/img/img1/public", nil)
		r.AddCookie(&http.Cookie{Name: "csrftoken", Value: "abcdefabcdefabcdefabcdef"})
		r.AddCookie(&http.Cookie{Name: "session", Value: sign(b, jwa.HS256(), testSecret, "", claims("images", []string{"img0", "img1"}))})
		benchAuth(b, j, p, r)
	})
}

// BenchmarkIntrospectCached measures Authenticate+Allow answered by a
// cached decision; the app is only called once.
func BenchmarkIntrospectCached(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-User-Id", "alice")
	}))
	defer app.Close()
	clk := newClock()
	for _, perImage := range []bool{false, true} {
		name := "session"
		if perImage {
			name = "per_image"
		}
		b.Run(name, func(b *testing.B) {
			i, err := NewIntrospect(IntrospectConfig{URL: app.URL, Cookies: []string{"sessionid"}, PerImage: perImage, Now: clk.Now})
			if err != nil {
				b.Fatal(err)
			}
			r := httptest.NewRequest(http.MethodGet, "/img/img1/public", nil)
			r.AddCookie(&http.Cookie{Name: "csrftoken", Value: "abcdefabcdefabcdefabcdef"})
			r.AddCookie(&http.Cookie{Name: "sessionid", Value: "k3b9x0q8w7e6r5t4y3u2i1o0p9a8s7d6"})
			benchAuth(b, i, Any{}, r)
		})
	}
}

func benchAuth(b *testing.B, a Authenticator, p Policy, r *http.Request) {
	img := Image{ID: "img1", Variant: "public"}
	ctx := context.Background()
	// Prime caches and check the path succeeds before timing it.
	id, _, err := a.Authenticate(r, img)
	if err != nil {
		b.Fatal(err)
	}
	if err := p.Allow(ctx, id, img); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		id, _, err := a.Authenticate(r, img)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.Allow(ctx, id, img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkGate measures the gate's own cost on top of a cached JWT check:
// Gate.Image should allocate nothing beyond the authenticator.
func BenchmarkGate(b *testing.B) {
	clk := newClock()
	j, err := NewJWT(JWTConfig{Secret: testSecret, Now: clk.Now})
	if err != nil {
		b.Fatal(err)
	}
	g := NewGate(j, Any{})
	r := bearer(sign(b, jwa.HS256(), testSecret, "", claims()))
	img := Image{ID: "img1", Variant: "public"}
	if d := g.Image(r, img); d.Verdict != Allowed {
		b.Fatal(d.Err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := g.Image(r, img); d.Verdict != Allowed {
			b.Fatal(d.Err)
		}
	}
}
