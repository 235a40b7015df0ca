package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/fleet"
	"github.com/seed-a64a90cf/imagegate/session"
)

// revocationsTotal counts revocations recorded by this replica, by where
// they came from.
var revocationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "imagegate_revocations_total",
	Help: "Sessions, subjects and tokens revoked through this replica, by source (admin, backchannel).",
}, []string{"source"})

func init() {
	for _, source := range []string{"admin", "backchannel"} {
		revocationsTotal.WithLabelValues(source)
	}
}

// revocationSets pools the revocation set of each Redis (and the one of
// no Redis) across reloads, so a reload forgets no logout.
var revocationSets = caddy.NewUsagePool()

// sharedRevocations is a revocation set and, with Redis, the store that
// shares it with every replica.
type sharedRevocations struct {
	set    *session.Revocations
	store  *fleet.RevocationStore // nil without Redis
	client *fleet.Client
}

func (s *sharedRevocations) Destruct() error {
	if s.store != nil {
		s.store.Close()
		return s.client.Close()
	}
	return nil
}

// Revocations implements RevocationsHolder: the set every session of this
// config consults, shared through the app's Redis when it has one.
func (a *App) Revocations() *session.Revocations {
	if a.revocations == nil {
		return nil
	}
	return a.revocations.set
}

// provisionRevocations opens the app's revocation set: with `redis` in the
// global block, every entry is saved to Redis and published, and each
// replica loads the whole set whenever its subscription (re)connects;
// without it, revocations hold per replica.
func (a *App) provisionRevocations() error {
	key := "none"
	var o fleet.Options
	if a.Redis != nil {
		r := provision.NewResolver()
		o = fleet.Options{
			URLs:             make([]string, len(a.Redis.URLs)),
			Cluster:          a.Redis.Cluster,
			SentinelMaster:   a.Redis.Sentinel,
			SentinelPassword: string(r.Secret("sentinel_password", a.Redis.SentinelPassword, "")),
			TLSCAFile:        r.Value("tls_ca_file", a.Redis.TLSCAFile),
			KeyPrefix:        a.Redis.KeyPrefix,
			Timeout:          time.Duration(a.Redis.Timeout),
			OnOp:             observeRedisOp,
		}
		for i, u := range a.Redis.URLs {
			o.URLs[i] = string(r.Secret("redis", u, ""))
		}
		if err := errors.Join(r.Err(), o.Validate()); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		key = fmt.Sprintf("%q|%v|%q|%q|%q|%q", o.URLs, o.Cluster, o.SentinelMaster, o.SentinelPassword, o.TLSCAFile, o.KeyPrefix)
	}
	logger := a.logger
	v, _, err := revocationSets.LoadOrNew(key, func() (caddy.Destructor, error) {
		s := &sharedRevocations{}
		if a.Redis != nil {
			c, err := fleet.Open(o)
			if err != nil {
				return nil, err
			}
			s.client, s.store = c, fleet.NewRevocationStore(c)
			s.store.OnLoad = func(n int, err error) {
				if err != nil {
					logger.Warn("revocations: could not load the fleet's set from Redis; retrying", zap.Error(err))
				}
			}
		}
		s.set = session.NewRevocations(session.RevocationsConfig{OnAdd: func(rev session.Revocation) {
			revocationsTotal.WithLabelValues(rev.Source).Inc()
			if s.store == nil {
				return
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.store.Save(ctx, rev); err != nil {
					logger.Warn("revocation recorded here but not shared with the fleet: Redis failed", zap.Error(err))
				}
			}()
		}})
		if s.store != nil {
			s.store.Start(context.Background(), s.set)
		}
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	a.revocations, a.revocationsKey = v.(*sharedRevocations), key
	return nil
}

// Cleanup releases the app's hold on its revocation set.
func (a *App) Cleanup() error {
	if a.revocationsKey != "" {
		_, _ = revocationSets.Delete(a.revocationsKey)
		a.revocationsKey, a.revocations = "", nil
	}
	return nil
}

var (
	_ RevocationsHolder  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)
