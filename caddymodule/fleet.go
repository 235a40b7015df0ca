package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/url"
	"strings"
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

// purgeChannel is the Redis Pub/Sub channel purges travel on.
const purgeChannel = "imagegate:v1:purge"

// fleetConn is one Redis connection and its purge subscription, shared by
// every config that names the same Redis and kept across reloads, so a
// reload neither reconnects nor forgets that Redis is down.
type fleetConn struct {
	client *fleet.Client
	purger *fleet.Purger
}

func (f *fleetConn) Destruct() error {
	f.purger.Close()
	return f.client.Close()
}

var fleets = caddy.NewUsagePool()

func init() {
	// go-redis reports every failed dial on its own, on stderr; during an
	// outage that is a line a second. The breaker's one line per state
	// change says what ops need; the client's lines go to Caddy's log at
	// debug level.
	redis.SetLogger(redisLogger{})
}

type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	if c := caddy.Log().Named("http.handlers.cf_images.redis").Check(zapcore.DebugLevel, "redis client"); c != nil {
		c.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}

// provisionRedis connects to the `redis` URLs, if any. Opening does not
// contact Redis: the gateway starts and answers while it is down.
func (h *Handler) provisionRedis(r *provision.Resolver) error {
	if len(h.Redis) == 0 {
		if h.RedisTimeout != 0 {
			return errors.New("redis_timeout: has no effect without redis")
		}
		return nil
	}
	urls := make([]string, len(h.Redis))
	for i, u := range h.Redis {
		// The URL may hold a password: never quote it in an error.
		urls[i] = string(r.Secret("redis", u, ""))
		if pu, err := url.Parse(u); err == nil && pu.User != nil {
			if _, hasPassword := pu.User.Password(); hasPassword {
				warnLiteralSecret(h.logger, "redis", u) // quiet when the URL holds a placeholder
			}
		}
	}
	if err := r.Err(); err != nil {
		return err
	}
	timeout := time.Duration(h.RedisTimeout)
	if timeout == 0 {
		timeout = fleet.DefaultTimeout
	}
	key := fmt.Sprintf("%s|%d", strings.Join(urls, " "), timeout)
	v, _, err := fleets.LoadOrNew(key, func() (caddy.Destructor, error) {
		return openFleet(urls, timeout)
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	h.fleetKey, h.fleet = key, v.(*fleetConn)
	return nil
}

// openFleet opens the client and starts the purge subscription. Its state
// changes are logged once each, not per request.
func openFleet(urls []string, timeout time.Duration) (*fleetConn, error) {
	logger := caddy.Log().Named("http.handlers.cf_images.redis")
	c, err := fleet.Open(fleet.Options{
		URLs:    urls,
		Timeout: timeout,
		OnStateChange: func(up bool) {
			if up {
				fleetMetrics.up.Set(1)
				logger.Info("redis is answering again: the shared tier and fleet-wide limits are back")
			} else {
				fleetMetrics.up.Set(0)
				logger.Warn("redis is failing: serving from memory and upstream, limiting per replica, until it answers")
			}
		},
		OnOp: observeRedisOp,
	})
	if err != nil {
		return nil, err
	}
	fleetMetrics.up.Set(1)
	p := fleet.NewPurger(c, purgeChannel, purgeMemory)
	// A replica cut off from Redis may have missed purges: it forgets its
	// memory tier when it is back, so stale bytes outlive no outage.
	p.OnReconnect = clearMemoryTiers
	p.Start(context.Background())
	return &fleetConn{client: c, purger: p}, nil
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

// limiterSecret derives the key that hashes subjects in Redis from the
// signing key, the one secret every replica of a fleet shares. A key
// rotation starts the counts afresh.
func limiterSecret(signingKey []byte) []byte {
	m := hmac.New(sha256.New, signingKey)
	m.Write([]byte("imagegate: limiter subject key v1"))
	return m.Sum(nil)
}

// cleanupRedis releases the handler's hold on the shared connection.
func (h *Handler) cleanupRedis() {
	if h.fleetKey != "" {
		_, _ = fleets.Delete(h.fleetKey)
		h.fleetKey, h.fleet = "", nil
	}
}

// proxies is the set of live proxy-mode handlers, which purges reach.
var proxies = struct {
	sync.Mutex
	m map[*Handler]struct{}
}{m: map[*Handler]struct{}{}}

func addProxy(h *Handler) {
	proxies.Lock()
	defer proxies.Unlock()
	proxies.m[h] = struct{}{}
}

func removeProxy(h *Handler) {
	proxies.Lock()
	defer proxies.Unlock()
	delete(proxies.m, h)
}

func liveProxies() []*Handler {
	proxies.Lock()
	defer proxies.Unlock()
	hs := make([]*Handler, 0, len(proxies.m))
	for h := range proxies.m {
		hs = append(hs, h)
	}
	return hs
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

// purge drops an image from every tier of every live proxy (the memory
// tiers and Redis), tells the other replicas, and returns how many entries
// it dropped here.
func purge(ctx context.Context, id, variant string) (int, error) {
	n := 0
	published := map[*fleetConn]bool{}
	var errs []error
	for _, h := range liveProxies() {
		n += h.proxy.Purge(ctx, h.purgeKeys(id, variant)...)
		if f := h.fleet; f != nil && !published[f] {
			published[f] = true
			if err := f.purger.Publish(ctx, id, variant); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return n, errors.Join(errs...)
}

// purgeMemory is how a purge published by any replica reaches this one:
// its memory tiers drop the image (the publisher already deleted it from
// Redis).
func purgeMemory(id, variant string) {
	for _, h := range liveProxies() {
		if h.mem != nil {
			h.mem.Delete(context.Background(), h.purgeKeys(id, variant)...)
		}
	}
}

// clearMemoryTiers empties every memory tier.
func clearMemoryTiers() {
	memoryTiers.Range(func(_, v any) bool {
		v.(pooledMemory).Clear()
		return true
	})
	caddy.Log().Named("http.handlers.cf_images.redis").Info("purge subscription restored: memory tiers emptied, since purges may have been missed")
}
