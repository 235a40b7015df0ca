// Package session decides who is asking for an image and whether they may
// see it.
//
// An [Authenticator] turns an HTTP request into an [Identity]: [JWT] verifies
// a signed token from a cookie or a header (with keys given, fetched from a
// JWKS URL or discovered from the issuer), [OAuth2Introspect] asks an
// authorization server about an access token (RFC 7662), [Introspect] asks
// the application that owns the session, [Trusted] believes an earlier handler
// (Caddy's authentication), and [None] lets everyone in as an anonymous
// caller. A [Policy] then decides whether that identity may see one image:
// [Any], [Claim] or [Owner]. [Claim] fills a template such as "img:{id}"
// from the requested image and looks for a grant covering it among the
// values of a JWT claim: a grant ending in * covers every value that starts
// with the text before the * ("users/alice/*" covers "users/alice/1"), and
// any other grant must equal the value exactly. The * belongs to the
// grant, never to the template.
//
// A [Gate] joins one authenticator and one policy and is the only place
// that turns their results into an answer: [Gate.Image] for an image,
// [Gate.Upload] for an upload URL. Both return a [Decision] whose [Verdict]
// carries the HTTP status, so the same session result always gives the same
// status whichever path asked.
//
// [Revocations] is a set of revoked subjects, sessions and tokens that the
// JWT and OAuth2Introspect authenticators consult on every request, cached
// answers included; [BackchannelLogout] fills it from OpenID Connect
// Back-Channel Logout tokens.
//
// Every failure is reported as an error that wraps one of
// [ErrUnauthenticated], [ErrForbidden], [ErrUnavailable] or [ErrLimited];
// [Classify] maps it to a Verdict. When a dependency (a JWKS endpoint, an
// introspection endpoint, the Cloudflare API) cannot answer, the answer is
// ErrUnavailable, and an error the package does not recognise is treated the
// same way: the package fails closed.
//
// The package does not log. Its error messages never contain tokens, cookies
// or secrets, so they are safe to log; log subjects through a
// [SubjectHasher].
package session

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"
)

// Ways a check can fail. Errors returned by this package wrap one of them,
// or [ErrLimited], with more context.
var (
	// ErrUnauthenticated means there is no valid session: answer 401.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the session is valid but may not see the image:
	// answer 403.
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable means a dependency needed for the decision did not
	// answer in time or answered nonsense: answer 503.
	ErrUnavailable = errors.New("session dependency unavailable")
)

// Image names what the caller asks for.
type Image struct {
	ID, Variant string
}

// Identity is an authenticated caller.
type Identity struct {
	// Subject names the caller: the JWT subject claim, the introspection
	// app's subject header, or the upstream user id. It is empty for the
	// anonymous identity of [None].
	Subject string
	// Claims holds all claims of a verified JWT (registered claims use
	// jwx types: exp, iat and nbf are time.Time, aud is []string) and is
	// nil for other methods. Treat it as read-only: it is shared by every
	// request that hits the same cache entry.
	Claims map[string]any
	// SessionID is the token's sid claim (the identity provider's login
	// session), TokenID its jti claim and IssuedAt its iat claim, each
	// empty or zero when absent. [Revocations] matches them.
	SessionID string
	TokenID   string
	IssuedAt  time.Time
}

// Outcome tells the caller how a decision was reached, for metrics.
type Outcome struct {
	// CacheHit reports whether a cached verification or decision answered
	// without verifying a signature or calling a dependency.
	CacheHit bool
}

// Authenticator establishes who is asking, and says where in a request it
// looks so that answers can be challenged and cached correctly.
type Authenticator interface {
	// Authenticate returns the caller of r. img is passed so that
	// per-image introspection can forward it; other methods ignore it.
	Authenticate(r *http.Request, img Image) (Identity, Outcome, error)
	// Challenge returns the WWW-Authenticate value for a 401 ("Bearer"
	// when the credential may come from the Authorization header), or ""
	// when there is none to give.
	Challenge() string
	// Vary returns the canonical names of the request headers the
	// credential may be read from, each once ("Cookie" for any number of
	// cookies), in configuration order. An answer that depends on the
	// caller varies on these headers.
	Vary() []string
}

// Policy decides whether id may see img. It returns nil to allow, or an
// error wrapping ErrForbidden, ErrUnavailable or ErrLimited.
type Policy interface {
	Allow(ctx context.Context, id Identity, img Image) error
}

// varyList appends the canonical name of each header in names to dst
// unless it is already there, so that a credential read from several
// cookies or listed twice varies on its header once.
func varyList(dst []string, names ...string) []string {
	for _, n := range names {
		n = http.CanonicalHeaderKey(n)
		if !slices.Contains(dst, n) {
			dst = append(dst, n)
		}
	}
	return dst
}
