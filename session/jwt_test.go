package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
)

func bearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/img/x/public", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

// verifier is one way of configuring keys, with a signer for good tokens.
type verifier struct {
	name   string
	cfg    func(t *testing.T, clk *fakeClock) JWTConfig
	good   func(t *testing.T, c map[string]any) string
	forged func(t *testing.T, c map[string]any) string // same alg, other key
}

func verifiers() []verifier {
	k := keys()
	jwksCfg := func(t *testing.T, clk *fakeClock) JWTConfig {
		srv := newJWKSServer(t, jwksDoc(t, "rs1", &k.rsa.PublicKey, "ec1", &k.ec.PublicKey))
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		set, err := NewJWKS(ctx, JWKSConfig{URL: srv.URL, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return JWTConfig{JWKS: set}
	}
	return []verifier{
		{
			name: "HS256 secret",
			cfg:  func(t *testing.T, _ *fakeClock) JWTConfig { return JWTConfig{Secret: testSecret} },
			good: func(t *testing.T, c map[string]any) string { return sign(t, jwa.HS256(), testSecret, "", c) },
			forged: func(t *testing.T, c map[string]any) string {
				return sign(t, jwa.HS256(), []byte(strings.Repeat("x", 32)), "", c)
			},
		},
		{
			name: "HS512 secret",
			cfg:  func(t *testing.T, _ *fakeClock) JWTConfig { return JWTConfig{Secret: testSecret} },
			good: func(t *testing.T, c map[string]any) string { return sign(t, jwa.HS512(), testSecret, "", c) },
			forged: func(t *testing.T, c map[string]any) string {
				return sign(t, jwa.HS512(), []byte(strings.Repeat("x", 32)), "", c)
			},
		},
		{
			name: "RS256 PEM",
			cfg: func(t *testing.T, _ *fakeClock) JWTConfig {
				return JWTConfig{PublicKeyPEM: pemPublic(t, &k.rsa.PublicKey)}
			},
			good:   func(t *testing.T, c map[string]any) string { return sign(t, jwa.RS256(), k.rsa, "", c) },
			forged: func(t *testing.T, c map[string]any) string { return sign(t, jwa.RS256(), k.rsa2, "", c) },
		},
		{
			name: "PS384 PEM",
			cfg: func(t *testing.T, _ *fakeClock) JWTConfig {
				return JWTConfig{PublicKeyPEM: pemPublic(t, &k.rsa.PublicKey)}
			},
			good:   func(t *testing.T, c map[string]any) string { return sign(t, jwa.PS384(), k.rsa, "", c) },
			forged: func(t *testing.T, c map[string]any) string { return sign(t, jwa.PS384(), k.rsa2, "", c) },
		},
		{
			name: "ES256 PEM",
			cfg: func(t *testing.T, _ *fakeClock) JWTConfig {
				return JWTConfig{PublicKeyPEM: pemPublic(t, &k.ec.PublicKey)}
			},
			good:   func(t *testing.T, c map[string]any) string { return sign(t, jwa.ES256(), k.ec, "", c) },
			forged: func(t *testing.T, c map[string]any) string { return sign(t, jwa.ES256(), k.ec2, "", c) },
		},
		{
			name: "EdDSA PEM",
			cfg: func(t *testing.T, _ *fakeClock) JWTConfig {
				return JWTConfig{PublicKeyPEM: pemPublic(t, k.ed.Public())}
			},
			good:   func(t *testing.T, c map[string]any) string { return sign(t, jwa.EdDSA(), k.ed, "", c) },
			forged: func(t *testing.T, c map[string]any) string { return sign(t, jwa.EdDSA(), k.ed2, "", c) },
		},
		{
			name:   "RS256 JWKS",
			cfg:    jwksCfg,
			good:   func(t *testing.T, c map[string]any) string { return sign(t, jwa.RS256(), k.rsa, "rs1", c) },
			forged: func(t *testing.T, c map[string]any) string { return sign(t, jwa.RS256(), k.rsa2, "rs1", c) },
		},
		{
			name:   "ES256 JWKS",
			cfg:    jwksCfg,
			good:   func(t *testing.T, c map[string]any) string { return sign(t, jwa.ES256(), k.ec, "ec1", c) },
			forged: func(t *testing.T, c map[string]any) string { return sign(t, jwa.ES256(), k.ec2, "ec1", c) },
		},
	}
}

func TestJWTTokens(t *testing.T) {
	k := keys()
	rsaPEM := pemPublic(t, &k.rsa.PublicKey)
	for _, v := range verifiers() {
		t.Run(v.name, func(t *testing.T) {
			clk := newClock()
			cfg := v.cfg(t, clk)
			cfg.Now = clk.Now
			cfg.Issuer = "https://idp.test"
			cfg.Audience = "imagegate"
			cfg.CacheSize = -1 // every case verifies
			j, err := NewJWT(cfg)
			if err != nil {
				t.Fatal(err)
			}
			good := v.good(t, claims())
			parts := strings.Split(good, ".")
			other := strings.Split(v.good(t, claims("sub", "mallory")), ".")

			tests := []struct {
				name   string
				tok    string
				ok     bool
				reason string // a substring of the error, if it is the same for every key
			}{
				{"good", good, true, ""},
				{"expired inside leeway", v.good(t, claims("exp", t0.Add(-10*time.Second))), true, ""},
				{"expired", v.good(t, claims("exp", t0.Add(-time.Minute))), false, "token expired"},
				{"not yet valid", v.good(t, claims("nbf", t0.Add(time.Hour))), false, "not valid yet"},
				{"issued in the future", v.good(t, claims("iat", t0.Add(time.Hour))), false, "issued in the future"},
				{"wrong issuer", v.good(t, claims("iss", "https://evil.test")), false, "wrong issuer"},
				{"no issuer", v.good(t, claims("iss", nil)), false, `token has no issuer claim "iss"`},
				{"wrong audience", v.good(t, claims("aud", "other")), false, "wrong audience"},
				{"no audience", v.good(t, claims("aud", nil)), false, `token has no audience claim "aud"`},
				{"missing exp", v.good(t, claims("exp", nil)), false, `token has no expiry claim "exp"`},
				{"missing subject", v.good(t, claims("sub", nil)), false, `token has no subject claim "sub"`},
				{"empty subject", v.good(t, claims("sub", "")), false, `subject claim "sub" is empty`},
				{"alg none", unsigned(t, claims()), false, ""},
				{"alg none with signature", unsigned(t, claims()) + parts[2], false, ""},
				{"HS256 with the RSA public key", sign(t, jwa.HS256(), rsaPEM, "rs1", claims()), false, ""},
				{"HS256 with the RSA public key, no kid", sign(t, jwa.HS256(), rsaPEM, "", claims()), false, ""},
				{"tampered payload", parts[0] + "." + other[1] + "." + parts[2], false, "invalid signature"},
				{"signed by another key", v.forged(t, claims()), false, "invalid signature"},
				{"tampered header", strings.Replace(good, parts[0], parts[0][:len(parts[0])-2]+"fQ", 1), false, ""},
				{"truncated signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])/2], false, ""},
				{"oversized", v.good(t, claims("pad", strings.Repeat("a", 9000))), false, "larger than 8192"},
				{"garbage", "not.a.jwt", false, ""},
				{"two segments", parts[0] + "." + parts[1], false, ""},
				{"empty", "", false, "no token"},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					id, _, err := j.Authenticate(bearer(tc.tok), Image{ID: "x", Variant: "public"})
					if tc.ok {
						if err != nil {
							t.Fatalf("want ok, got %v", err)
						}
						if id.Subject != "alice" || id.Claims["sub"] != "alice" {
							t.Fatalf("identity = %+v", id)
						}
						return
					}
					if !errors.Is(err, ErrUnauthenticated) {
						t.Fatalf("want ErrUnauthenticated, got %v", err)
					}
					if !strings.Contains(err.Error(), tc.reason) {
						t.Fatalf("error %q does not say %q", err, tc.reason)
					}
					if tc.tok != "" && len(tc.tok) > 20 && (strings.Contains(err.Error(), tc.tok[10:20]) || strings.Contains(err.Error(), parts[2])) {
						t.Fatalf("error leaks the token: %v", err)
					}
				})
			}
		})
	}
}

func TestJWTUnknownKid(t *testing.T) {
	k := keys()
	clk := newClock()
	srv := newJWKSServer(t, jwksDoc(t, "rs1", &k.rsa.PublicKey))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := NewJWKS(ctx, JWKSConfig{URL: srv.URL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWT(JWTConfig{JWKS: set, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []string{"nope", ""} {
		// With one key in the set a kid-less token uses it; signed by
		// another key it still fails.
		_, _, err = j.Authenticate(bearer(sign(t, jwa.RS256(), k.rsa2, kid, claims())), Image{})
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("kid %q: want ErrUnauthenticated, got %v", kid, err)
		}
	}
	if _, _, err := j.Authenticate(bearer(sign(t, jwa.RS256(), k.rsa, "", claims())), Image{}); err != nil {
		t.Fatalf("kid-less token with a one-key set: %v", err)
	}
}

func TestJWTSources(t *testing.T) {
	clk := newClock()
	alice := sign(t, jwa.HS256(), testSecret, "", claims())
	bob := sign(t, jwa.HS256(), testSecret, "", claims("sub", "bob"))
	tests := []struct {
		name      string
		sources   []TokenSource
		cookie    string
		auth      string
		other     string
		want      string // subject, or "" for ErrUnauthenticated
		challenge string
	}{
		{"cookie", []TokenSource{{Cookie: "session"}}, alice, "", "", "alice", ""},
		{"cookie ignores header", []TokenSource{{Cookie: "session"}}, "", "Bearer " + alice, "", "", ""},
		{"header", []TokenSource{{Header: "Authorization"}}, "", "Bearer " + alice, "", "alice", "Bearer"},
		{"bearer is case-insensitive", []TokenSource{{Header: "authorization"}}, "", "bearer " + alice, "", "alice", "Bearer"},
		{"basic is not a token", []TokenSource{{Header: "Authorization"}}, "", "Basic YWxpY2U6cHc=", "", "", "Bearer"},
		{"first present source wins", []TokenSource{{Cookie: "session"}, {Header: "Authorization"}}, alice, "Bearer " + bob, "", "alice", "Bearer"},
		{"falls through to header", []TokenSource{{Cookie: "session"}, {Header: "Authorization"}}, "", "Bearer " + bob, "", "bob", "Bearer"},
		{"first present source is used even if bad", []TokenSource{{Cookie: "session"}, {Header: "Authorization"}}, "junk", "Bearer " + bob, "", "", "Bearer"},
		{"custom header is bare", []TokenSource{{Header: "X-Token"}}, "", "", bob, "bob", ""},
		{"default is the Authorization header", nil, alice, "Bearer " + bob, "", "bob", "Bearer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJWT(JWTConfig{Sources: tc.sources, Secret: testSecret, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			if j.Challenge() != tc.challenge {
				t.Errorf("Challenge() = %q, want %q", j.Challenge(), tc.challenge)
			}
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.cookie != "" {
				r.AddCookie(&http.Cookie{Name: "session", Value: tc.cookie})
			}
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.other != "" {
				r.Header.Set("X-Token", tc.other)
			}
			id, _, err := j.Authenticate(r, Image{})
			if tc.want == "" {
				if !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("want ErrUnauthenticated, got %v", err)
				}
				return
			}
			if err != nil || id.Subject != tc.want {
				t.Fatalf("got %q, %v; want %q", id.Subject, err, tc.want)
			}
		})
	}
}

func TestJWTCache(t *testing.T) {
	k := keys()
	clk := newClock()
	j, err := NewJWT(JWTConfig{PublicKeyPEM: pemPublic(t, &k.ec.PublicKey), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwa.ES256(), k.ec, "", claims("exp", t0.Add(time.Minute), "images", []string{"a", "b"}))
	steps := []struct {
		advance time.Duration
		hit     bool
		ok      bool
	}{
		{0, false, true},
		{0, true, true},
		{59 * time.Second, true, true},
		// At exp the cache no longer answers; the leeway still accepts.
		{time.Second, false, true},
		{10 * time.Second, false, true},
		{time.Minute, false, false},
	}
	for i, s := range steps {
		clk.Add(s.advance)
		id, out, err := j.Authenticate(bearer(tok), Image{})
		if (err == nil) != s.ok || out.CacheHit != s.hit {
			t.Fatalf("step %d: hit=%v err=%v; want hit=%v ok=%v", i, out.CacheHit, err, s.hit, s.ok)
		}
		if s.ok && (id.Subject != "alice" || len(id.Claims["images"].([]any)) != 2) {
			t.Fatalf("step %d: identity %+v", i, id)
		}
	}
	// A tampered copy of a cached token is not a hit: a hit compares the
	// whole token.
	bad := tok[:len(tok)-3] + "AAA"
	if _, out, err := j.Authenticate(bearer(bad), Image{}); err == nil || out.CacheHit {
		t.Fatalf("tampered token: hit=%v err=%v", out.CacheHit, err)
	}
}

func TestJWTSubjectClaim(t *testing.T) {
	clk := newClock()
	j, err := NewJWT(JWTConfig{Secret: testSecret, SubjectClaim: "uid", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		uid  any
		want string
	}{{"u-1", "u-1"}, {float64(42), "42"}, {1.5, ""}, {nil, ""}, {true, ""}} {
		tok := sign(t, jwa.HS256(), testSecret, "", claims("uid", tc.uid))
		id, _, err := j.Authenticate(bearer(tok), Image{})
		if tc.want == "" {
			if !errors.Is(err, ErrUnauthenticated) {
				t.Errorf("uid %v: want ErrUnauthenticated, got %v", tc.uid, err)
			}
			continue
		}
		if err != nil || id.Subject != tc.want {
			t.Errorf("uid %v: got %q, %v", tc.uid, id.Subject, err)
		}
	}
}

func TestNewJWTConfig(t *testing.T) {
	k := keys()
	priv := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	tests := []struct {
		name string
		cfg  JWTConfig
	}{
		{"no key", JWTConfig{}},
		{"two keys", JWTConfig{Secret: testSecret, PublicKeyPEM: pemPublic(t, &k.ec.PublicKey)}},
		{"short secret", JWTConfig{Secret: []byte("short")}},
		{"not PEM", JWTConfig{PublicKeyPEM: []byte("hello")}},
		{"private key", JWTConfig{PublicKeyPEM: priv}},
		{"bad source", JWTConfig{Secret: testSecret, Sources: []TokenSource{{}}}},
		{"both in one source", JWTConfig{Secret: testSecret, Sources: []TokenSource{{Cookie: "a", Header: "b"}}}},
	}
	for _, tc := range tests {
		if _, err := NewJWT(tc.cfg); err == nil {
			t.Errorf("%s: want error", tc.name)
		} else if bytesContain(err.Error(), testSecret) {
			t.Errorf("%s: error leaks the secret: %v", tc.name, err)
		}
	}
}

func bytesContain(s string, b []byte) bool { return len(b) > 0 && strings.Contains(s, string(b)) }

func TestMintHS256(t *testing.T) {
	clk := newClock()
	tok, err := MintHS256(testSecret, "alice", time.Hour, map[string]string{"images": "img1", "sub": "mallory"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	j, err := NewJWT(JWTConfig{Secret: testSecret, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := j.Authenticate(bearer(tok), Image{})
	if err != nil || id.Subject != "alice" || id.Claims["images"] != "img1" {
		t.Fatalf("minted token: %+v, %v", id, err)
	}
	clk.Add(time.Hour + time.Minute)
	if _, _, err := j.Authenticate(bearer(tok), Image{}); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("after ttl: %v", err)
	}
	for _, bad := range []struct {
		secret []byte
		sub    string
		ttl    time.Duration
	}{{[]byte("short"), "a", time.Hour}, {testSecret, "", time.Hour}, {testSecret, "a", 0}} {
		if _, err := MintHS256(bad.secret, bad.sub, bad.ttl, nil, t0); err == nil {
			t.Errorf("MintHS256(%q, %q, %v): want error", bad.secret, bad.sub, bad.ttl)
		}
	}
}

// signRaw signs payload as it is, so that claims can have types that
// jwt.Sign would not produce.
func signRaw(t *testing.T, payload string) string {
	t.Helper()
	b, err := jws.Sign([]byte(payload), jws.WithKey(jwa.HS256(), testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWTRefusalReasons checks that a refused token is logged with the
// real reason: a well-signed token with a claim of the wrong type is not
// "invalid signature".
func TestJWTRefusalReasons(t *testing.T) {
	clk := newClock()
	const exp = `"exp":1900000000`
	tests := []struct {
		name, subjectClaim, tok, reason string
	}{
		{"numeric sub", "", signRaw(t, `{"sub":42,`+exp+`}`), `subject claim "sub" is not a string`},
		{"array sub", "", signRaw(t, `{"sub":["a"],`+exp+`}`), `subject claim "sub" is not a string`},
		{"numeric iss", "", signRaw(t, `{"sub":"a","iss":1,`+exp+`}`), `issuer claim "iss" is not a string`},
		{"numeric aud", "", signRaw(t, `{"sub":"a","aud":5,`+exp+`}`), `audience claim "aud" is not a string or an array of strings`},
		{"aud array of numbers", "", signRaw(t, `{"sub":"a","aud":[5],`+exp+`}`), `audience claim "aud" is not a string or an array of strings`},
		{"exp a word", "", signRaw(t, `{"sub":"a","exp":"soon"}`), `expiry claim "exp" is not a number`},
		{"nbf an object", "", signRaw(t, `{"sub":"a","nbf":{},`+exp+`}`), `not-before claim "nbf" is not a number`},
		{"iat a bool", "", signRaw(t, `{"sub":"a","iat":true,`+exp+`}`), `issued-at claim "iat" is not a number`},
		{"numeric jti", "", signRaw(t, `{"sub":"a","jti":7,`+exp+`}`), `token id claim "jti" is not a string`},
		{"claims not an object", "", signRaw(t, `["sub","a"]`), "malformed token: claims are not a JSON object"},
		{"claims not JSON", "", signRaw(t, `sub=a`), "malformed token: claims are not a JSON object"},
		{"truncated", "", signRaw(t, `{"sub":42,`+exp+`}`)[:20], "malformed token"},
		{"custom subject missing", "uid", signRaw(t, `{"sub":"a",`+exp+`}`), `token has no subject claim "uid"`},
		{"custom subject bool", "uid", signRaw(t, `{"uid":true,`+exp+`}`), `subject claim "uid" is not a string or an integer`},
		{"custom subject fraction", "uid", signRaw(t, `{"uid":1.5,`+exp+`}`), `subject claim "uid" is not an integer`},
		{"custom subject empty", "uid", signRaw(t, `{"uid":"",`+exp+`}`), `subject claim "uid" is empty`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, err := NewJWT(JWTConfig{Secret: testSecret, SubjectClaim: tc.subjectClaim, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = j.Authenticate(bearer(tc.tok), Image{})
			if !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("want ErrUnauthenticated, got %v", err)
			}
			if want := "unauthenticated: " + tc.reason; err.Error() != want {
				t.Fatalf("error %q, want %q", err, want)
			}
		})
	}
	// A bad claim does not hide a bad signature: jwx checks the signature
	// first.
	tok := strings.Split(signRaw(t, `{"sub":42,`+exp+`}`), ".")
	forged := tok[0] + "." + tok[1] + "." + strings.Split(signRaw(t, `{"sub":"a",`+exp+`}`), ".")[2]
	j, err := NewJWT(JWTConfig{Secret: testSecret, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j.Authenticate(bearer(forged), Image{}); err == nil || err.Error() != "unauthenticated: invalid signature" {
		t.Fatalf("forged token with a bad claim: %v", err)
	}
	// A token for another key type is refused before any signature check.
	k := keys()
	ed, err := NewJWT(JWTConfig{PublicKeyPEM: pemPublic(t, k.ed.Public()), Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = ed.Authenticate(bearer(sign(t, jwa.ES256(), k.ec, "", claims())), Image{})
	if err == nil || err.Error() != `unauthenticated: algorithm "ES256" not allowed for this key` {
		t.Fatalf("ES256 token for an Ed25519 key: %v", err)
	}
}
