package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/seed-a64a90cf/imagegate/fleet"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/imageref"
	"github.com/seed-a64a90cf/imagegate/limit"
	"github.com/seed-a64a90cf/imagegate/signer"
)

// ProxyConfig configures `mode proxy`: the gateway fetches the image from
// its stable signed URL and streams the bytes itself, from a byte cache
// shared by every authorized caller and keyed by (image, variant, format),
// never by user or signature.
type ProxyConfig struct {
	// CacheSize is the memory tier's capacity in bytes of image data;
	// 0 turns the byte cache off. Default: 512 MiB.
	CacheSize *int64 `json:"cache_size,omitempty"`

	// MaxObject is the largest body kept, in bytes; larger bodies stream
	// through uncached. Default: 10 MiB, Cloudflare's upload limit.
	MaxObject int64 `json:"max_object,omitempty"`

	// CacheTTL is how long bytes are kept. The same (id, variant, format)
	// never changes in Cloudflare, so only a deleted or replaced image
	// argues for a shorter one. Default: 24h.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// Timeout bounds one whole upstream fetch: connect, headers and body.
	// Past it the answer is 504. With Redis it is also the fill lease's
	// time: how long another replica waits for this one's fetch. Default:
	// 15s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// StaleIfError is how long past CacheTTL a stored object is still
	// served when its refetch fails with a 5xx, a timeout or a connection
	// error (RFC 5861), so that a Cloudflare outage does not reach users.
	// Never after a 404 or 403: a deleted image stays deleted. Stale
	// objects count against cache_size and are evicted first; Redis keeps
	// objects for cache_ttl + stale_if_error. Default: 24h; `off` (JSON: a
	// negative duration) turns it off.
	StaleIfError caddy.Duration `json:"stale_if_error,omitempty"`

	// NegativeTTL is how long an upstream 404 is remembered per (id,
	// variant), answered 404 without asking Cloudflare again; the purge
	// route forgets it. Default: 30s; `off` (JSON: negative) turns it off.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// FetchLimit bounds, per caller, the upstream fetches the caller's
	// requests start (hits, and requests that join a fetch in flight, are
	// free). Over it the answer is 429 with Retry-After. Default: 300 per
	// minute; `off` or `0` (JSON: `{}`) turns it off.
	FetchLimit *RateLimit `json:"fetch_limit,omitempty"`

	// BrowserMaxAge is how long a browser may reuse an answer without
	// asking again. `0` answers `Cache-Control: private, no-cache`: every
	// view revalidates (a 304 from the byte cache, no Cloudflare delivery),
	// so a revoked session is refused on its next view. Default: until the
	// stable URL's window ends, as in redirect mode.
	BrowserMaxAge *caddy.Duration `json:"browser_max_age,omitempty"`
}

// Proxy-mode defaults.
var (
	defaultStaleIfError = 24 * time.Hour
	defaultNegativeTTL  = 30 * time.Second
	defaultFetchLimit   = limit.Rate{Events: 300, Per: time.Minute}
)

// orOff returns d, def when d is unset, or 0 when d is off (negative).
func orOff(d caddy.Duration, def time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0
	case d == 0:
		return def
	}
	return time.Duration(d)
}

// defaultProxyCacheSize is the memory tier's default capacity.
const defaultProxyCacheSize = 512 << 20

// cacheSize returns the configured capacity, or the default.
func (p *ProxyConfig) cacheSize() int64 {
	if p == nil || p.CacheSize == nil {
		return defaultProxyCacheSize
	}
	return *p.CacheSize
}

// memoryTiers holds the memory tiers of live configs, keyed by what the
// bytes depend on, so a reload keeps the cached bytes (a new config with
// the same delivery URL, account hash and capacity picks up the same tier).
var memoryTiers = caddy.NewUsagePool()

type pooledMemory struct{ *imageproxy.Memory }

func (pooledMemory) Destruct() error { return nil }

