package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/fleet"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// fleetConn is one Redis connection and its purge subscription, shared by
// every handler that names the same Redis and kept across reloads, so a
// reload neither reconnects nor forgets that Redis is down. It knows the
// handlers on it: a purge message or a restored subscription reaches their
// memory tiers, and no one else's.
type fleetConn struct {
	client *fleet.Client
	purger *fleet.Purger
	leases *fleet.Leases // proxy mode's fill leases: one fetch per object fleet-wide

	handlers *handlerSet
}

func (f *fleetConn) Destruct() error {
	f.purger.Close()
	f.leases.Close()
	return f.client.Close()
}

// proxies returns the handlers on this Redis that have a memory tier.
func (f *fleetConn) proxies() []*Handler {
	return f.handlers.list(func(h *Handler) bool { return h.mem != nil })
}

// purgeMemory is how a purge published by any replica reaches this one:
// the proxies of the handlers on this Redis forget the image (their memory
// tiers, their fetches in flight, their remembered 404s); the publisher
// already deleted it from Redis.
func (f *fleetConn) purgeMemory(id, variant string) {
	for _, h := range f.handlers.list(func(h *Handler) bool { return h.proxy != nil }) {
		keys := h.purgeKeys(id, variant)
		h.proxy.Invalidate(keys...)
		if h.mem != nil {
			h.mem.Delete(context.Background(), keys...)
		}
	}
}

// clearMemoryTiers empties the memory tiers of the handlers on this Redis,
// which may have missed purges while the subscription was down.
func (f *fleetConn) clearMemoryTiers() {
	for _, h := range f.proxies() {
		h.mem.Clear()
	}
	redisLog().Info("purge subscription restored: memory tiers on this Redis emptied, since purges may have been missed")
}

// fleets pools the Redis connections of live configs by their settings.
var fleets = caddy.NewUsagePool()

// redisLoggerOnce routes go-redis's own log lines (a failed dial, every
// second of an outage) to Caddy's log at debug level; the breaker's one line
// per state change says what ops need. go-redis has one logger per
// process, so this is set once, by the first config that uses Redis, not
// by merely linking the module.
var redisLoggerOnce sync.Once

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if c := redisLog().Check(zapcore.DebugLevel, "redis client"); c != nil {
		c.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}

func redisLog() *zap.Logger { return caddy.Log().Named("http.handlers.cf_images.redis") }

