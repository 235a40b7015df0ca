package caddymodule

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddy.RegisterModule(JWTSession{})
}

// JWTSession identifies callers by a signed JSON Web Token read from a
// cookie or a header. Exactly one of secret, secret_file, public_key_file
// and jwks_url names the key, or `issuer` alone names an OpenID provider
// whose keys are discovered. Verified tokens are cached until their `exp`,
// so a repeat request skips the signature check; revocations (admin,
// back-channel logout) are checked on every request, cached tokens
// included.
type JWTSession struct {
	// Sources lists where the token is read; the first source present in
	// the request is used. Default: the Authorization header, as
	// `Bearer <token>`.
	Sources []CredentialSource `json:"sources,omitempty"`

	// Secret is the HMAC key for HS256/384/512 tokens, at least 32 bytes.
	// Use a placeholder such as `{env.JWT_SECRET}`; a literal is accepted
	// with a warning because it ends up in config dumps.
	Secret string `json:"secret,omitempty"`

	// SecretFile is a file holding Secret; one trailing newline is
	// ignored. Placeholders are resolved.
	SecretFile string `json:"secret_file,omitempty"`

	// PublicKeyFile is a PEM public key or certificate for RS*, PS*, ES* or
	// EdDSA tokens. Placeholders are resolved.
	PublicKeyFile string `json:"public_key_file,omitempty"`

	// JWKSURL is a JSON Web Key Set URL. Keys are chosen by `kid`, fetched
	// at start, refreshed every 15 minutes and refetched at most once a
	// minute for an unknown `kid`; the last good set is kept when a fetch
	// fails. Placeholders are resolved.
	JWKSURL string `json:"jwks_url,omitempty"`

	// Issuer, if set, must equal the token's `iss`. Set alone, without
	// secret, public_key_file or jwks_url, it names an OpenID provider:
	// the keys are those of the `jwks_uri` in
	// `<issuer>/.well-known/openid-configuration`, whose `issuer` must
	// equal this value exactly, refreshed like jwks_url. A provider that
	// is down at start does not stop Caddy: requests answer 503 with
	// Retry-After until discovery succeeds, retried with backoff (1s
	// doubling to 1m), and the outage is logged once.
	Issuer string `json:"issuer,omitempty"`

	// Audience, if set, must be among the token's `aud`. Set it with a
	// public key or JWKS shared with other applications: without it, any
	// token the identity provider issued for another application is
	// accepted (a warning is logged at start).
	Audience string `json:"audience,omitempty"`

	// Leeway is the clock skew allowed on `exp`, `nbf` and `iat`.
	// Default: 30s. A negative value (`leeway 0` in the Caddyfile) means
	// none.
	Leeway caddy.Duration `json:"leeway,omitempty"`

	// SubjectClaim names the claim that identifies the caller; it must be
	// a string. Default: `sub`.
	SubjectClaim string `json:"subject_claim,omitempty"`

	// CacheSize bounds the cache of verified tokens (entries).
	// Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// BackchannelLogout is a path of the site (e.g.
	// `/auth/backchannel-logout`) that accepts OpenID Connect
	// Back-Channel Logout 1.0 requests: a POSTed `logout_token` signed by
	// the issuer's keys (jwks_url or discovery; issuer is required) logs
	// out its `sid`, or every session of its `sub` issued until now.
	// Register `<site><path>` as the client's backchannel_logout_uri at
	// the identity provider. Default: off.
	BackchannelLogout string `json:"backchannel_logout,omitempty"`

	// BackchannelAudience is the `aud` a logout token must carry: the
	// client id the application is registered under at the identity
	// provider. Default: Audience.
	BackchannelAudience string `json:"backchannel_audience,omitempty"`

	auth   *session.JWT
	logout *session.BackchannelLogout
	cancel context.CancelFunc // stops the JWKS refresher
}

