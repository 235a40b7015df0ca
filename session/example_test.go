package session_test

import (
	"crypto/rand"
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
	fmt.Println(id.Subject, err)
	fmt.Println(policy.Allow(r.Context(), id, img))
	fmt.Println(policy.Allow(r.Context(), id, session.Image{ID: "9a2b", Variant: "thumbnail"}))
	// Output:
	// alice <nil>
	// <nil>
	// forbidden: claim "images" does not grant this image
}

// A gateway asks one Gate for images and uploads, and answers with the
// decision's status.
func ExampleGate() {
	auth := session.Trusted{User: func(r *http.Request) string { return r.Header.Get("X-Test-User") }}
	gate := session.NewGate(auth, session.Any{})
	fmt.Println(gate.Vary())

	r := httptest.NewRequest(http.MethodGet, "/img/5f0e/thumbnail", nil)
	d := gate.Image(r, session.Image{ID: "5f0e", Variant: "thumbnail"})
	fmt.Println(d.Verdict, d.Verdict.Status(), d.Err)

	r.Header.Set("X-Test-User", "dave")
	d = gate.Upload(r)
	fmt.Println(d.Verdict, d.Verdict.Status(), d.Identity.Subject)
	// Output:
	// [Accept, Cookie, Authorization]
	// unauthenticated 401 unauthenticated: no authenticated upstream user
	// allowed 200 dave
}

// Logs name callers by a keyed hash: without the key, a list of candidate
// subjects cannot be checked against the log.
func ExampleSubjectHasher() {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	h := session.NewSubjectHasher(key)
	a, b := h.Hash("alice"), h.Hash("alice")
	fmt.Println(len(a), a == b, h.Hash("") == "")
	// Output:
	// 12 true true
}
