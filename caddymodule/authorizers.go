package caddymodule

import (
	"cmp"
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"

	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddy.RegisterModule(AnyAuthorizer{})
	caddy.RegisterModule(ClaimAuthorizer{})
	caddy.RegisterModule(OwnerAuthorizer{})
	caddy.RegisterModule(IntrospectAuthorizer{})
}

// AnyAuthorizer lets every identified caller see every image. It is the
// default policy.
type AnyAuthorizer struct{}

// CaddyModule returns the Caddy module information.
func (AnyAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  authorizersNamespace + ".any",
		New: func() caddy.Module { return new(AnyAuthorizer) },
	}
}

// Policy implements Authorizer.
func (AnyAuthorizer) Policy(AuthorizerEnv) (session.Policy, error) { return session.Any{}, nil }

// UnmarshalCaddyfile reads `any`, which takes no settings.
func (*AnyAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return noSettings(d) }

// ClaimAuthorizer allows a caller whose JWT claim holds a grant matching
// the request. Template is expanded per request (`{id}` and `{variant}`
// become the image's); a grant equal to it allows, and a grant ending in
// `*` allows every expansion that starts with the text before the `*`
// (folder-style grants such as `img:users/alice/*`). Needs session jwt.
type ClaimAuthorizer struct {
	// Claim is the JWT claim to search: a string or a list of strings.
	Claim string `json:"claim,omitempty"`
	// Template is what a grant must match, such as `img:{id}`. It may not
	// contain `*`: wildcards belong in the grants.
	Template string `json:"template,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (ClaimAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  authorizersNamespace + ".claim",
		New: func() caddy.Module { return new(ClaimAuthorizer) },
	}
}

// Policy implements Authorizer.
func (a *ClaimAuthorizer) Policy(env AuthorizerEnv) (session.Policy, error) {
	if cb, ok := env.Session.(ClaimBearer); !ok || !cb.BearsClaims() {
		return nil, errors.New("needs a session method whose tokens carry claims, such as session jwt")
	}
	return session.NewClaim(a.Claim, a.Template)
}

// UnmarshalCaddyfile reads the tokens after `authorize`. Syntax:
//
//	claim <name> <template>
func (a *ClaimAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if !d.Args(&a.Claim, &a.Template) || d.NextArg() {
		return d.Errf("want: authorize claim <name> <template>")
	}
	return nil
}

// OwnerAuthorizer allows a caller whose subject equals a field of the
// image's Cloudflare metadata, the field uploads stamp. It reads metadata
// through the Cloudflare API (the handler's or the app's account), caches
// it for `metadata_ttl`, keeps deciding with an owner up to
// `metadata_stale` old while the API fails, and limits each caller's
// lookups that miss the cache to `lookup_limit`.
type OwnerAuthorizer struct {
	// Field is the metadata field naming the owner. Default: `owner`.
	Field string `json:"field,omitempty"`

	// MetadataTTL is how long an image's owner is cached. Default: 5m.
	MetadataTTL caddy.Duration `json:"metadata_ttl,omitempty"`

	// MetadataStale is how long past MetadataTTL a cached owner still
	// decides while the Cloudflare API fails or rate-limits (the idea of
	// RFC 5861's stale-if-error). With nothing cached, the answer is 503.
	// Default: 1h; `off` (JSON: a negative duration) turns it off.
	MetadataStale caddy.Duration `json:"metadata_stale,omitempty"`

	// LookupLimit bounds, per caller, the lookups that miss the cache and
	// so call the Cloudflare API. Over it the answer is 429 with
	// Retry-After and no API call. Default: 120 per minute; `off` or `0`
	// (JSON: `{}`) turns it off.
	LookupLimit *RateLimit `json:"lookup_limit,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (OwnerAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  authorizersNamespace + ".owner",
		New: func() caddy.Module { return new(OwnerAuthorizer) },
	}
}

// Provision applies the defaults.
func (a *OwnerAuthorizer) Provision(caddy.Context) error {
	if a.Field == "" {
		a.Field = defaultOwnerField
	}
	return nil
}

