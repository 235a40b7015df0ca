package caddymodule

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/limit"
	"github.com/seed-a64a90cf/imagegate/session"
)

// Guest module namespaces. A session method is a module in
// http.handlers.cf_images.sessions, chosen by the `method` key of the
// handler's `session` object; an authorization policy is a module in
// http.handlers.cf_images.authorizers, chosen by the `policy` key of
// `authorize`. A third party adds one with xcaddy, without a fork: the
// module implements SessionMethod or Authorizer and, for the Caddyfile,
// caddyfile.Unmarshaler over the tokens after `session` or `authorize`.
const (
	sessionsNamespace    = "http.handlers.cf_images.sessions"
	authorizersNamespace = "http.handlers.cf_images.authorizers"
)

// SessionMethod is a guest module that identifies callers. It is
// provisioned before the authorizer and cleaned up with the handler.
type SessionMethod interface {
	caddy.Module
	// Authenticator returns the provisioned method; it must not be nil
	// after a successful Provision.
	Authenticator() session.Authenticator
}

// Guest capabilities. A guest module takes part in one by implementing its
// interface; the handler checks with a type assertion, as Caddy does for
// optional interfaces, never by concrete type, so a third-party module
// built in with xcaddy takes part exactly as a built-in one does.

// ClaimBearer is implemented by session methods whose identities carry
// claims (session jwt), which `authorize claim` needs.
type ClaimBearer interface {
	BearsClaims() bool
}

// AnonymousSession is implemented by session methods that name no caller
// (session none). Uploads and `authorize owner`, which need a caller's
// name, refuse them.
type AnonymousSession interface {
	Anonymous() bool
}

// DecisionCacher is implemented by session methods that cache their
// decisions (verified tokens, introspection answers), so that the
// decision-cache metrics count their hits and misses.
type DecisionCacher interface {
	CachesDecisions() bool
}

// PerImageSession is implemented by session methods that can ask their
// backend about each image (session introspect). DecidePerImage is called
// once, by `authorize introspect per_image`, after Provision and before
// any request; from then on the method decides per image.
type PerImageSession interface {
	DecidePerImage() error
}

// MetadataPolicy is implemented by policies that decide from a field of
// the image's Cloudflare metadata (authorize owner). Uploads stamp the
// uploader into that field, so the two must name the same one.
type MetadataPolicy interface {
	OwnerField() string
}

// namesCaller reports whether the session method names the caller, for
// checks that need one (uploads, owner).
func namesCaller(m SessionMethod) bool {
	a, ok := m.(AnonymousSession)
	return !ok || !a.Anonymous()
}

// Authorizer is a guest module that decides which images an identified
// caller may see.
type Authorizer interface {
	caddy.Module
	// Policy returns the policy, given what the handler shares with it.
	// It is called once, after the session method is provisioned.
	Policy(env AuthorizerEnv) (session.Policy, error)
}

// AuthorizerEnv is what the handler lends an authorizer.
type AuthorizerEnv struct {
	// Session is the handler's provisioned session method.
	Session SessionMethod
	// API returns the Cloudflare API client of the handler's account, or
	// an error naming the settings it needs (account_id, api_token).
	API func() (*cfapi.Client, error)
	// Limiter returns a per-caller limiter of the given budget, named for
	// its Redis keys: counted across the fleet when the handler has Redis,
	// else per replica.
	Limiter func(name string, r limit.Rate) limit.Limiter
	// Legacy holds the handler's flat metadata settings, written before
	// they moved into `authorize owner { … }`; a MetadataPolicy uses them
	// where its own block sets nothing.
	Legacy LegacyMetadataSettings
}

// LegacyMetadataSettings are the handler-level metadata_ttl,
// metadata_stale and lookup_limit, still accepted.
type LegacyMetadataSettings struct {
	MetadataTTL, MetadataStale caddy.Duration
	LookupLimit                *RateLimit
}
