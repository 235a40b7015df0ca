// Package session decides who is asking for an image and whether they may
// see it.
//
// An [Authenticator] turns an HTTP request into an [Identity]: [JWT] verifies
// a signed token from a cookie or the Authorization header, [Introspect] asks
// the application that owns the session, [Trusted] believes an earlier
// handler (Caddy's authentication), and [None] lets everyone in as an
// anonymous caller. A [Policy] then decides whether that identity may see one
// image: [Any], [Claim] or [Owner].
//
// Every failure is reported as an error that wraps exactly one of
// [ErrUnauthenticated], [ErrForbidden] or [ErrUnavailable], so the caller can
// map it to 401, 403 or 503 with errors.Is. When a dependency (a JWKS
// endpoint, an introspection endpoint, the Cloudflare API) cannot answer,
// the answer is ErrUnavailable: the package fails closed.
//
// The package does not log. Its error messages never contain tokens, cookies
// or secrets, so they are safe to log; log subjects through [SubjectHash].
package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
)

// The three ways a check can fail. Errors returned by this package wrap one
// of them with more context.
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
}

// Outcome tells the caller how a decision was reached, for metrics.
type Outcome struct {
	// CacheHit reports whether a cached verification or decision answered
	// without verifying a signature or calling a dependency.
	CacheHit bool
}

// Authenticator establishes who is asking. img is passed so that
// per-image introspection can forward it; other methods ignore it.
type Authenticator interface {
	Authenticate(r *http.Request, img Image) (Identity, Outcome, error)
}

// Policy decides whether id may see img. It returns nil to allow, or an
// error wrapping ErrForbidden or ErrUnavailable.
type Policy interface {
	Allow(ctx context.Context, id Identity, img Image) error
}

// SubjectHash returns a short, stable, non-reversible name for sub (the
// first 12 hex digits of its SHA-256) so that logs can correlate requests by
// caller without recording who the caller is.
func SubjectHash(sub string) string {
	sum := sha256.Sum256([]byte(sub))
	return hex.EncodeToString(sum[:6])
}