// Validate checks the settings written in JSON, which the Caddyfile parser
// would have refused.
func (a *OwnerAuthorizer) Validate() error {
	return a.LookupLimit.validate("lookup_limit")
}

// OwnerField implements MetadataPolicy.
func (a *OwnerAuthorizer) OwnerField() string { return a.Field }

// Policy implements Authorizer.
func (a *OwnerAuthorizer) Policy(env AuthorizerEnv) (session.Policy, error) {
	if !namesCaller(env.Session) {
		return nil, errors.New("needs a session method that names the caller, not none")
	}
	client, err := env.API()
	if err != nil {
		return nil, err
	}
	// The handler's flat settings apply where this block sets nothing.
	ttl, stale, lookups := a.MetadataTTL, a.MetadataStale, a.LookupLimit
	ttl = cmp.Or(ttl, env.Legacy.MetadataTTL)
	stale = cmp.Or(stale, env.Legacy.MetadataStale)
	if lookups == nil {
		lookups = env.Legacy.LookupLimit
	}
	return session.NewOwner(session.OwnerConfig{
		Field:   a.Field,
		Source:  session.CloudflareMetadata{Client: client},
		TTL:     time.Duration(ttl),
		Stale:   time.Duration(stale),
		Limiter: env.Limiter("lookup", lookups.rate(defaultLookupLimit)),
	})
}

// UnmarshalCaddyfile reads the tokens after `authorize`. Syntax:
//
//	owner [<field>] {
//	    field          <field>
//	    metadata_ttl   <duration>
//	    metadata_stale <duration>|off
//	    lookup_limit   <events> <window>|off
//	}
func (a *OwnerAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		a.Field = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch field := d.Val(); field {
		case "field":
			a.Field, err = caddyargs.One(d)
		case "metadata_ttl":
			a.MetadataTTL, err = caddyargs.Duration(d)
		case "metadata_stale":
			a.MetadataStale, err = durationOrOff(d)
		case "lookup_limit":
			a.LookupLimit, err = rateLimitArgs(d)
		default:
			err = d.Errf("authorize owner: unrecognized setting %q", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// IntrospectAuthorizer lets the introspection application decide per
// image: it turns on `per_image` in session introspect, which then
// forwards `X-Image-Id` and `X-Image-Variant`.
type IntrospectAuthorizer struct{}

// CaddyModule returns the Caddy module information.
func (IntrospectAuthorizer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  authorizersNamespace + ".introspect",
		New: func() caddy.Module { return new(IntrospectAuthorizer) },
	}
}

// Policy implements Authorizer.
func (IntrospectAuthorizer) Policy(env AuthorizerEnv) (session.Policy, error) {
	m, ok := env.Session.(PerImageSession)
	if !ok {
		return nil, errors.New("needs a session method that asks its backend per image, such as session introspect")
	}
	// The session's backend decides, per image, in Authenticate.
	return session.Any{}, m.DecidePerImage()
}

// UnmarshalCaddyfile reads the tokens after `authorize`. Syntax:
//
//	introspect per_image
func (*IntrospectAuthorizer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if !d.NextArg() || d.Val() != "per_image" || d.NextArg() {
		return d.Errf("want: authorize introspect per_image")
	}
	return nil
}

// defaultOwnerField is the metadata field uploads stamp and `authorize
// owner` reads when neither names another.
const defaultOwnerField = "owner"

// Interface guards
var (
	_ Authorizer            = (*AnyAuthorizer)(nil)
	_ Authorizer            = (*ClaimAuthorizer)(nil)
	_ Authorizer            = (*OwnerAuthorizer)(nil)
	_ Authorizer            = (*IntrospectAuthorizer)(nil)
	_ caddy.Provisioner     = (*OwnerAuthorizer)(nil)
	_ caddy.Validator       = (*OwnerAuthorizer)(nil)
	_ MetadataPolicy        = (*OwnerAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*AnyAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*ClaimAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*OwnerAuthorizer)(nil)
	_ caddyfile.Unmarshaler = (*IntrospectAuthorizer)(nil)
)
