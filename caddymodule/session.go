package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/session"
)

// SessionConfig says how callers are identified. Exactly one method is
// chosen; the other fields belong to the method named in their comment.
type SessionConfig struct {
	// Method is `jwt`, `introspect`, `caddy_auth` (trust an earlier Caddy
	// `authentication` handler: the caller is `{http.auth.user.id}`), or
	// `none` (explicit public access, logged as a warning at start).
	Method string `json:"method,omitempty"`

	// Sources lists where the credential is read. For `jwt`, the token is
	// taken from the first source present in the request (default: the
	// Authorization header, as `Bearer <token>`). For `introspect`, every
	// listed cookie and header is forwarded to the application.
	Sources []CredentialSource `json:"sources,omitempty"`

	// Secret is the HMAC key for HS256/384/512 tokens (`jwt`), at least 32
	// bytes. Use a placeholder such as `{env.JWT_SECRET}`; a literal is
	// accepted with a warning.
	Secret string `json:"secret,omitempty"`
	// SecretFile is a file holding Secret (`jwt`).
	SecretFile string `json:"secret_file,omitempty"`
	// PublicKeyFile is a PEM public key for RS*, PS*, ES* or EdDSA tokens
	// (`jwt`).
	PublicKeyFile string `json:"public_key_file,omitempty"`
	// JWKSURL is a JSON Web Key Set URL (`jwt`). Keys are chosen by `kid`,
	// fetched at start, refreshed every 15 minutes, refetched at most once a
	// minute for an unknown `kid`; the last good set is kept when a fetch
	// fails.
	JWKSURL string `json:"jwks_url,omitempty"`
	// Issuer, if set, must equal the token's `iss` (`jwt`).
	Issuer string `json:"issuer,omitempty"`
	// Audience, if set, must be among the token's `aud` (`jwt`).
	Audience string `json:"audience,omitempty"`
	// Leeway is the clock skew allowed on `exp`, `nbf` and `iat` (`jwt`).
	// Default: 30s. A negative value (`leeway 0` in the Caddyfile) means
	// none.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// SubjectClaim names the claim that identifies the caller (`jwt`).
	// Default: `sub`.
	SubjectClaim string `json:"subject_claim,omitempty"`

	// URL is the application's endpoint that judges a session
	// (`introspect`). 2xx allows, 401 and 403 deny, anything else or a
	// timeout answers 503. Placeholders such as `{env.AUTH_URL}` are
	// resolved at provision time.
	URL string `json:"url,omitempty"`
	// PerImage forwards `X-Image-Id` and `X-Image-Variant` so the
	// application decides per image (`introspect`); set by `authorize
	// introspect per_image` in the Caddyfile.
	PerImage bool `json:"per_image,omitempty"`
	// SubjectHeader is the response header naming the caller
	// (`introspect`). Default: `X-User-Id`.
	SubjectHeader string `json:"subject_header,omitempty"`
	// Timeout bounds one call to the application (`introspect`).
	// Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// CacheTTL is how long an allowing answer is reused (`introspect`).
	// The application's `Cache-Control: max-age`/`no-store` overrides it.
	// Default: 30s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`
	// NegativeTTL is how long a 401/403 answer is reused (`introspect`).
	// Default: 5s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// CacheSize bounds the decision cache: verified tokens (`jwt`, kept
	// no longer than their `exp`) or introspection answers. Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`
}

// CredentialSource names one cookie or one header.
type CredentialSource struct {
	// Cookie is a cookie name.
	Cookie string `json:"cookie,omitempty"`
	// Header is a header name.
	Header string `json:"header,omitempty"`
}

// AuthorizeConfig says which images an identified caller may see.
type AuthorizeConfig struct {
	// Policy is `any` (the default: every valid session sees every image),
	// `claim` (a JWT claim must hold a value matching Template), `owner`
	// (the image's Cloudflare metadata field Field must equal the caller's
	// subject), or `introspect` (the application decides per image; see
	// SessionConfig.PerImage).
	Policy string `json:"policy,omitempty"`
	// Claim is the JWT claim to search (`claim`).
	Claim string `json:"claim,omitempty"`
	// Template is what a claim value must equal (`claim`): `{id}` and
	// `{variant}` expand to the request's image; a trailing `*` makes it a
	// prefix rule.
	Template string `json:"template,omitempty"`
	// Field is the metadata field naming the owner (`owner`), stamped at
	// upload time.
	Field string `json:"field,omitempty"`
}

// gate is a handler's resolved session method and policy, with its metric
// handles.
type gate struct {
	method    string
	auth      session.Authenticator
	policy    session.Policy
	challenge []string // WWW-Authenticate on 401, or nil
	vary      []string // Vary on answers that carry a URL
	cancel    context.CancelFunc
	results   [numResults]prometheus.Counter
	duration  prometheus.Observer
	hits      prometheus.Counter
	misses    prometheus.Counter
}

// Session check results: the `result` label of imagegate_session_checks_total.
type checkResult int

const (
	resultAllowed checkResult = iota
	resultUnauthenticated
	resultForbidden
	resultUnavailable
	numResults
)

