// Package caddymodule registers imagegate's Caddy modules: the HTTP handler
// http.handlers.cf_images with its Caddyfile directive, the session methods
// (http.handlers.cf_images.sessions.*) and authorization policies
// (http.handlers.cf_images.authorizers.*) it loads as guest modules, and
// the `cf-images-token` command. It only translates between Caddy and the
// plain-Go packages that do the work: config, signer, session, cfapi and
// imageref.
package caddymodule

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/config"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
	"github.com/seed-a64a90cf/imagegate/session"
	"github.com/seed-a64a90cf/imagegate/signer"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves private Cloudflare Images through stable signed URLs. A GET
// or HEAD for `<prefix>/<id>/<variant>` is validated, checked against the
// caller's session and the authorization policy, and answered with a
// `302 Found` to a signed `<delivery_url>/<account_hash>/<id>/<variant>?exp=…&sig=…`
// URL, or with `{"url","expires","expires_at"}` JSON when the client sends
// `Accept: application/json`.
//
// The URL's `exp` is always a multiple of `window` and at least
// `min_remaining` ahead, so every request inside one window receives a
// byte-identical URL and browsers can cache the image. Requests outside
// `prefix` go to the next handler.
//
// Refusals (400, 401, 403, 404, 405, 429, 503) are returned as handler
// errors after their headers are set, so a site's `handle_errors` routes can
// answer them (a placeholder image, a login redirect); without such routes
// Caddy answers the bare status. `{http.cf_images.outcome}` names what
// became of the request (redirect, json, not_modified, unauthenticated,
// forbidden, limited, …).
//
// Secrets may be given as runtime placeholders (`{env.CF_IMAGES_KEY}`,
// `{file./run/secrets/key}`) or via the `_file` settings; they are resolved
// at provision time, so the adapted JSON config never contains them.
type Handler struct {
	// Prefix is the path before `<id>/<variant>`. `/` serves images at
	// `/<id>/<variant>`. Default: `/img`.
	Prefix string `json:"prefix,omitempty"`

	// AccountHash is the account hash used in delivery URLs (Images >
	// Overview in the Cloudflare dashboard), not the 32-hex account id.
	// Placeholders are resolved at provision time. Required.
	AccountHash string `json:"account_hash,omitempty"`

	// SigningKey is the Images URL signing key, as the dashboard shows it.
	// Use a placeholder such as `{env.CF_IMAGES_KEY}`; a literal key is
	// accepted with a warning because it ends up in config dumps. Exactly
	// one of signing_key and signing_key_file is required.
	SigningKey string `json:"signing_key,omitempty"`

	// SigningKeyFile is the path of a file holding the signing key; one
	// trailing newline is ignored. Placeholders are resolved.
	SigningKeyFile string `json:"signing_key_file,omitempty"`

	// DeliveryURL is the scheme, host and optional path of delivery URLs.
	// Default: `https://imagedelivery.net`. Point it at the local emulator
	// for development. Nothing in a request can change it.
	DeliveryURL string `json:"delivery_url,omitempty"`

	// Variants lists the named variants served with signed URLs. A variant
	// in neither Variants nor PublicVariants gets 404.
	Variants []string `json:"variants,omitempty"`

	// PublicVariants lists variants served with unsigned URLs, for variants
	// marked "always allow public access" in Cloudflare.
	PublicVariants []string `json:"public_variants,omitempty"`

	// Window is the granularity of `exp`: every URL expires on a multiple
	// of it. At least 1m, whole seconds. Default: 1h.
	Window caddy.Duration `json:"window,omitempty"`

	// MinRemaining is the least validity a handed-out URL carries; a cached
	// URL is re-signed when less than this is left. Shorter than Window.
	// Default: 5m.
	MinRemaining caddy.Duration `json:"min_remaining,omitempty"`

	// CacheSize bounds the signed-URL cache: a size of heap such as
	// `64MiB`, or a count of URLs (the form older configs use; the cache
	// then also stays within 64MiB). Default: 64MiB, about 88,000 URLs of
	// UUID ids.
	CacheSize *URLCacheSize `json:"cache_size,omitempty"`

	// Mode is how the image is delivered: `redirect` (the default) answers
	// 302 to the signed URL; `proxy` fetches the image and sends its bytes,
	// from a byte cache shared by every authorized caller.
	Mode string `json:"mode,omitempty"`

	// Proxy configures `mode proxy`; its zero value takes the defaults.
	Proxy *ProxyConfig `json:"proxy,omitempty"`

	// SessionRaw is the session method, a guest module in
	// `http.handlers.cf_images.sessions` named by its `method` key: `jwt`,
	// `introspect`, `caddy_auth` or `none`. Required, so that public access
	// is always a visible choice: `{"method": "none"}` serves every caller
	// and is logged as a warning at start.
	SessionRaw json.RawMessage `json:"session,omitempty" caddy:"namespace=http.handlers.cf_images.sessions inline_key=method"`

	// AuthorizeRaw is the authorization policy, a guest module in
	// `http.handlers.cf_images.authorizers` named by its `policy` key:
	// `any`, `claim`, `owner` or `introspect`. Default: `{"policy": "any"}`.
	AuthorizeRaw json.RawMessage `json:"authorize,omitempty" caddy:"namespace=http.handlers.cf_images.authorizers inline_key=policy"`

	// AccountID is the 32-hex Cloudflare account id, for API calls
	// (`authorize owner` and uploads). Placeholders are resolved.
	AccountID string `json:"account_id,omitempty"`

	// APIToken is a Cloudflare API token with Images Read (and Images Write
	// for uploads). Use a placeholder such as `{env.CF_API_TOKEN}`; a
	// literal is accepted with a warning.
	APIToken string `json:"api_token,omitempty"`

	// APITokenFile is a file holding APIToken.
	APITokenFile string `json:"api_token_file,omitempty"`

	// APIURL is the Cloudflare API root, an absolute http(s) URL. Default:
	// `https://api.cloudflare.com/client/v4`; the local emulator serves it
	// at `<emulator>/client/v4`.
	APIURL string `json:"api_url,omitempty"`

	// MetadataTTL is how long an image's owner (`authorize owner`) is
	// cached. Default: 5m.
	MetadataTTL caddy.Duration `json:"metadata_ttl,omitempty"`

	// MetadataStale is how long past MetadataTTL a cached owner still
	// decides while the Cloudflare API fails or rate-limits (the idea of
	// RFC 5861's stale-if-error). With nothing cached, the answer is 503.
	// Default: 1h.
	MetadataStale caddy.Duration `json:"metadata_stale,omitempty"`

	// LookupLimit bounds, per caller, the owner-metadata lookups that miss
	// the cache and so call the Cloudflare API. Over it the answer is 429
	// with Retry-After and no API call. Default: 120 per minute; `{}` (0
	// events) turns it off.
	LookupLimit *RateLimit `json:"lookup_limit,omitempty"`

	// Upload turns on uploads; see UploadConfig. Default: off.
	Upload *UploadConfig `json:"upload,omitempty"`

	// UploadPath is the flat form of `upload`'s path, kept for configs
	// written before the block. If set, it turns on uploads: an authenticated POST to this
	// exact path answers `{"id","uploadURL"}` with a one-time Cloudflare
	// direct-upload URL for a private image (requireSignedURLs is always
	// sent) whose metadata names the caller. Needs account_id, api_token
	// and a session method that names callers. Default: off.
	UploadPath string `json:"upload_path,omitempty"`

	// UploadOwnerField is the metadata field stamped with the uploader's
	// subject; `authorize owner` must read the same field. Default: `owner`.
	UploadOwnerField string `json:"upload_owner_field,omitempty"`

	// UploadLimit bounds the upload URLs issued per caller. Over it the
	// answer is 429 with Retry-After. Default: 20 per hour; `{}` (0
	// events) turns it off.
	UploadLimit *RateLimit `json:"upload_limit,omitempty"`

	// Redis is the Redis a fleet of gateways shares (see RedisConfig).
	// Default: the `cf_images` app's, or none.
	Redis *RedisConfig `json:"redis,omitempty"`

	// RedisTimeout bounds every Redis operation. It is the one-line form's
	// companion; in the block form it is the block's `timeout`.
	// Default: 100ms.
	RedisTimeout caddy.Duration `json:"redis_timeout,omitempty"`

	app        *App // the config's cf_images app
	apiKey     string
	cfg        config.Gateway
	logoutPath string       // the session's back-channel logout path, if any
	logout     http.Handler // and the handler that takes logout tokens there
	method     SessionMethod
	authorizer Authorizer
	gate       *session.Gate
	checks     *checkMetrics
	api        *cfapi.Client
	uploads    *uploader
	signer     *signer.Signer
	proxy      *imageproxy.Proxy
	mem        *imageproxy.Memory // proxy mode's memory tier, or nil
	memKey     string             // the memory tier's key in memoryTiers, to release
	fleet      *fleetConn         // the shared Redis, or nil
	fleetKey   string             // its key in fleets, to release
	limitKey   []byte             // keys subjects' hashes in Redis
	variants   map[string]*variantState
	prefix     string // Prefix, without a trailing slash
	keyID      string
	keyInUse   bool // counted in keysInUse, to release in Cleanup
	// browser caching in proxy mode (browser_max_age): off, or a cap
	noBrowserCache bool
	browserMaxAge  time.Duration
	now            func() time.Time
	logger         *zap.Logger
	deps           *dependencyLog // when each dependency was last warned about
}

