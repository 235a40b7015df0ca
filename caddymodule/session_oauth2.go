package caddymodule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddy.RegisterModule(OAuth2IntrospectSession{})
}

// OAuth2IntrospectSession identifies callers by an OAuth 2.0 access token,
// opaque or JWT, that the authorization server judges through its token
// introspection endpoint (RFC 7662): Ory Hydra, Keycloak, Okta, Zitadel,
// Authentik. The gateway POSTs `token=…&token_type_hint=access_token`,
// authenticated as a client with HTTP Basic. `active: false` answers 401,
// as does a token failing the audience, issuer or scope check; an endpoint
// that fails or times out answers 503 (fail closed) while answers already
// cached keep working. Answers are cached under a keyed hash of the token,
// never past its `exp`, so a token revoked at the server stops working
// within cache_ttl; revocations made here (admin, back-channel logout)
// bite at the next request. The answer's members are the caller's claims,
// read by `authorize claim` like a JWT's. The token is never logged.
type OAuth2IntrospectSession struct {
	// Endpoint is the introspection endpoint's absolute http(s) URL, e.g.
	// Hydra's `/admin/oauth2/introspect` or Keycloak's
	// `/realms/<r>/protocol/openid-connect/token/introspect`. Required.
	// Placeholders are resolved.
	Endpoint string `json:"endpoint,omitempty"`

	// ClientID is the gateway's client id at the authorization server.
	// Required. Placeholders are resolved.
	ClientID string `json:"client_id,omitempty"`

	// ClientSecret is the client's secret. Use a placeholder such as
	// `{env.INTROSPECT_SECRET}`; a literal is accepted with a warning
	// because it ends up in config dumps.
	ClientSecret string `json:"client_secret,omitempty"`

	// ClientSecretFile is a file holding ClientSecret; one trailing newline
	// is ignored. Placeholders are resolved.
	ClientSecretFile string `json:"client_secret_file,omitempty"`

	// Header is the request header the token is read from: for
	// `Authorization`, as `Bearer <token>`; any other holds the bare
	// token. Default: `Authorization`, unless Cookie is set.
	Header string `json:"header,omitempty"`

	// Cookie is the name of a cookie holding the token, instead of a
	// header.
	Cookie string `json:"cookie,omitempty"`

	// Audience, if set, must be among the answer's `aud`.
	Audience string `json:"audience,omitempty"`

	// Issuer, if set, must equal the answer's `iss`. It is also the
	// OpenID provider whose discovered keys sign back-channel logout
	// tokens.
	Issuer string `json:"issuer,omitempty"`

	// Scope, if set, must be among the answer's space-separated `scope`.
	Scope string `json:"scope,omitempty"`

	// SubjectClaim names the answer's member that identifies the caller.
	// Default: `sub`.
	SubjectClaim string `json:"subject_claim,omitempty"`

	// CacheTTL is how long an active answer is reused, never past the
	// token's `exp`: the longest a token revoked at the authorization
	// server keeps working. Default: 30s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeTTL is how long an inactive answer is reused. Default: 5s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// Timeout bounds one call to the endpoint. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// CacheSize bounds the answer cache (entries). Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// BackchannelLogout is a path of the site that accepts OpenID Connect
	// Back-Channel Logout 1.0 requests, validated against the keys of
	// Issuer (discovered; Issuer is required). Default: off.
	BackchannelLogout string `json:"backchannel_logout,omitempty"`

	// BackchannelAudience is the `aud` a logout token must carry.
	// Default: ClientID.
	BackchannelAudience string `json:"backchannel_audience,omitempty"`

	auth   *session.OAuth2Introspect
	revs   *session.Revocations // consulted on every request
	logout *session.BackchannelLogout
	cancel context.CancelFunc // stops the logout keys' refresher
}

// CaddyModule returns the Caddy module information.
func (OAuth2IntrospectSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  sessionsNamespace + ".oauth2_introspect",
		New: func() caddy.Module { return new(OAuth2IntrospectSession) },
	}
}

