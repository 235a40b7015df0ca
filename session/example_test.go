package session_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/seed-a64a90cf/imagegate/session"
)

// A session cookie carrying an HS256 token, and a claim policy that lists
// the images the caller may see.
func ExampleJWT() {
	secret := []byte("a-development-secret-of-32-bytes")
	now := time.Unix(1_800_000_000, 0)
	tok, err := session.MintHS256(secret, "alice", time.Hour, map[string]string{"images": "5f0e"}, now)
	if err != nil {
		panic(err)
	}
	auth, err := session.NewJWT(session.JWTConfig{
		Sources: []session.TokenSource{{Cookie: "session"}, {Header: "Authorization"}},
		Secret:  secret,
		Now:     func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	policy, err := session.NewClaim("images", "{id}")
	if err != nil {
		panic(err)
	}

	r := httptest.NewRequest(http.MethodGet, "/img/5f0e/thumbnail", nil)
	r.AddCookie(&http.Cookie{Name: "session", Value: tok})
	img := session.Image{ID: "5f0e", Variant: "thumbnail"}
	id, _, err := auth.Authenticate(r, img)
	fmt.Println(id.Subject, session.SubjectHash(id.Subject), err)
	fmt.Println(policy.Allow(r.Context(), id, img))
	fmt.Println(policy.Allow(r.Context(), id, session.Image{ID: "9a2b", Variant: "thumbnail"}))
	// Output:
	// alice 2bd806c97f0e <nil>
	// <nil>
	// forbidden: claim "images" does not grant this image
}

// How a gateway maps the package's errors to HTTP answers.
func Example_statusCodes() {
	status := func(err error) int {
		switch {
		case err == nil:
			return http.StatusOK
		case errors.Is(err, session.ErrUnauthenticated):
			return http.StatusUnauthorized // plus WWW-Authenticate if Challenge() != ""
		case errors.Is(err, session.ErrForbidden):
			return http.StatusForbidden
		default: // ErrUnavailable, and anything unexpected: fail closed
			return http.StatusServiceUnavailable
		}
	}
	auth := session.Trusted{User: func(r *http.Request) string { return r.Header.Get("X-Test-User") }}
	_, _, err := auth.Authenticate(httptest.NewRequest(http.MethodGet, "/", nil), session.Image{})
	fmt.Println(status(err), err)
	// Output:
	// 401 unauthenticated: no authenticated upstream user
}
