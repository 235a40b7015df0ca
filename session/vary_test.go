package session

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

func TestVaryAndChallenge(t *testing.T) {
	jwtWith := func(sources ...TokenSource) Authenticator {
		j, err := NewJWT(JWTConfig{Secret: testSecret, Sources: sources})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	introspectWith := func(cookies, headers []string) Authenticator {
		i, err := NewIntrospect(IntrospectConfig{URL: "http://127.0.0.1/check", Cookies: cookies, Headers: headers})
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	tests := []struct {
		name      string
		auth      Authenticator
		vary      []string
		challenge string
	}{
		{"jwt default", jwtWith(), []string{"Authorization"}, "Bearer"},
		{"jwt cookie only", jwtWith(TokenSource{Cookie: "session"}), []string{"Cookie"}, ""},
		{"jwt header only", jwtWith(TokenSource{Header: "x-access-token"}), []string{"X-Access-Token"}, ""},
		{"jwt authorization, any case", jwtWith(TokenSource{Header: "AUTHORIZATION"}), []string{"Authorization"}, "Bearer"},
		{"jwt cookies once", jwtWith(TokenSource{Cookie: "a"}, TokenSource{Cookie: "b"}), []string{"Cookie"}, ""},
		{"jwt mixed, in order", jwtWith(
			TokenSource{Header: "X-Token"}, TokenSource{Cookie: "a"}, TokenSource{Header: "Authorization"},
			TokenSource{Cookie: "b"}, TokenSource{Header: "x-token"},
		), []string{"X-Token", "Cookie", "Authorization"}, "Bearer"},
		{"introspect cookie", introspectWith([]string{"sessionid"}, nil), []string{"Cookie"}, ""},
		{"introspect cookies once", introspectWith([]string{"sessionid", "csrftoken"}, nil), []string{"Cookie"}, ""},
		{"introspect header", introspectWith(nil, []string{"authorization"}), []string{"Authorization"}, "Bearer"},
		{"introspect both", introspectWith([]string{"sid"}, []string{"x-tenant", "Authorization"}), []string{"Cookie", "X-Tenant", "Authorization"}, "Bearer"},
		{"caddy_auth", Trusted{}, []string{"Cookie", "Authorization"}, ""},
		{"none", None{}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.auth.Vary(); !slices.Equal(got, tc.vary) {
				t.Errorf("Vary() = %q, want %q", got, tc.vary)
			}
			if got := tc.auth.Challenge(); got != tc.challenge {
				t.Errorf("Challenge() = %q, want %q", got, tc.challenge)
			}
		})
	}
}

// TestJWTVaryFollowsSources checks that Vary is derived from the sources
// the token is really read from, after defaults, rather than written down
// separately: for each source a JWT reads (proved by authenticating with a
// token placed only there), the header carrying it is in Vary, and Vary
// names nothing else. Changing the default source without Vary following
// fails here.
func TestJWTVaryFollowsSources(t *testing.T) {
	clk := newClock()
	tok := sign(t, jwa.HS256(), testSecret, "", claims())
	for _, sources := range [][]TokenSource{
		nil, // the default
		{{Cookie: "session"}},
		{{Header: "X-Token"}, {Cookie: "a"}, {Cookie: "b"}},
	} {
		j, err := NewJWT(JWTConfig{Secret: testSecret, Sources: sources, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		var read []string
		for _, s := range j.sources {
			r := httptest.NewRequest(http.MethodGet, "/img/x/public", nil)
			header := http.CanonicalHeaderKey(s.Header)
			switch {
			case s.Cookie != "":
				r.AddCookie(&http.Cookie{Name: s.Cookie, Value: tok})
				header = "Cookie"
			case header == "Authorization":
				r.Header.Set(header, "Bearer "+tok)
			default:
				r.Header.Set(header, tok)
			}
			if _, _, err := j.Authenticate(r, Image{}); err != nil {
				t.Fatalf("sources %v: token in %+v: %v", sources, s, err)
			}
			if !slices.Contains(read, header) {
				read = append(read, header)
			}
		}
		if got := j.Vary(); !slices.Equal(got, read) {
			t.Errorf("sources %v: Vary() = %q, but the token is read from %q", sources, got, read)
		}
	}
}

// Vary returns a copy: a caller appending to it cannot change the
// authenticator.
func TestVaryIsACopy(t *testing.T) {
	j, err := NewJWT(JWTConfig{Secret: testSecret, Sources: []TokenSource{{Cookie: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	v := j.Vary()
	v[0] = "X-Changed"
	if j.Vary()[0] != "Cookie" {
		t.Fatalf("Vary() = %q after the caller changed its copy", j.Vary())
	}
}
