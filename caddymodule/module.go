// Package caddymodule registers imagegate's Caddy HTTP handler,
// http.handlers.cf_images, and its Caddyfile directive. It only translates
// between Caddy and the plain-Go packages that do the work: config, signer
// and imageref.
package caddymodule

import (
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/config"
	"github.com/seed-a64a90cf/imagegate/signer"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves private Cloudflare Images through stable signed URLs. A GET
// or HEAD for `<prefix>/<id>/<variant>` is validated, checked against the
// caller's session, and answered with a `302 Found` to a signed
// `<delivery_url>/<account_hash>/<id>/<variant>?exp=…&sig=…` URL, or with
// `{"url","expires","expires_at"}` JSON when the client sends
// `Accept: application/json`.
//
// The URL's `exp` is always a multiple of `window` and at least
// `min_remaining` ahead, so every request inside one window receives a
// byte-identical URL and browsers can cache the image. Requests outside
// `prefix` go to the next handler.
//
// Secrets may be given as runtime placeholders (`{env.CF_IMAGES_KEY}`,
// `{file./run/secrets/key}`) or via `signing_key_file`; they are resolved at
// provision time, so the adapted JSON config never contains them.
type Handler struct {
	// Prefix is the path before `<id>/<variant>`. Default: `/img`.
	Prefix string `json:"prefix,omitempty"`

	// AccountHash is the account hash used in delivery URLs (Images >
	// Overview in the Cloudflare dashboard), not the 32-hex account id.
	// Placeholders such as `{env.CF_ACCOUNT_HASH}` are resolved at provision
	// time. Required.
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

	// CacheSize is the number of signed URLs kept in the LRU cache.
	// Default: 100000.
	CacheSize int `json:"cache_size,omitempty"`

	// Mode is how the image is delivered: `redirect` (the default) answers
	// 302 to the signed URL.
	Mode string `json:"mode,omitempty"`

	// Session says how callers are identified. Required, so that public
	// access is always a visible choice: `{"method": "none"}` serves every
	// caller and is logged as a warning at start.
	Session *SessionConfig `json:"session,omitempty"`

	// Authorize says which images an identified caller may see.
	// Default: `{"policy": "any"}`.
	Authorize *AuthorizeConfig `json:"authorize,omitempty"`

	// AccountID is the 32-hex Cloudflare account id, for API calls
	// (`authorize owner` reads image metadata). Placeholders are resolved.
	AccountID string `json:"account_id,omitempty"`

	// APIToken is a Cloudflare API token with Images Read, for API calls.
	// Use a placeholder such as `{env.CF_API_TOKEN}`; a literal is accepted
	// with a warning.
	APIToken string `json:"api_token,omitempty"`

	// APITokenFile is a file holding APIToken.
	APITokenFile string `json:"api_token_file,omitempty"`

	// APIURL is the Cloudflare API root. Default:
	// `https://api.cloudflare.com/client/v4`; the local emulator serves it
	// at `<emulator>/client/v4`.
	APIURL string `json:"api_url,omitempty"`

	// MetadataTTL is how long an image's metadata (its owner) is cached.
	// Default: 5m.
	MetadataTTL caddy.Duration `json:"metadata_ttl,omitempty"`

	// UploadPath, if set, turns on uploads: an authenticated POST to this
	// exact path answers `{"id","uploadURL"}` with a one-time Cloudflare
	// direct-upload URL for a private image (requireSignedURLs is always
	// sent) whose metadata names the caller. Needs account_id, api_token
	// and a session method that identifies callers. Default: off.
	UploadPath string `json:"upload_path,omitempty"`

	// UploadOwnerField is the metadata field stamped with the uploader's
	// subject, the field `authorize owner` reads. Default: `owner`.
	UploadOwnerField string `json:"upload_owner_field,omitempty"`

	cfg      config.Gateway
	gate     *gate
	api      *cfapi.Client
	uploads  *uploader
	signer   *signer.Signer
	variants map[string]*variantState
	prefix   string // Prefix, without a trailing slash
	keyID    string
	keyInUse bool // counted in keysInUse, to release in Cleanup
	now      func() time.Time
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cf_images",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision resolves secrets, validates the configuration, and builds the
// signer and the metric handles, so that ServeHTTP does no set-up work.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = time.Now
	}
	r := &resolver{repl: caddy.NewReplacer()}
	cfg, err := h.resolve(r)
	if err != nil {
		return err
	}
	if h.Session == nil {
		return errors.New("cf_images: session: required; use `session none` for explicit public access")
	}
	if h.gate, err = h.newGate(ctx, r); err != nil {
		return fmt.Errorf("cf_images: %w", err)
	}
	if h.uploads, err = h.newUploader(r); err != nil {
		return fmt.Errorf("cf_images: %w", err)
	}
	h.cfg = cfg
	h.prefix = cfg.Prefix
	h.keyID = signer.Fingerprint(cfg.SigningKey)

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.variants = newVariantStates(cfg)
	h.signer, err = signer.New(signer.Config{
		DeliveryURL: cfg.DeliveryURL,
		AccountHash: cfg.AccountHash,
		Key:         cfg.SigningKey,
		Window:      signer.Window{Size: cfg.Window, MinRemaining: cfg.MinRemaining},
		Size:        cfg.CacheSize,
		OnSign:      metrics.signatures.Inc,
		OnEvict:     metrics.cacheEvictions.Inc,
	})
	if err != nil {
		return err
	}
	useKey(h.keyID)
	h.keyInUse = true
	h.logStart()
	return nil
}

