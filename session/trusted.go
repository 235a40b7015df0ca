package session

import (
	"fmt"
	"net/http"
)

// Trusted believes an earlier handler that already authenticated the
// request (Caddy's authentication handler with basic_auth, caddy-security,
// …). User returns the authenticated user id, e.g. the
// {http.auth.user.id} placeholder, or "" when there is none.
type Trusted struct {
	User func(*http.Request) string
}

// Method returns "caddy_auth", for metric labels.
func (Trusted) Method() string { return "caddy_auth" }

// Authenticate returns the upstream user, or ErrUnauthenticated if there is
// none.
func (t Trusted) Authenticate(r *http.Request, _ Image) (Identity, Outcome, error) {
	var user string
	if t.User != nil {
		user = t.User(r)
	}
	if user == "" {
		return Identity{}, Outcome{}, fmt.Errorf("%w: no authenticated upstream user", ErrUnauthenticated)
	}
	return Identity{Subject: user}, Outcome{}, nil
}

// None lets everyone in as the anonymous identity (empty subject, no
// claims). Use it only for images that are meant to be public to anyone
// who can reach the gateway.
type None struct{}

// Method returns "none", for metric labels.
func (None) Method() string { return "none" }

// Authenticate always succeeds with the anonymous identity.
func (None) Authenticate(*http.Request, Image) (Identity, Outcome, error) {
	return Identity{}, Outcome{}, nil
}

// Interface guards
var (
	_ Authenticator = (*JWT)(nil)
	_ Authenticator = (*Introspect)(nil)
	_ Authenticator = Trusted{}
	_ Authenticator = None{}
	_ Policy        = Any{}
	_ Policy        = (*Claim)(nil)
	_ Policy        = (*Owner)(nil)
)
