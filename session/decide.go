package session

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/seed-a64a90cf/imagegate/cfapi"
)

// Verdict is the answer to one session check.
type Verdict uint8

// The verdicts, each with one HTTP status.
const (
	// Allowed: serve the request (200).
	Allowed Verdict = iota
	// Unauthenticated: there is no valid session (401).
	Unauthenticated
	// Forbidden: the session may not have this (403).
	Forbidden
	// Unavailable: a dependency of the decision failed, or the error was
	// not one the package knows; the gateway fails closed (503).
	Unavailable
	// Limited: the caller made too many lookups; retry later (429).
	Limited
)

var verdictNames = [...]string{"allowed", "unauthenticated", "forbidden", "unavailable", "limited"}

var verdictStatus = [...]int{
	http.StatusOK,
	http.StatusUnauthorized,
	http.StatusForbidden,
	http.StatusServiceUnavailable,
	http.StatusTooManyRequests,
}

// String returns the verdict's lower-case name, used as a metric label
// value: "allowed", "unauthenticated", "forbidden", "unavailable" or
// "limited".
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Status returns the HTTP status that answers the verdict: 200, 401, 403,
// 503 or 429. A value outside the constants answers 503.
func (v Verdict) Status() int {
	if int(v) < len(verdictStatus) {
		return verdictStatus[v]
	}
	return http.StatusServiceUnavailable
}

// Classify maps an error of an [Authenticator] or [Policy] to its verdict:
// nil is Allowed, and an error wrapping ErrUnauthenticated, ErrForbidden or
// ErrLimited is Unauthenticated, Forbidden or Limited. Anything else,
// ErrUnavailable or an error nobody foresaw, is Unavailable: a check that
// cannot say yes says no.
func Classify(err error) Verdict {
	switch {
	case err == nil:
		return Allowed
	case errors.Is(err, ErrUnauthenticated):
		return Unauthenticated
	case errors.Is(err, ErrForbidden):
		return Forbidden
	case errors.Is(err, ErrLimited):
		return Limited
	default:
		return Unavailable
	}
}

// defaultRetryAfter is the Retry-After of an Unavailable decision, and of
// a Limited one whose error gives no positive delay.
const defaultRetryAfter = 5 * time.Second

// Decision is the outcome of a [Gate] check.
type Decision struct {
	// Verdict is the answer; Verdict.Status is its HTTP status.
	Verdict Verdict
	// Identity is the caller, set whenever authentication succeeded, also
	// when the policy then refused, so that a refusal can be logged by
	// subject.
	Identity Identity
	// CacheHit is the authenticator's Outcome.CacheHit.
	CacheHit bool
	// RetryAfter is how long the client should wait before retrying: the
	// delay of a *LimitedError for Limited (default 5s), 5s for
	// Unavailable, and 0 otherwise.
	RetryAfter time.Duration
	// Err says why the request was refused, and is nil when it is
	// Allowed. It never contains credentials, so it is safe to log.
	Err error
}

// Gate is the single decision path of the gateway: it authenticates a
// request and, for an image, applies the policy, and maps the result to a
// [Decision]. Because image requests and upload requests ask the same
// Gate, the same session result always gives the same status.
//
// A Gate is immutable after NewGate and safe for concurrent use.
type Gate struct {
	auth      Authenticator
	policy    Policy
	challenge []string
	vary      []string
}

// NewGate returns a gate that authenticates with auth and authorizes image
// requests with policy; a nil policy is [Any]. auth must not be nil.
func NewGate(auth Authenticator, policy Policy) *Gate {
	if auth == nil {
		panic("session: NewGate with a nil Authenticator")
	}
	if policy == nil {
		policy = Any{}
	}
	g := &Gate{auth: auth, policy: policy}
	if c := auth.Challenge(); c != "" {
		g.challenge = []string{c}
	}
	// Accept, because the answer (a redirect or JSON) depends on it.
	g.vary = []string{strings.Join(append([]string{"Accept"}, auth.Vary()...), ", ")}
	return g
}

// Image decides whether the caller of r may see img: it authenticates, then
// asks the policy.
func (g *Gate) Image(r *http.Request, img Image) Decision {
	id, o, err := g.auth.Authenticate(r, img)
	if err == nil {
		err = g.policy.Allow(r.Context(), id, img)
	}
	return decide(id, o, err)
}

// Upload decides whether the caller of r may get an upload URL: it
// authenticates only, since the image does not exist yet. The caller
// becomes the image's owner, so an identity with an empty subject (the
// anonymous caller of [None], an application that names nobody) is
// Unauthenticated.
func (g *Gate) Upload(r *http.Request) Decision {
	id, o, err := g.auth.Authenticate(r, Image{})
	if err == nil && id.Subject == "" {
		err = fmt.Errorf("%w: the session names no subject", ErrUnauthenticated)
	}
	return decide(id, o, err)
}

// Challenge returns the WWW-Authenticate value of a 401, or nil when the
// method has none. The slice is shared: set it as a header value, don't
// modify it.
func (g *Gate) Challenge() []string { return g.challenge }

// Vary returns the Vary value of an answer that depends on the caller:
// "Accept" and the headers the credential is read from, as one element,
// e.g. []string{"Accept, Cookie, Authorization"}. The slice is shared: set
// it as a header value, don't modify it.
func (g *Gate) Vary() []string { return g.vary }

// Decide maps an error of a check made after the Gate's (an upload's
// per-caller limit, the Cloudflare API call it makes) to its decision, by
// the same rules as the Gate's own: a *LimitedError is Limited with its
// Retry-After, the API's rate limit is Unavailable with the API's.
func Decide(id Identity, err error) Decision { return decide(id, Outcome{}, err) }

// decide maps the result of a check to its decision.
func decide(id Identity, o Outcome, err error) Decision {
	d := Decision{Verdict: Classify(err), Identity: id, CacheHit: o.CacheHit, Err: err}
	switch d.Verdict {
	case Limited:
		d.RetryAfter = defaultRetryAfter
		if le := (*LimitedError)(nil); errors.As(err, &le) && le.RetryAfter > 0 {
			d.RetryAfter = le.RetryAfter
		}
	case Unavailable:
		d.RetryAfter = defaultRetryAfter
		// The Cloudflare API said when it will answer again: so do we.
		if rl, ok := errors.AsType[*cfapi.RateLimitError](err); ok && rl.RetryAfter > 0 {
			d.RetryAfter = rl.RetryAfter
		}
	}
	return d
}