// Provision resolves the endpoint and the client's secret and builds the
// authenticator; with backchannel_logout it discovers the issuer's keys
// and starts their refresher, which Cleanup stops.
func (m *OAuth2IntrospectSession) Provision(ctx caddy.Context) error {
	logger := ctx.Logger()
	r := provision.NewResolver()
	endpoint := r.Value("endpoint", m.Endpoint)
	clientID := r.Value("client_id", m.ClientID)
	secret := r.Secret("client_secret", m.ClientSecret, m.ClientSecretFile)
	if err := r.Err(); err != nil {
		return err
	}
	if m.Header != "" && m.Cookie != "" {
		return errors.New("read the token from a header or a cookie, not both")
	}
	cfg := session.OAuth2IntrospectConfig{
		Endpoint:     endpoint,
		ClientID:     clientID,
		ClientSecret: secret,
		Source:       session.TokenSource{Header: m.Header, Cookie: m.Cookie},
		Audience:     m.Audience,
		Issuer:       m.Issuer,
		Scope:        m.Scope,
		SubjectClaim: m.SubjectClaim,
		CacheTTL:     time.Duration(m.CacheTTL),
		NegativeTTL:  time.Duration(m.NegativeTTL),
		Timeout:      time.Duration(m.Timeout),
		CacheSize:    m.CacheSize,
		Revocations:  sessionRevocations(ctx),
	}
	auth, err := session.NewOAuth2Introspect(cfg)
	if err != nil {
		return err
	}
	m.auth, m.revs = auth, cfg.Revocations
	warnLiteralSecret(logger, "client_secret", m.ClientSecret)
	if m.BackchannelLogout != "" {
		if m.Issuer == "" {
			return errors.New("backchannel_logout: needs issuer, whose discovered keys sign logout tokens")
		}
		jctx, cancel := context.WithCancel(ctx)
		m.cancel = cancel
		jwks, err := session.NewDiscoveredJWKS(jctx, m.Issuer, session.JWKSConfig{
			OnStateChange: discoveryLogger(logger, "the issuer's keys for back-channel logout (OpenID discovery)"),
		})
		if err != nil {
			return fmt.Errorf("issuer: %w", err)
		}
		if m.logout, err = newBackchannelLogout(logger, m.BackchannelLogout, m.Issuer, cmp.Or(m.BackchannelAudience, clientID), jwks, cfg.Revocations); err != nil {
			return err
		}
	}
	return nil
}

// Cleanup stops the logout keys' refresher. It is safe after a failed
// Provision.
func (m *OAuth2IntrospectSession) Cleanup() error {
	if m.cancel != nil {
		m.cancel()
	}
	return nil
}

// Authenticator implements SessionMethod.
func (m *OAuth2IntrospectSession) Authenticator() session.Authenticator { return m.auth }

// BearsClaims implements ClaimBearer: `authorize claim` reads the
// introspection answer's members.
func (m *OAuth2IntrospectSession) BearsClaims() bool { return true }

// CachesDecisions reports that answers are cached, for the decision-cache
// metrics.
func (m *OAuth2IntrospectSession) CachesDecisions() bool { return true }

// SetIntrospectionObserver makes f see every call to the endpoint: its
// duration and its error (nil for any answer, active or not), for the
// introspection metrics. It must not block. Call it after Provision.
func (m *OAuth2IntrospectSession) SetIntrospectionObserver(f func(d time.Duration, err error)) {
	if m.auth != nil {
		m.auth.SetOnCall(f)
	}
}

// LogoutRoute implements LogoutReceiver.
func (m *OAuth2IntrospectSession) LogoutRoute() (string, http.Handler) {
	if m.logout == nil {
		return "", nil
	}
	return m.BackchannelLogout, m.logout
}

// UnmarshalCaddyfile reads the tokens after `session`. Syntax:
//
//	oauth2_introspect {
//	    endpoint             <url>
//	    client_id            <id>
//	    client_secret        <secret>
//	    client_secret_file   <path>
//	    header               <name>
//	    cookie               <name>
//	    audience             <aud>
//	    issuer               <iss>
//	    scope                <scope>
//	    subject_claim        <member>
//	    cache_ttl            <duration>
//	    negative_ttl         <duration>
//	    timeout              <duration>
//	    cache_size           <entries>
//	    backchannel_logout   <path>
//	    backchannel_audience <client id>
//	}
func (m *OAuth2IntrospectSession) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the method name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch field := d.Val(); field {
		case "endpoint":
			m.Endpoint, err = caddyargs.One(d)
		case "client_id":
			m.ClientID, err = caddyargs.One(d)
		case "client_secret":
			m.ClientSecret, err = caddyargs.One(d)
		case "client_secret_file":
			m.ClientSecretFile, err = caddyargs.One(d)
		case "header":
			m.Header, err = caddyargs.One(d)
		case "cookie":
			m.Cookie, err = caddyargs.One(d)
		case "audience":
			m.Audience, err = caddyargs.One(d)
		case "issuer":
			m.Issuer, err = caddyargs.One(d)
		case "scope":
			m.Scope, err = caddyargs.One(d)
		case "subject_claim":
			m.SubjectClaim, err = caddyargs.One(d)
		case "cache_ttl":
			m.CacheTTL, err = caddyargs.Duration(d)
		case "negative_ttl":
			m.NegativeTTL, err = caddyargs.Duration(d)
		case "timeout":
			m.Timeout, err = caddyargs.Duration(d)
		case "cache_size":
			m.CacheSize, err = caddyargs.Int(d, 1, "entries")
		case "backchannel_logout":
			m.BackchannelLogout, err = caddyargs.One(d)
		case "backchannel_audience":
			m.BackchannelAudience, err = caddyargs.One(d)
		default:
			err = d.Errf("unrecognized subdirective %q", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ SessionMethod         = (*OAuth2IntrospectSession)(nil)
	_ ClaimBearer           = (*OAuth2IntrospectSession)(nil)
	_ LogoutReceiver        = (*OAuth2IntrospectSession)(nil)
	_ caddy.Provisioner     = (*OAuth2IntrospectSession)(nil)
	_ caddy.CleanerUpper    = (*OAuth2IntrospectSession)(nil)
	_ caddyfile.Unmarshaler = (*OAuth2IntrospectSession)(nil)
)
