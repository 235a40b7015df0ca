package caddymodule

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
)

func init() {
	caddy.RegisterModule(App{})
}

// appName is the `cf_images` app's module ID, and the name of its global
// option in the Caddyfile.
const appName = "cf_images"

// App is the `cf_images` app, configured in the Caddyfile's global options.
// It holds what several `cf_images` handlers share: the Cloudflare account
// (its settings are every handler's defaults), the Cloudflare API client of
// each account and token (so two sites on one account spend one API budget,
// with one in-flight cap and one 429 pause), the Redis connection of each
// fleet (one connection, breaker and purge subscription per Redis), and the
// proxy-mode handlers that the admin purge route reaches.
//
// A handler that sets an account setting itself uses its own value; a
// handler that sets none uses the app's. Configs without the app keep
// working: every handler then names its own account, as before.
type App struct {
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
	// `https://api.cloudflare.com/client/v4`.
	APIURL string `json:"api_url,omitempty"`

	// APIMaxInFlight bounds the Cloudflare API calls in flight at once for
	// each account and token, across every handler. Default: 8.
	APIMaxInFlight int `json:"api_max_in_flight,omitempty"`

	// AccountHash is the account hash used in delivery URLs (Images >
	// Overview in the Cloudflare dashboard), not the 32-hex account id.
	AccountHash string `json:"account_hash,omitempty"`

	// SigningKey is the Images URL signing key. Use a placeholder such as
	// `{env.CF_IMAGES_KEY}`; a literal key is accepted with a warning.
	SigningKey string `json:"signing_key,omitempty"`

	// SigningKeyFile is the path of a file holding the signing key.
	SigningKeyFile string `json:"signing_key_file,omitempty"`

	// DeliveryURL is the scheme, host and optional path of delivery URLs.
	// Default: `https://imagedelivery.net`.
	DeliveryURL string `json:"delivery_url,omitempty"`

	// Redis is the Redis a fleet of gateways shares, for every handler that
	// names no Redis of its own. Default: none.
	Redis *RedisConfig `json:"redis,omitempty"`

	logger *zap.Logger
	err    error // problems of the app's own block, reported with the handlers'

	handlers *handlerSet // the live handlers of this config

	revocations    *sharedRevocations // pooled in revocationSets
	revocationsKey string
}

// handlerSet is a set of handlers that several goroutines update.
type handlerSet struct {
	mu sync.Mutex
	m  map[*Handler]struct{}
}

func newHandlerSet() *handlerSet { return &handlerSet{m: map[*Handler]struct{}{}} }

func (s *handlerSet) add(h *Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[h] = struct{}{}
}

func (s *handlerSet) remove(h *Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, h)
}

// list returns the handlers for which keep is true.
func (s *handlerSet) list(keep func(*Handler) bool) []*Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	hs := make([]*Handler, 0, len(s.m))
	for h := range s.m {
		if keep(h) {
			hs = append(hs, h)
		}
	}
	return hs
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appName,
		New: func() caddy.Module { return new(App) },
	}
}

// Provision checks the app's settings and registers the metrics. The
// problems it finds are not returned here but by the handlers that use the
// app (and by Start), so that one config's mistakes in the app block, the
// handlers and their guest modules are all reported together.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.handlers = newHandlerSet()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	var errs []error
	if a.APIMaxInFlight < 0 {
		errs = append(errs, errors.New("api_max_in_flight: must not be negative; 0 takes the default, 8"))
	}
	r := provision.NewResolver()
	for _, s := range []struct{ field, inline, file string }{
		{"signing_key", a.SigningKey, a.SigningKeyFile},
		{"api_token", a.APIToken, a.APITokenFile},
	} {
		if s.inline != "" && s.file != "" {
			errs = append(errs, fmt.Errorf("%s: give %s or %s_file, not both", s.field, s.field, s.field))
		}
		r.Secret(s.field, s.inline, s.file)
	}
	r.Value("account_hash", a.AccountHash)
	r.Value("account_id", a.AccountID)
	errs = append(errs, r.Err())
	if a.Redis != nil {
		errs = append(errs, a.Redis.validate())
	}
	if err := errors.Join(errs...); err == nil {
		errs = append(errs, a.provisionRevocations())
	}
	if err := errors.Join(errs...); err != nil {
		a.err = fmt.Errorf("cf_images app: %w", err)
	}
	warnLiteralSecret(a.logger, "signing_key", a.SigningKey)
	warnLiteralSecret(a.logger, "api_token", a.APIToken)
	return nil
}

// Start fails a config whose app block has problems and that no handler
// reported (a config with the app but no handler), and makes this the
// config the admin routes act on.
func (a *App) Start() error {
	if a.err != nil {
		return a.err
	}
	liveApp.Store(a)
	redisMetricsInUse.Store(a.usesRedis())
	return nil
}

// Stop hands the admin routes back to no config, unless a newer one has
// taken them already.
func (a *App) Stop() error {
	liveApp.CompareAndSwap(a, nil)
	return nil
}

// liveApp is the app of the running config, which the admin routes act on.
// Caddy runs one config at a time; during a reload the new config's app
// takes over when it starts.
var liveApp atomic.Pointer[App]

// appOf returns the config's `cf_images` app, loading an empty one when
// the config has no global `cf_images` block (Caddy loads the tls app for
// the http app the same way).
func appOf(ctx caddy.Context) (*App, error) {
	v, err := ctx.App(appName)
	if err != nil {
		return nil, err
	}
	return v.(*App), nil
}

// usesRedis reports whether any of the app's handlers is on a Redis.
func (a *App) usesRedis() bool {
	return len(a.handlers.list(func(h *Handler) bool { return h.fleet != nil })) > 0
}

// Interface guards
var (
	_ caddy.App         = (*App)(nil)
	_ caddy.Provisioner = (*App)(nil)
)