// RateLimit is a budget of Events per Window for each caller.
type RateLimit struct {
	// Events is how many events a caller may spend per Window; 0 turns the
	// limit off.
	Events int `json:"events,omitempty"`
	// Window is the period over which Events refill.
	Window caddy.Duration `json:"window,omitempty"`
}

// rate returns the limit's budget, or def when it is not configured.
func (l *RateLimit) rate(def limit.Rate) limit.Rate {
	if l == nil {
		return def
	}
	return limit.Rate{Events: l.Events, Per: time.Duration(l.Window)}
}

// Default limits. Cloudflare allows about 1,200 API calls per five minutes
// per token (https://developers.cloudflare.com/fundamentals/api/reference/limits/),
// so one caller's lookups alone cannot exhaust it in under ten minutes.
var (
	defaultLookupLimit = limit.Rate{Events: 120, Per: time.Minute}
	defaultUploadLimit = limit.Rate{Events: 20, Per: time.Hour}
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cf_images",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets, loads the session and authorization guest
// modules, validates everything, and builds the signer and the metric
// handles, so that ServeHTTP does no set-up work. Every problem found is
// reported at once.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	h.deps = &dependencyLog{}
	if h.now == nil {
		h.now = time.Now
	}
	app, err := appOf(ctx)
	if err != nil {
		return err
	}
	h.app = app
	r := provision.NewResolver()
	cfg := h.gatewayConfig(r, app)
	// Every problem of the config is reported at once: the app block's, the
	// handler's own, its guest modules', its proxy block's and its Redis's.
	errs := []error{app.err, r.Err(), cfg.Validate(), h.validateLimits()}
	h.limitKey = fleetSecret(cfg.SigningKey, "limiter subject key v1")
	redisErr := h.provisionRedis(app, cfg.SigningKey)
	if redisErr == nil && h.fleet != nil {
		redisErr = registerRedisMetrics(ctx.GetMetricsRegistry())
	}
	errs = append(errs, redisErr)
	if err := h.provisionSession(ctx); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, h.unusedSettings()...)
		errs = append(errs, h.provisionUploads())
	}
	h.cfg = cfg
	h.prefix = cfg.Prefix
	h.variants = newVariantStates(cfg)
	// Built even when Redis failed, so that one start reports the proxy
	// block's mistakes too; such a handler never serves, and Cleanup
	// releases what was built.
	if cfg.Mode == config.ModeProxy {
		errs = append(errs, h.provisionProxy())
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	h.keyID = signer.Fingerprint(cfg.SigningKey)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.signer, err = signer.New(signer.Config{
		DeliveryURL: cfg.DeliveryURL,
		AccountHash: cfg.AccountHash,
		Key:         cfg.SigningKey,
		Window:      cfg.Window,
		MaxBytes:    h.CacheSize.bytes(),
		MaxEntries:  h.CacheSize.entries(),
		OnSign:      metrics.signatures.Inc,
		OnEvict:     metrics.cacheEvictions.Inc,
	})
	if err != nil {
		return err
	}
	useKey(h.keyID)
	h.keyInUse = true
	app.handlers.add(h)
	h.logStart()
	return nil
}