var resultNames = [numResults]string{"allowed", "unauthenticated", "forbidden", "unavailable"}

// check authenticates the caller and applies the policy to img. It returns
// the caller's identity and, when the request must be refused, the outcome
// to answer with and why (session errors never contain credentials).
func (g *gate) check(r *http.Request, img session.Image, now func() time.Time) (session.Identity, outcome, error) {
	start := now()
	id, o, err := g.auth.Authenticate(r, img)
	if err == nil {
		err = g.policy.Allow(r.Context(), id, img)
	}
	g.duration.Observe(now().Sub(start).Seconds())
	if o.CacheHit {
		g.hits.Inc()
	} else if g.method != "none" && g.method != "caddy_auth" {
		g.misses.Inc()
	}
	res, out := resultAllowed, outcome(0)
	switch {
	case err == nil:
	case errors.Is(err, session.ErrUnauthenticated):
		res, out = resultUnauthenticated, outcomeUnauthenticated
	case errors.Is(err, session.ErrForbidden):
		res, out = resultForbidden, outcomeForbidden
	default: // ErrUnavailable or anything unforeseen: fail closed
		res, out = resultUnavailable, outcomeUnavailable
	}
	g.results[res].Inc()
	return id, out, err
}

// newGate builds the session method and policy from the configuration.
func (h *Handler) newGate(ctx caddy.Context, r *resolver) (_ *gate, err error) {
	sc, ac := h.Session, h.Authorize
	if ac == nil {
		ac = &AuthorizeConfig{Policy: "any"}
	}
	g := &gate{method: sc.Method}
	defer func() {
		if err != nil && g.cancel != nil {
			g.cancel() // stop a JWKS refresher started before the failure
		}
	}()
	switch sc.Method {
	case "none":
		g.auth = session.None{}
	case "caddy_auth":
		g.auth = session.Trusted{User: upstreamUser}
	case "jwt":
		g.auth, err = h.newJWT(ctx, g, r)
	case "introspect":
		g.auth, err = newIntrospect(sc, r)
	case "":
		return nil, errors.New("session: required; use `session none` for explicit public access")
	default:
		return nil, fmt.Errorf("session: unknown method %q; use jwt, introspect, caddy_auth or none", sc.Method)
	}
	if err == nil {
		err = sc.checkFieldsBelong()
	}
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", sc.Method, err)
	}
	if c, ok := g.auth.(interface{ Challenge() string }); ok && c.Challenge() != "" {
		g.challenge = []string{c.Challenge()}
	}
	g.vary = []string{varyHeader(sc)}

	switch ac.Policy {
	case "", "any":
		g.policy = session.Any{}
	case "claim":
		if sc.Method != "jwt" {
			return nil, errors.New("authorize claim: needs session jwt, the only method with claims")
		}
		g.policy, err = session.NewClaim(ac.Claim, ac.Template)
	case "introspect":
		if sc.Method != "introspect" || !sc.PerImage {
			return nil, errors.New("authorize introspect per_image: needs session introspect with per_image")
		}
		g.policy = session.Any{} // the application already decided, per image
	case "owner":
		if sc.Method == "none" {
			return nil, errors.New("authorize owner: needs a session method that names the caller, not none")
		}
		g.policy, err = h.newOwner(ac, r)
	default:
		return nil, fmt.Errorf("authorize: unknown policy %q; use any, claim, owner or introspect per_image", ac.Policy)
	}
	if err != nil {
		return nil, fmt.Errorf("authorize %s: %w", ac.Policy, err)
	}

	for res := range numResults {
		g.results[res] = metrics.sessionChecks.WithLabelValues(g.method, resultNames[res])
	}
	g.duration = metrics.sessionTime.WithLabelValues(g.method)
	g.hits = metrics.decisionHits.WithLabelValues(g.method)
	g.misses = metrics.decisionMisses.WithLabelValues(g.method)
	return g, nil
}

func (h *Handler) newJWT(ctx caddy.Context, g *gate, r *resolver) (*session.JWT, error) {
	sc := h.Session
	cfg := session.JWTConfig{
		Issuer:       sc.Issuer,
		Audience:     sc.Audience,
		Leeway:       time.Duration(sc.Leeway),
		SubjectClaim: sc.SubjectClaim,
		CacheSize:    sc.CacheSize,
	}
	for _, s := range sc.Sources {
		cfg.Sources = append(cfg.Sources, session.TokenSource{Cookie: s.Cookie, Header: s.Header})
	}
	cfg.Secret = r.secret("secret", sc.Secret, sc.SecretFile)
	if err := r.err(); err != nil {
		return nil, err
	}
	if sc.PublicKeyFile != "" {
		pem, err := os.ReadFile(r.value("public_key_file", sc.PublicKeyFile))
		if err != nil {
			return nil, fmt.Errorf("public_key_file: %w", err)
		}
		cfg.PublicKeyPEM = pem
	}
	if sc.JWKSURL != "" {
		// The key set refreshes in the background until this config is
		// unloaded; Cleanup cancels it.
		jctx, cancel := context.WithCancel(ctx)
		g.cancel = cancel
		jwks, err := session.NewJWKS(jctx, session.JWKSConfig{URL: r.value("jwks_url", sc.JWKSURL)})
		if err != nil {
			return nil, fmt.Errorf("jwks_url: %w", err)
		}
		cfg.JWKS = jwks
	}
	return session.NewJWT(cfg)
}

