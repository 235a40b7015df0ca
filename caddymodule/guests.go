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

// ClaimBearer is implemented by session methods whose identities carry
// claims (session jwt), which `authorize claim` needs.
type ClaimBearer interface {
	BearsClaims() bool
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
	// API returns the handler's Cloudflare API client, or an error naming
	// the settings it needs (account_id, api_token).
	API func() (*cfapi.Client, error)
	// Lookups limits, per caller, the metadata lookups that miss the
	// cache (`lookup_limit`); nil means no limit.
	Lookups limit.Limiter
	// MetadataTTL and MetadataStale are `metadata_ttl` and
	// `metadata_stale`; zero means the policy's default.
	MetadataTTL, MetadataStale caddy.Duration
}
