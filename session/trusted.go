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

// Challenge returns "": the earlier handler owns the challenge (basic_auth
// sends its own before the request gets here).
func (Trusted) Challenge() string { return "" }

// Vary returns Cookie and Authorization: Trusted cannot know which
// credential the earlier handler used, so it varies on both.
func (Trusted) Vary() []string { return []string{"Cookie", "Authorization"} }

// None lets everyone in as the anonymous identity (empty subject, no
// claims). Use it only for images that are meant to be public to anyone
// who can reach the gateway.
type None struct{}

// Authenticate always succeeds with the anonymous identity.
func (None) Authenticate(*http.Request, Image) (Identity, Outcome, error) {
	return Identity{}, Outcome{}, nil
}

// Challenge returns "": there is nothing to authenticate with.
func (None) Challenge() string { return "" }

// Vary returns nil: the answer is the same for every caller.
func (None) Vary() []string { return nil }

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