// resolve turns the JSON fields into a validated config.Gateway.
func (h *Handler) resolve(r *resolver) (config.Gateway, error) {
	cfg := config.Gateway{
		Prefix:         h.Prefix,
		AccountHash:    r.value("account_hash", h.AccountHash),
		DeliveryURL:    r.value("delivery_url", h.DeliveryURL),
		Variants:       h.Variants,
		PublicVariants: h.PublicVariants,
		Window:         time.Duration(h.Window),
		MinRemaining:   time.Duration(h.MinRemaining),
		CacheSize:      h.CacheSize,
		Mode:           h.Mode,
	}
	cfg.SigningKey = r.secret("signing_key", h.SigningKey, h.SigningKeyFile)
	cfg.SetDefaults()
	if err := r.err(); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("cf_images: %w", err)
	}
	return cfg, nil
}

// logStart logs the effective configuration, with the key as a
// fingerprint, and warns about risky choices.
func (h *Handler) logStart() {
	h.logger.Info("cf_images ready",
		zap.String("prefix", h.cfg.Prefix),
		zap.String("delivery_url", h.cfg.DeliveryURL),
		zap.String("account_hash", h.cfg.AccountHash),
		zap.String("key_id", h.keyID),
		zap.Strings("variants", h.cfg.Variants),
		zap.Strings("public_variants", h.cfg.PublicVariants),
		zap.Duration("window", h.cfg.Window),
		zap.Duration("min_remaining", h.cfg.MinRemaining),
		zap.Int("cache_size", h.cfg.CacheSize),
		zap.String("mode", h.cfg.Mode),
		zap.String("session", h.Session.Method),
		zap.String("authorize", h.policyName()),
	)
	if h.Session.Method == "none" {
		h.logger.Warn("session none: every caller can get a URL for every image; configure a session method unless these images are meant to be public")
	}
	for field, v := range map[string]string{"signing_key": h.SigningKey, "secret": h.Session.Secret, "api_token": h.APIToken} {
		if v != "" && !config.IsPlaceholder(v) {
			h.logger.Warn("literal secret in the config: it appears in config dumps; use an {env.X} placeholder or the _file form",
				zap.String("field", field))
		}
	}
	for _, w := range h.cfg.Warnings() {
		h.logger.Warn(w)
	}
}

func (h *Handler) policyName() string {
	if h.Authorize == nil || h.Authorize.Policy == "" {
		return "any"
	}
	return h.Authorize.Policy
}

// Cleanup stops background work, such as JWKS refreshes, when the config
// is unloaded. It is safe after a failed Provision.
func (h *Handler) Cleanup() error {
	if h.gate != nil && h.gate.cancel != nil {
		h.gate.cancel()
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