// CredentialSource names one cookie or one header.
type CredentialSource struct {
	// Cookie is a cookie name.
	Cookie string `json:"cookie,omitempty"`
	// Header is a header name.
	Header string `json:"header,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (JWTSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  sessionsNamespace + ".jwt",
		New: func() caddy.Module { return new(JWTSession) },
	}
}

// Provision resolves the key and builds the verifier; with jwks_url it
// fetches the key set and starts its refresher, which Cleanup stops.
func (m *JWTSession) Provision(ctx caddy.Context) error {
	logger := ctx.Logger()
	r := provision.NewResolver()
	cfg := session.JWTConfig{
		Issuer:       m.Issuer,
		Audience:     m.Audience,
		Leeway:       time.Duration(m.Leeway),
		SubjectClaim: m.SubjectClaim,
		CacheSize:    m.CacheSize,
		Revocations:  sessionRevocations(ctx),
	}
	for _, s := range m.Sources {
		cfg.Sources = append(cfg.Sources, session.TokenSource{Cookie: s.Cookie, Header: s.Header})
	}
	cfg.Secret = r.Secret("secret", m.Secret, m.SecretFile)
	keyFile := r.Value("public_key_file", m.PublicKeyFile)
	jwksURL := r.Value("jwks_url", m.JWKSURL)
	if err := r.Err(); err != nil {
		return err
	}
	if keyFile != "" {
		pem, err := os.ReadFile(keyFile)
		if err != nil {
			return fmt.Errorf("public_key_file: %w", err)
		}
		cfg.PublicKeyPEM = pem
	}
	discover := m.Issuer != "" && len(cfg.Secret) == 0 && keyFile == "" && jwksURL == ""
	if jwksURL != "" || discover {
		// The key set refreshes in the background until this config is
		// unloaded.
		jctx, cancel := context.WithCancel(ctx)
		m.cancel = cancel
		var jwks *session.JWKS
		var err error
		if discover {
			jwks, err = session.NewDiscoveredJWKS(jctx, m.Issuer, session.JWKSConfig{
				OnStateChange: discoveryLogger(logger, "the issuer's keys (OpenID discovery)"),
			})
			if err != nil {
				return fmt.Errorf("issuer: %w", err)
			}
		} else {
			jwks, err = session.NewJWKS(jctx, session.JWKSConfig{
				URL:           jwksURL,
				OnStateChange: discoveryLogger(logger, "jwks_url"),
			})
			if err != nil {
				return fmt.Errorf("jwks_url: %w", err)
			}
		}
		cfg.JWKS = jwks
	}
	auth, err := session.NewJWT(cfg)
	if err != nil {
		return err
	}
	m.auth = auth
	if m.BackchannelLogout != "" {
		if m.logout, err = newBackchannelLogout(logger, m.BackchannelLogout, m.Issuer, cmp.Or(m.BackchannelAudience, m.Audience), cfg.JWKS, cfg.Revocations); err != nil {
			return err
		}
	}
	warnLiteralSecret(logger, "secret", m.Secret)
	if m.Audience == "" && (keyFile != "" || jwksURL != "") {
		logger.Warn("session jwt without audience: any token this key signed for another application is accepted; set audience")
	}
	return nil
}

// Cleanup stops the JWKS refresher. It is safe after a failed Provision.
func (m *JWTSession) Cleanup() error {
	if m.cancel != nil {
		m.cancel()
	}
	return nil
}

// Authenticator implements SessionMethod.
func (m *JWTSession) Authenticator() session.Authenticator { return m.auth }

// LogoutRoute implements LogoutReceiver.
func (m *JWTSession) LogoutRoute() (string, http.Handler) {
	if m.logout == nil {
		return "", nil
	}
	return m.BackchannelLogout, m.logout
}

// BearsClaims implements ClaimBearer: `authorize claim` reads JWT claims.
func (m *JWTSession) BearsClaims() bool { return true }

// CachesDecisions reports that verified tokens are cached, for the
// decision-cache metrics.
func (m *JWTSession) CachesDecisions() bool { return true }

// UnmarshalCaddyfile reads the tokens after `session`. Syntax:
//
//	jwt {
//	    cookie          <name>
//	    header          <name>
//	    secret          <key>
//	    secret_file     <path>
//	    public_key_file <path>
//	    jwks_url        <url>
//	    issuer          <iss>
//	    audience        <aud>
//	    leeway          <duration>
//	    subject_claim   <claim>
//	    cache_size      <entries>
//	    backchannel_logout   <path>
//	    backchannel_audience <client id>
//	}
//
// With `issuer` and no key, the keys are discovered from the issuer.
func (m *JWTSession) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the method name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch field := d.Val(); field {
		case "cookie", "header":
			m.Sources, err = appendSource(d, m.Sources)
		case "secret":
			m.Secret, err = caddyargs.One(d)
		case "secret_file":
			m.SecretFile, err = caddyargs.One(d)
		case "public_key_file":
			m.PublicKeyFile, err = caddyargs.One(d)
		case "jwks_url":
			m.JWKSURL, err = caddyargs.One(d)
		case "issuer":
			m.Issuer, err = caddyargs.One(d)
		case "audience":
			m.Audience, err = caddyargs.One(d)
		case "leeway":
			m.Leeway, err = leewayArg(d)
		case "subject_claim":
			m.SubjectClaim, err = caddyargs.One(d)
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

// newBackchannelLogout builds the receiver of a session's
// `backchannel_logout` path, validating logout tokens against the issuer's
// keys.
func newBackchannelLogout(logger *zap.Logger, path, issuer, audience string, jwks *session.JWKS, revs *session.Revocations) (*session.BackchannelLogout, error) {
	switch {
	case !strings.HasPrefix(path, "/"):
		return nil, fmt.Errorf("backchannel_logout: a path of the site, starting with /")
	case jwks == nil:
		return nil, fmt.Errorf("backchannel_logout: logout tokens are signed by the issuer's keys; set jwks_url or issuer alone (discovery)")
	case issuer == "":
		return nil, fmt.Errorf("backchannel_logout: needs issuer, which a logout token's iss must equal")
	case audience == "":
		return nil, fmt.Errorf("backchannel_logout: needs the client id a logout token's aud must hold (backchannel_audience or audience)")
	}
	return session.NewBackchannelLogout(session.BackchannelLogoutConfig{
		Issuer:      issuer,
		Audience:    audience,
		JWKS:        jwks,
		Revocations: revs,
		OnResult:    logoutResultLogger(logger),
	})
}

// appendSource reads `cookie <name>` or `header <name>`.
func appendSource(d *caddyfile.Dispenser, list []CredentialSource) ([]CredentialSource, error) {
	kind := d.Val()
	v, err := caddyargs.One(d)
	if err != nil {
		return list, err
	}
	if kind == "cookie" {
		return append(list, CredentialSource{Cookie: v}), nil
	}
	return append(list, CredentialSource{Header: v}), nil
}

// leewayArg reads a JWT leeway. `leeway 0` means none, which JSON spells
// as a negative value because 0 there means the 30s default.
func leewayArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := caddyargs.One(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	switch {
	case err != nil || dur < 0:
		return 0, d.Errf("leeway: want a duration such as 30s, or 0 for none")
	case dur == 0:
		return -1, nil
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var (
	_ SessionMethod         = (*JWTSession)(nil)
	_ ClaimBearer           = (*JWTSession)(nil)
	_ LogoutReceiver        = (*JWTSession)(nil)
	_ caddy.Provisioner     = (*JWTSession)(nil)
	_ caddy.CleanerUpper    = (*JWTSession)(nil)
	_ caddyfile.Unmarshaler = (*JWTSession)(nil)
)
