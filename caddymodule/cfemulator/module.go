// Package cfemulator registers the Caddy HTTP handler cf_images_emulator,
// which serves imagegate's local Cloudflare Images emulator (package
// emulator) so that the gateway can be run and tested with no Cloudflare
// account and no network.
package cfemulator

import (
	"fmt"
	"maps"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/emulator"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves a local Cloudflare Images emulator: the Images API under
// /client/v4/accounts/<account_id>/images/, one-time upload URLs at
// POST /<account_hash>/<image_id>, and delivery at
// /<account_hash>/<image_id>/<variant> and
// /cdn-cgi/imagedelivery/<account_hash>/<image_id>/<variant>, with the
// signature checks, limits and error codes Cloudflare documents.
//
// It is a development and test tool. Every field has a development default,
// so `cf_images_emulator` alone gives a working account. Unless
// listen_public is set it refuses requests that arrive on a non-loopback
// address (403) and requests whose Host is not localhost, a loopback
// address or base_url's host (421 Misdirected Request, against DNS
// rebinding).
//
// It answers every request it sees and never calls the next handler.
//
// Deliveries are counted on Caddy's metrics registry as
// imagegate_emulator_deliveries_total{variant,code} and, for 304 Not
// Modified answers, imagegate_emulator_not_modified_total{variant}. The
// variant label is a configured variant's name, "flexible" or "other".
// API calls are counted as imagegate_emulator_api_calls_total{host,code}
// (host "api" or "batch"), and those refused by a rate limit also as
// imagegate_emulator_api_rate_limited_total{host}.
type Handler struct {
	// AccountID is the 32-hex-digit account id of API paths. Default
	// "0123456789abcdef0123456789abcdef". Global placeholders such as
	// {env.X} and {file./path} are resolved when the config is loaded.
	AccountID string `json:"account_id,omitempty"`

	// AccountHash is the URL-safe account hash of delivery and upload
	// URLs. Default "emu-account-hash". Global placeholders are resolved.
	AccountHash string `json:"account_hash,omitempty"`

	// APIToken is the bearer token the API requires. Default
	// "dev-api-token". Give real-looking secrets as {env.X} or
	// {file./path} so that they stay out of the adapted JSON config.
	APIToken string `json:"api_token,omitempty"`

	// SigningKey is the value of the signing key named "default", which
	// signed delivery URLs are checked against (together with any key
	// added through the API). Default "dev-signing-key". Global
	// placeholders are resolved; prefer them for real keys.
	SigningKey string `json:"signing_key,omitempty"`

	// Storage is the directory that keeps images, records, variants and
	// keys across restarts, or "memory" to keep them in memory only.
	// Default: the "imagegate-emulator" directory in Caddy's data
	// directory. Global placeholders are resolved. The storage is shared
	// by every handler that names it and survives config reloads.
	Storage string `json:"storage,omitempty"`

	// BaseURL is the emulator's external URL (scheme, host and port, no
	// path), used in the uploadURL and variants fields of API answers.
	// Default: derived from each request's scheme and Host.
	BaseURL string `json:"base_url,omitempty"`

	// BrowserTTL is the max-age of public deliveries unless a variant sets
	// its own. Default 2 days, as on Cloudflare.
	BrowserTTL caddy.Duration `json:"browser_ttl,omitempty"`

	// FlexibleVariants enables option-style variants such as "w=400".
	// Default false, as on Cloudflare.
	FlexibleVariants bool `json:"flexible_variants,omitempty"`

	// ListenPublic lets the emulator answer requests that arrive on a
	// non-loopback address, whatever their Host. Default false: such
	// requests get 403, and requests whose Host is not localhost, a
	// loopback address or base_url's host get 421.
	ListenPublic bool `json:"listen_public,omitempty"`

	// APIRateLimit is Cloudflare's global API rate limit as the emulator
	// applies it to the API token: at most Requests calls in any Window;
	// past it every API call is refused with 429 (code 971, Retry-After)
	// for APIRateBlock. Default 1,200 per 5 minutes, Cloudflare's numbers
	// (https://developers.cloudflare.com/fundamentals/api/reference/limits/).
	// Deliveries and one-time uploads are not counted.
	APIRateLimit *APIRateLimit `json:"api_rate_limit,omitempty"`

	// APIRateBlock is how long the API token stays refused once over
	// APIRateLimit. Default 5 minutes, as on Cloudflare.
	APIRateBlock caddy.Duration `json:"api_rate_block,omitempty"`

	// Variants are named variants, keyed by name, installed at every start
	// on top of the defaults: public (scale-down 1366×768), thumbnail
	// (cover 200×200) and avatar (cover 96×96, never requires a signed
	// URL). A configured variant replaces a default of the same name.
	Variants map[string]*Variant `json:"variants,omitempty"`

	emu      *emulator.Emulator
	logger   *zap.Logger
	storeKey string
	// known holds the configured variant names: the only values of the
	// variant label besides "flexible" and "other", so that variants made
	// and deleted through the API cannot grow the number of series.
	known map[string]bool
}

// APIRateLimit is the API token's rate limit.
type APIRateLimit struct {
	// Off turns the limit off; Requests and Window are then ignored.
	Off bool `json:"off,omitempty"`
	// Requests is the number of calls admitted in any Window. Default 1200.
	Requests int `json:"requests,omitempty"`
	// Window is the sliding window Requests are counted over. Default 5m.
	Window caddy.Duration `json:"window,omitempty"`
}

// Variant is a named variant's configuration.
type Variant struct {
	// Fit is scale-down, contain, cover, crop or pad. Default scale-down.
	Fit string `json:"fit,omitempty"`
	// Width is the box width in pixels, 1 to 12000. Required.
	Width int `json:"width,omitempty"`
	// Height is the box height in pixels, 1 to 12000. Required.
	Height int `json:"height,omitempty"`
	// NeverRequireSignedURLs lets private images be delivered under this
	// variant without a signature. Default false.
	NeverRequireSignedURLs bool `json:"never_require_signed_urls,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cf_images_emulator",
		New: func() caddy.Module { return new(Handler) },
	}
}

// stores shares each storage between the handlers that name it and across
// config reloads, during which the old and new handler briefly coexist.
var stores = caddy.NewUsagePool()

// pooledStore is a Store held in the usage pool.
type pooledStore struct{ emulator.Store }

func (pooledStore) Destruct() error { return nil }

// Provision resolves placeholders, opens the storage, registers the
// metrics and builds the emulator.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()

	r := provision.NewResolver()
	cfg := emulator.Config{
		AccountID:        r.Value("account_id", h.AccountID),
		AccountHash:      r.Value("account_hash", h.AccountHash),
		APIToken:         string(r.Secret("api_token", h.APIToken, "")),
		SigningKey:       string(r.Secret("signing_key", h.SigningKey, "")),
		BaseURL:          r.Value("base_url", h.BaseURL),
		BrowserTTL:       time.Duration(h.BrowserTTL),
		FlexibleVariants: h.FlexibleVariants,
		Variants:         emulator.DefaultVariants(),
		OnDelivery:       h.count,
		OnAPICall:        countAPICall,
		APIRateBlock:     time.Duration(h.APIRateBlock),
		// listen_public means clients reach the emulator by names the
		// operator cannot list here (container names, LAN addresses).
		AnyHost: h.ListenPublic,
	}
	// The account's identity is filled in here, not left to the emulator,
	// so that the log line and the storage key name it.
	if cfg.AccountID == "" {
		cfg.AccountID = emulator.DefaultAccountID
	}
	if cfg.AccountHash == "" {
		cfg.AccountHash = emulator.DefaultAccountHash
	}
	if l := h.APIRateLimit; l != nil {
		if l.Off {
			cfg.APIRateLimit = -1
		} else if l.Requests < 0 || l.Window < 0 {
			return fmt.Errorf("api_rate_limit: requests and window must not be negative")
		} else {
			cfg.APIRateLimit, cfg.APIRateWindow = l.Requests, time.Duration(l.Window)
		}
	}
	storage := r.Value("storage", h.Storage)
	if err := r.Err(); err != nil {
		return err
	}

	h.known = map[string]bool{}
	for _, v := range cfg.Variants {
		h.known[v.ID] = true
	}
	names := make([]string, 0, len(h.Variants))
	for name := range h.Variants {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		v := h.Variants[name]
		if v == nil {
			return fmt.Errorf("variant %q: no definition", name)
		}
		fit := v.Fit
		if fit == "" {
			fit = emulator.FitScaleDown
		}
		cfg.Variants = slices.DeleteFunc(cfg.Variants, func(o emulator.Variant) bool { return o.ID == name })
		cfg.Variants = append(cfg.Variants, emulator.Variant{
			ID:                     name,
			Options:                emulator.VariantOptions{Fit: fit, Width: v.Width, Height: v.Height, Metadata: "none"},
			NeverRequireSignedURLs: v.NeverRequireSignedURLs,
		})
		h.known[name] = true
	}

	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}

	if storage == "" {
		storage = filepath.Join(caddy.AppDataDir(), "imagegate-emulator")
	}
	key := "memory:" + cfg.AccountID
	if storage != "memory" {
		abs, err := filepath.Abs(storage)
		if err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		storage, key = abs, "dir:"+abs
	}
	val, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		if storage == "memory" {
			return pooledStore{emulator.NewMemoryStore()}, nil
		}
		s, err := emulator.OpenDirStore(storage)
		if err != nil {
			return nil, err
		}
		return pooledStore{s}, nil
	})
	if err != nil {
		return fmt.Errorf("opening storage: %w", err)
	}
	h.storeKey = key
	cfg.Store = val.(pooledStore).Store

	if h.emu, err = emulator.New(cfg); err != nil {
		return err
	}

	rule := "it answers only requests that arrive on a loopback address (127.0.0.0/8, ::1), others get 403, " +
		"and whose Host is localhost, a loopback address or base_url's host, others get 421; unless listen_public is set"
	if h.ListenPublic {
		rule = "listen_public is set: it answers on every address it is bound to"
	}
	h.logger.Warn("serving a local Cloudflare Images emulator, a development and test tool; "+rule,
		zap.String("account_id", cfg.AccountID),
		zap.String("account_hash", cfg.AccountHash),
		zap.String("storage", storage),
		zap.Strings("variants", slices.Sorted(maps.Keys(h.known))),
		zap.Bool("listen_public", h.ListenPublic))
	return nil
}

// ServeHTTP serves the emulator. It is terminal: next is never called.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if !h.ListenPublic && !arrivedOnLoopback(r) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("cf_images_emulator is a development tool and answers only on loopback addresses; set listen_public to serve others\n"))
		return nil
	}
	h.emu.ServeHTTP(w, r)
	return nil
}

// arrivedOnLoopback reports whether the connection's local address is a
// loopback address. A request without one (not from a real listener) is
// treated as non-loopback: the rule fails closed.
func arrivedOnLoopback(r *http.Request) bool {
	addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return false
	}
	host := addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// count is the emulator's delivery hook.
func (h *Handler) count(d emulator.Delivery) {
	variant := d.Variant
	if variant != "flexible" && !h.known[variant] {
		variant = "other"
	}
	if d.NotModified {
		notModifiedTotal.WithLabelValues(variant).Inc()
		return
	}
	deliveriesTotal.WithLabelValues(variant, strconv.Itoa(d.Status)).Inc()
}

// countAPICall is the emulator's API call hook.
func countAPICall(c emulator.APICall) {
	host := "api"
	if c.Batch {
		host = "batch"
	}
	apiCallsTotal.WithLabelValues(host, strconv.Itoa(c.Status)).Inc()
	if c.RateLimited {
		apiRateLimitedTotal.WithLabelValues(host).Inc()
	}
}

// Cleanup releases the storage.
func (h *Handler) Cleanup() error {
	if h.storeKey == "" {
		return nil
	}
	_, err := stores.Delete(h.storeKey)
	h.storeKey = ""
	return err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