// gatewayConfig turns the handler's own fields, and the app's account
// settings where the handler sets none, into a config.Gateway, resolving
// placeholders and secrets into r.
func (h *Handler) gatewayConfig(r *provision.Resolver, app *App) config.Gateway {
	cfg := config.Gateway{
		Prefix:         h.Prefix,
		AccountHash:    r.Value("account_hash", cmp.Or(h.AccountHash, app.AccountHash)),
		DeliveryURL:    r.Value("delivery_url", cmp.Or(h.DeliveryURL, app.DeliveryURL)),
		Variants:       h.Variants,
		PublicVariants: h.PublicVariants,
		Window:         signer.Window{Size: time.Duration(h.Window), MinRemaining: time.Duration(h.MinRemaining)},
		Mode:           h.Mode,
	}
	key, keyFile := h.SigningKey, h.SigningKeyFile
	if key == "" && keyFile == "" {
		key, keyFile = app.SigningKey, app.SigningKeyFile
	}
	cfg.SigningKey = r.Secret("signing_key", key, keyFile)
	cfg.Unresolved = r.Failed()
	cfg.SetDefaults()
	return cfg
}

// provisionSession loads the session method and the authorization policy
// and joins them into the one gate every request goes through.
func (h *Handler) provisionSession(ctx caddy.Context) error {
	if h.SessionRaw == nil {
		return errors.New("session: required; use `session none` for explicit public access")
	}
	mod, err := ctx.LoadModule(h, "SessionRaw")
	if err != nil {
		return fmt.Errorf("loading session method: %w", err)
	}
	m, ok := mod.(SessionMethod)
	if !ok {
		return fmt.Errorf("session: module %T is not a session method", mod)
	}
	h.method = m

	var az Authorizer = &AnyAuthorizer{}
	if h.AuthorizeRaw != nil {
		mod, err := ctx.LoadModule(h, "AuthorizeRaw")
		if err != nil {
			return fmt.Errorf("loading authorization policy: %w", err)
		}
		if az, ok = mod.(Authorizer); !ok {
			return fmt.Errorf("authorize: module %T is not an authorizer", mod)
		}
	}
	h.authorizer = az
	policy, err := az.Policy(AuthorizerEnv{
		Session: m,
		API:     h.apiClient,
		Limiter: h.limiter,
		Legacy: LegacyMetadataSettings{
			MetadataTTL:   h.MetadataTTL,
			MetadataStale: h.MetadataStale,
			LookupLimit:   h.LookupLimit,
		},
	})
	if err != nil {
		return fmt.Errorf("authorize %s: %w", az.CaddyModule().ID.Name(), err)
	}
	if mp, ok := az.(MetadataPolicy); ok && h.uploadPath() != "" && mp.OwnerField() != h.uploadOwnerField() {
		return fmt.Errorf("authorize %s %s: uploads stamp the field %q (upload_owner_field, or owner_field in the upload block), so uploaders could not see their own images; use one field",
			az.CaddyModule().ID.Name(), mp.OwnerField(), h.uploadOwnerField())
	}
	if lr, ok := m.(LogoutReceiver); ok {
		h.logoutPath, h.logout = lr.LogoutRoute()
	}
	h.gate = session.NewGate(m.Authenticator(), policy)
	h.checks = newCheckMetrics(m)
	return nil
}