// provisionProxy builds the proxy of `mode proxy`.
func (h *Handler) provisionProxy() error {
	pc := h.Proxy
	if pc == nil {
		pc = &ProxyConfig{}
	}
	size := pc.cacheSize()
	switch {
	case size < 0:
		return errors.New("mode proxy: cache_size: must not be negative")
	case pc.MaxObject < 0:
		return errors.New("mode proxy: max_object: must not be negative")
	}
	var tiers []imageproxy.Tier
	if size > 0 {
		// A handler on a Redis never shares a memory tier with one that is
		// not on it: that Redis's purges and reconnects empty its tiers.
		key := fmt.Sprintf("%s|%s|%d|%s", h.cfg.DeliveryURL, h.cfg.AccountHash, size, h.fleetKey)
		v, _, err := memoryTiers.LoadOrNew(key, func() (caddy.Destructor, error) {
			return pooledMemory{imageproxy.NewMemory(size, metrics.byteEvictions.Inc)}, nil
		})
		if err != nil {
			return err
		}
		h.memKey, h.mem = key, v.(pooledMemory).Memory
		tiers = append(tiers, h.mem)
	}
	var leases imageproxy.FillLeases
	if h.fleet != nil {
		maxObject := pc.MaxObject
		if maxObject == 0 {
			maxObject = imageproxy.DefaultMaxObject
		}
		bt := fleet.NewByteTier(h.fleet.client, maxObject, fleetSecret(h.cfg.SigningKey, "redis object mac v1"))
		bt.OnRejected = countRedisRejected
		tiers = append(tiers, bt)
		leases = h.fleet.leases
	}
	fetches := h.limiter("fetch", pc.FetchLimit.rate(defaultFetchLimit))
	p, err := imageproxy.New(imageproxy.Config{
		Tiers:        tiers,
		MaxObject:    pc.MaxObject,
		TTL:          time.Duration(pc.CacheTTL),
		StaleIfError: orOff(pc.StaleIfError, defaultStaleIfError),
		NegativeTTL:  orOff(pc.NegativeTTL, defaultNegativeTTL),
		Timeout:      time.Duration(pc.Timeout),
		UserAgent:    "imagegate/" + strings.Trim(moduleVersion, "()"),
		Observer:     &proxyObserver{variants: h.variants, logger: h.logger},
		Leases:       leases,
		Admit:        admitFetch(fetches),
	})
	if err != nil {
		return fmt.Errorf("mode proxy: %w", err)
	}
	h.proxy = p
	if pc.BrowserMaxAge != nil {
		h.browserMaxAge = time.Duration(*pc.BrowserMaxAge)
		h.noBrowserCache = h.browserMaxAge <= 0
	}
	return nil
}

// cleanupProxy releases the proxy's connections and its hold on the memory
// tier.
func (h *Handler) cleanupProxy() {
	if h.proxy != nil {
		h.proxy.Close()
	}
	if h.memKey != "" {
		_, _ = memoryTiers.Delete(h.memKey)
		h.memKey, h.mem = "", nil
	}
}

// serveProxy answers an authorized request with the image bytes. The
// caller's session was checked before this: cached bytes are never a
// capability.
func (h *Handler) serveProxy(w http.ResponseWriter, r *http.Request, vs *variantState, ref imageref.Ref, u *signer.URL, subject string) error {
	hdr := w.Header()
	key := imageproxy.Key{
		AccountHash: h.cfg.AccountHash,
		ID:          ref.ID,
		Variant:     ref.Variant,
		Format:      imageproxy.BucketOf(r.Header.Get("Accept")),
	}
	setFetchSubject(r, subject)
	err := h.proxy.Serve(w, r, key, u.String)
	if le, ok := errors.AsType[*fetchLimitError](err); ok {
		delete(hdr, "Vary")
		hdr["Retry-After"] = []string{retryAfter(le.retryAfter)}
		return h.refuse(w, r, vs, outcomeLimited, le)
	}
	if ue, ok := errors.AsType[*imageproxy.UpstreamError](err); ok {
		delete(hdr, "Vary")
		out := outcomeUpstreamError
		switch ue.Status {
		case http.StatusNotFound:
			out = outcomeNotFound
		case http.StatusGatewayTimeout:
			out = outcomeUpstreamTimeout
		}
		if ue.Status >= http.StatusBadGateway {
			h.warnDependency("upstream", "fetching images from the delivery URL failed", ue)
		}
		if ue.SignatureRefused {
			metrics.signingFailures.Inc()
			h.logger.Error("Cloudflare refused a delivery URL's signature: is signing_key a current key of the account?",
				zap.String("key_id", h.keyID), zap.String("variant", ref.Variant))
		}
		return h.refuse(w, r, vs, out, ue)
	}
	if err != nil {
		// The answer had started and was cut short (upstream broke off, or
		// the client left): abort the connection, as reverse_proxy does, so
		// the client cannot take a truncated body for a whole one.
		vs.count(outcomeUpstreamError)
		panic(http.ErrAbortHandler)
	}
	out := outcomeProxied
	if servedStale(r) {
		out = outcomeStale
	}
	setOutcome(r, out)
	vs.count(out) // no URL was handed out: no validity to observe
	return nil
}