// provisionRedis connects to the handler's Redis, or the app's, if any.
// Opening does not contact Redis: the gateway starts and answers while it
// is down.
func (h *Handler) provisionRedis(app *App, signingKey []byte) error {
	rc := h.Redis
	if rc == nil {
		if h.RedisTimeout != 0 {
			return errors.New("redis_timeout: has no effect without redis")
		}
		rc = app.Redis
		if rc == nil {
			return nil
		}
	} else if h.RedisTimeout != 0 {
		if rc.Timeout != 0 {
			return errors.New("redis_timeout: give the timeout once, in the redis block")
		}
		rc.Timeout = h.RedisTimeout
	} else if err := rc.validate(); err != nil {
		return err
	}
	r := provision.NewResolver()
	o := fleet.Options{
		URLs:             make([]string, len(rc.URLs)),
		Cluster:          rc.Cluster,
		SentinelMaster:   rc.Sentinel,
		SentinelPassword: string(r.Secret("sentinel_password", rc.SentinelPassword, "")),
		TLSCAFile:        r.Value("tls_ca_file", rc.TLSCAFile),
		KeyPrefix:        rc.KeyPrefix,
		Timeout:          time.Duration(rc.Timeout),
	}
	for i, u := range rc.URLs {
		// The URL may hold a password: never quote it in an error.
		o.URLs[i] = string(r.Secret("redis", u, ""))
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			if _, hasPassword := pu.User.Password(); hasPassword {
				warnLiteralSecret(h.logger, "redis", u) // quiet when the URL holds a placeholder
			}
		}
	}
	warnLiteralSecret(h.logger, "sentinel_password", rc.SentinelPassword)
	if err := r.Err(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	// Purge messages are MACed with a key from the signing key, so a
	// connection serves the handlers of one signing key. Every setting is
	// part of the pool key: two configs that differ in any of them (a
	// prefix, a CA, a key) must not share a client.
	purgeKey := fleetSecret(signingKey, "purge message mac v1")
	key := fmt.Sprintf("%q|%v|%q|%q|%q|%q|%d|%x", o.URLs, o.Cluster, o.SentinelMaster, o.SentinelPassword, o.TLSCAFile, o.KeyPrefix, o.Timeout,
		sha256.Sum256(purgeKey))
	v, _, err := fleets.LoadOrNew(key, func() (caddy.Destructor, error) {
		return openFleet(o, purgeKey)
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	h.fleetKey, h.fleet = key, v.(*fleetConn)
	h.fleet.handlers.add(h)
	return nil
}

// openFleet opens the client and starts the purge subscription. Its state
// changes are logged once each, not per request.
func openFleet(o fleet.Options, purgeKey []byte) (*fleetConn, error) {
	redisLoggerOnce.Do(func() { redis.SetLogger(redisLogger{}) })
	logger := redisLog()
	o.OnStateChange = func(up bool) {
		if up {
			fleetMetrics.up.Set(1)
			logger.Info("redis is answering again: the shared tier and fleet-wide limits are back")
		} else {
			fleetMetrics.up.Set(0)
			logger.Warn("redis is failing: serving from memory and upstream, limiting per replica, until it answers")
		}
	}
	o.OnOp = observeRedisOp
	c, err := fleet.Open(o)
	if err != nil {
		return nil, err
	}
	// Ask once now, so that an unreachable Redis is in the log at start
	// rather than at the first request that needs it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.Ping(ctx); err != nil {
		fleetMetrics.up.Set(0)
		logger.Warn("redis unreachable at start: serving from memory and upstream, limiting per replica, until it answers",
			zap.Strings("redis", c.Addrs()), zap.Error(err))
	} else {
		fleetMetrics.up.Set(1)
	}
	f := &fleetConn{client: c, handlers: newHandlerSet()}
	f.purger = fleet.NewPurger(c, c.Channel(fleet.PurgeChannelName), purgeKey, f.purgeMemory)
	f.purger.OnRejected = countRedisRejected
	// A replica cut off from Redis may have missed purges: it forgets the
	// memory tiers on this Redis when it is back, so stale bytes outlive no
	// outage.
	f.purger.OnReconnect = f.clearMemoryTiers
	f.purger.Start(context.Background())
	f.leases = fleet.NewLeases(c, c.Channel(fleet.FilledChannelName), fleetSecret(purgeKey, "fill notice mac v1"))
	f.leases.OnRejected = countRedisRejected
	f.leases.Start(context.Background())
	return f, nil
}

// limiter returns the per-caller limiter of a budget: counted in Redis
// across the fleet when `redis` is set (per replica while Redis is down),
// else per replica.
func (h *Handler) limiter(name string, rate limit.Rate) limit.Limiter {
	local := limit.NewLocal(rate, 0)
	if h.fleet == nil || rate.Off() {
		return local
	}
	return fleet.NewLimiter(h.fleet.client, name, rate, local).HashSubjectsWith(h.limitKey)
}

// fleetSecret derives a key for one use in Redis from the signing key, the
// one secret every replica of a fleet shares and Redis never sees: it keys
// the hashes of subjects in limiter keys and the MACs of stored objects and
// purge messages. A key rotation starts them afresh (the Redis tier is then
// refilled from upstream; the memory tiers keep their bytes).
func fleetSecret(signingKey []byte, use string) []byte {
	m := hmac.New(sha256.New, signingKey)
	m.Write([]byte("imagegate: " + use))
	return m.Sum(nil)
}

// cleanupRedis releases the handler's hold on the shared connection.
func (h *Handler) cleanupRedis() {
	if h.fleetKey != "" {
		h.fleet.handlers.remove(h)
		_, _ = fleets.Delete(h.fleetKey)
		h.fleetKey, h.fleet = "", nil
	}
}

// purgeKeys lists the cache keys of an image: every configured variant
// (or just variant) in every format bucket. It is empty if variant is not
// one of this handler's.
func (h *Handler) purgeKeys(id, variant string) []imageproxy.Key {
	var variants []string
	switch {
	case variant == "":
		variants = append(append(variants, h.cfg.Variants...), h.cfg.PublicVariants...)
	case h.variants[variant] != nil:
		variants = []string{variant}
	}
	keys := make([]imageproxy.Key, 0, len(variants)*len(imageproxy.Formats))
	for _, v := range variants {
		for _, f := range imageproxy.Formats {
			keys = append(keys, imageproxy.Key{AccountHash: h.cfg.AccountHash, ID: id, Variant: v, Format: f})
		}
	}
	return keys
}

// errNoSuchVariant is a purge naming a variant that no proxy-mode handler
// serves: most likely a typo, which would otherwise purge nothing quietly.
var errNoSuchVariant = errors.New("no proxy-mode handler serves this variant")

// purge drops an image from every tier of the app's proxy-mode handlers
// (the memory tiers and Redis), tells the other replicas on each Redis
// once, and returns how many entries it dropped here.
func (a *App) purge(ctx context.Context, id, variant string) (int, error) {
	n := 0
	served := variant == ""
	published := map[*fleetConn]bool{}
	var errs []error
	for _, h := range a.handlers.list(func(h *Handler) bool { return h.proxy != nil }) {
		keys := h.purgeKeys(id, variant)
		served = served || len(keys) > 0
		n += h.proxy.Purge(ctx, keys...)
		if f := h.fleet; f != nil && !published[f] {
			published[f] = true
			if err := f.purger.Publish(ctx, id, variant); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if !served {
		return 0, errNoSuchVariant
	}
	return n, errors.Join(errs...)
}