// unusedSettings reports settings that nothing in this configuration
// reads, which would otherwise be silently ignored.
func (h *Handler) unusedSettings() []error {
	var errs []error
	needs := func(set bool, name, what string) {
		if set {
			errs = append(errs, fmt.Errorf("%s: has no effect without %s", name, what))
		}
	}
	_, metadata := h.authorizer.(MetadataPolicy)
	uploads := h.uploadPath() != ""
	needs(h.Proxy != nil && h.Mode != config.ModeProxy, "proxy", "mode proxy")
	needs(!metadata && h.MetadataTTL != 0, "metadata_ttl", "authorize owner")
	needs(!metadata && h.MetadataStale != 0, "metadata_stale", "authorize owner")
	needs(!metadata && h.LookupLimit != nil, "lookup_limit", "authorize owner")
	needs(!uploads && h.UploadOwnerField != "", "upload_owner_field", "upload_path")
	needs(!uploads && h.UploadLimit != nil, "upload_limit", "upload_path")
	apiUsed := metadata || uploads
	needs(!apiUsed && h.AccountID != "", "account_id", "authorize owner or upload_path")
	needs(!apiUsed && (h.APIToken != "" || h.APITokenFile != ""), "api_token", "authorize owner or upload_path")
	needs(!apiUsed && h.APIURL != "", "api_url", "authorize owner or upload_path")
	return errs
}

// validateLimits checks the limits written in JSON, which the Caddyfile
// parser would have refused.
func (h *Handler) validateLimits() error {
	return errors.Join(h.LookupLimit.validate("lookup_limit"), h.UploadLimit.validate("upload_limit"),
		h.Upload.validate())
}

// validate checks a limit written in JSON.
func (l *RateLimit) validate(name string) error {
	switch {
	case l == nil:
	case l.Events < 0:
		return fmt.Errorf("%s: events must not be negative; 0 turns the limit off", name)
	case l.Events > 0 && l.Window <= 0:
		return fmt.Errorf("%s: %d events per what? set a positive window", name, l.Events)
	}
	return nil
}