func newIntrospect(sc *SessionConfig, r *resolver) (*session.Introspect, error) {
	url := r.value("url", sc.URL)
	if err := r.err(); err != nil {
		return nil, err
	}
	cfg := session.IntrospectConfig{
		URL:           url,
		PerImage:      sc.PerImage,
		SubjectHeader: sc.SubjectHeader,
		Timeout:       time.Duration(sc.Timeout),
		CacheTTL:      time.Duration(sc.CacheTTL),
		NegativeTTL:   time.Duration(sc.NegativeTTL),
		CacheSize:     sc.CacheSize,
	}
	for _, s := range sc.Sources {
		if s.Cookie != "" {
			cfg.Cookies = append(cfg.Cookies, s.Cookie)
		}
		if s.Header != "" {
			cfg.Headers = append(cfg.Headers, s.Header)
		}
	}
	return session.NewIntrospect(cfg)
}

// apiClient returns the Cloudflare API client for account_id and
// api_token, made once per config and shared by owner lookups and uploads.
func (h *Handler) apiClient(r *resolver) (*cfapi.Client, error) {
	if h.api != nil {
		return h.api, nil
	}
	client := &cfapi.Client{
		BaseURL:   r.value("api_url", h.APIURL),
		AccountID: r.value("account_id", h.AccountID),
		APIToken:  string(r.secret("api_token", h.APIToken, h.APITokenFile)),
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	if client.AccountID == "" || client.APIToken == "" {
		return nil, errors.New("needs account_id and api_token (or api_token_file) for the Cloudflare Images API")
	}
	h.api = client
	return client, nil
}

func (h *Handler) newOwner(ac *AuthorizeConfig, r *resolver) (*session.Owner, error) {
	client, err := h.apiClient(r)
	if err != nil {
		return nil, err
	}
	return session.NewOwner(session.OwnerConfig{
		Field:  ac.Field,
		Source: session.CloudflareMetadata{Client: client},
		TTL:    time.Duration(h.MetadataTTL),
	})
}

// checkFieldsBelong reports a setting of another session method (possible
// in JSON; the Caddyfile parser already refuses it), which would otherwise
// be silently ignored.
func (sc *SessionConfig) checkFieldsBelong() error {
	jwtOnly := map[string]bool{
		"secret": sc.Secret != "", "secret_file": sc.SecretFile != "", "public_key_file": sc.PublicKeyFile != "",
		"jwks_url": sc.JWKSURL != "", "issuer": sc.Issuer != "", "audience": sc.Audience != "",
		"leeway": sc.Leeway != 0, "subject_claim": sc.SubjectClaim != "",
	}
	introspectOnly := map[string]bool{
		"url": sc.URL != "", "per_image": sc.PerImage, "subject_header": sc.SubjectHeader != "",
		"timeout": sc.Timeout != 0, "cache_ttl": sc.CacheTTL != 0, "negative_ttl": sc.NegativeTTL != 0,
	}
	shared := map[string]bool{"sources": len(sc.Sources) > 0, "cache_size": sc.CacheSize != 0}
	var foreign []map[string]bool
	switch sc.Method {
	case "jwt":
		foreign = []map[string]bool{introspectOnly}
	case "introspect":
		foreign = []map[string]bool{jwtOnly}
	default:
		foreign = []map[string]bool{jwtOnly, introspectOnly, shared}
	}
	var names []string
	for _, m := range foreign {
		for name, set := range m {
			if set {
				names = append(names, name)
			}
		}
	}
	if len(names) > 0 {
		slices.Sort(names)
		return fmt.Errorf("%s: not a setting of this method", strings.Join(names, ", "))
	}
	return nil
}

// varyHeader is the Vary of a handed-out URL: Accept (JSON or redirect), plus
// the request headers that carry the credential, so a browser shared by two
// users never reuses one user's cached answer for the other. It costs no
// Cloudflare delivery: a revalidated answer is the same stable URL, whose
// image the browser still has.
func varyHeader(sc *SessionConfig) string {
	vary := "Accept"
	if sc.Method != "jwt" && sc.Method != "introspect" {
		return vary
	}
	sources := sc.Sources
	if len(sources) == 0 && sc.Method == "jwt" {
		sources = []CredentialSource{{Header: "Authorization"}} // the jwt default
	}
	cookie := false
	for _, s := range sources {
		switch {
		case s.Cookie != "" && !cookie:
			cookie = true
			vary += ", Cookie"
		case s.Header != "":
			vary += ", " + http.CanonicalHeaderKey(s.Header)
		}
	}
	return vary
}

// upstreamUser reads the user an earlier Caddy authentication handler set.
func upstreamUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	return repl.ReplaceAll("{http.auth.user.id}", "")
}