// apiClient returns the Cloudflare API client of the handler's account
// (its own account_id and api_token, or else the app's), made once per
// handler. Every handler of the process with the same account, token and
// API URL gets the same client, so they share one in-flight cap and one
// pause after a 429: Cloudflare's limit is per token, not per site.
func (h *Handler) apiClient() (*cfapi.Client, error) {
	if h.api != nil {
		return h.api, nil
	}
	a := h.app
	id, token, tokenFile, base := h.AccountID, h.APIToken, h.APITokenFile, h.APIURL
	if id == "" && token == "" && tokenFile == "" {
		id, token, tokenFile = a.AccountID, a.APIToken, a.APITokenFile
	}
	base = cmp.Or(base, a.APIURL)
	r := provision.NewResolver()
	cfg := apiConfig{
		base:        r.Value("api_url", base),
		accountID:   r.Value("account_id", id),
		token:       string(r.Secret("api_token", token, tokenFile)),
		maxInFlight: a.APIMaxInFlight,
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	if cfg.accountID == "" || cfg.token == "" {
		return nil, errors.New("needs account_id and api_token (or api_token_file), on the handler or in the global cf_images block, for the Cloudflare Images API")
	}
	if cfg.base != "" {
		if err := cfapi.ValidateBaseURL(cfg.base); err != nil {
			return nil, fmt.Errorf("api_url: %w", err)
		}
	}
	client, key, err := sharedAPIClient(cfg)
	if err != nil {
		return nil, err
	}
	h.api, h.apiKey = client, key
	return client, nil
}

// logStart logs the effective configuration, with the key as a
// fingerprint, and warns about risky choices.
func (h *Handler) logStart() {
	fields := []zap.Field{
		zap.String("prefix", h.cfg.Prefix),
		zap.String("delivery_url", h.cfg.DeliveryURL),
		zap.String("account_hash", h.cfg.AccountHash),
		zap.String("key_id", h.keyID),
		zap.Strings("variants", h.cfg.Variants),
		zap.Strings("public_variants", h.cfg.PublicVariants),
		zap.Duration("window", h.cfg.Window.Size),
		zap.Duration("min_remaining", h.cfg.Window.MinRemaining),
		zap.String("url_cache", h.urlCacheSize()),
		zap.String("mode", h.cfg.Mode),
		zap.String("session", h.method.CaddyModule().ID.Name()),
		zap.String("authorize", h.authorizer.CaddyModule().ID.Name()),
	}
	if h.mem != nil {
		fields = append(fields, zap.String("byte_cache", humanize.IBytes(uint64(h.Proxy.cacheSize()))))
	}
	if h.fleet != nil {
		fields = append(fields, zap.Strings("redis", h.fleet.client.Addrs()))
	}
	h.logger.Info("cf_images ready", fields...)
	warnLiteralSecret(h.logger, "signing_key", h.SigningKey)
	warnLiteralSecret(h.logger, "api_token", h.APIToken)
	for _, w := range h.cfg.Warnings() {
		h.logger.Warn(w)
	}
}

// urlCacheSize describes the signed-URL cache's bound for the start line.
func (h *Handler) urlCacheSize() string {
	switch {
	case h.CacheSize.entries() > 0:
		return strconv.Itoa(h.CacheSize.entries()) + " URLs, at most " + humanize.IBytes(signer.DefaultMaxBytes)
	case h.CacheSize.bytes() > 0:
		return humanize.IBytes(uint64(h.CacheSize.bytes()))
	}
	return humanize.IBytes(signer.DefaultMaxBytes)
}

// warnLiteralSecret warns when a secret is written into the config itself
// rather than as a placeholder or a file.
func warnLiteralSecret(logger *zap.Logger, field, v string) {
	if v != "" && !provision.IsPlaceholder(v) {
		logger.Warn("literal secret in the config: it appears in config dumps; use an {env.X} placeholder or the _file form",
			zap.String("field", field))
	}
}

// Cleanup releases the signing key's metric series. Caddy cleans up the
// guest modules itself (the jwt method's JWKS refresher stops there). It is
// safe after a failed Provision.
func (h *Handler) Cleanup() error {
	if h.app != nil {
		h.app.handlers.remove(h)
	}
	h.cleanupProxy()
	h.cleanupRedis()
	if h.apiKey != "" {
		_, _ = apiClients.Delete(h.apiKey)
		h.apiKey, h.api = "", nil
	}
	if h.keyInUse {
		releaseKey(h.keyID)
		h.keyInUse = false
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
