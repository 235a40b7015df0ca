package caddymodule

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// Request variables proxy mode keeps between the handler and the proxy's
// callbacks, which see the request (or its context) but not the handler.
const (
	varFetchSubject = "cf_images.fetch_subject"
	varServedStale  = "cf_images.served_stale"
)

// setFetchSubject records whose budget a fetch this request starts is
// charged to.
func setFetchSubject(r *http.Request, subject string) {
	caddyhttp.SetVar(r.Context(), varFetchSubject, subject)
}

// fetchLimitError is a fetch refused because its caller is over
// fetch_limit.
type fetchLimitError struct{ retryAfter time.Duration }

func (e *fetchLimitError) Error() string {
	return fmt.Sprintf("fetch limit reached; retry in %v", e.retryAfter)
}

// admitFetch charges each real upstream fetch to the caller whose request
// starts it. Hits, and requests that join a fetch in flight or wait for
// another replica's, cost nothing.
func admitFetch(l limit.Limiter) func(ctx context.Context, k imageproxy.Key) error {
	return func(ctx context.Context, _ imageproxy.Key) error {
		subject, _ := caddyhttp.GetVar(ctx, varFetchSubject).(string)
		if res := l.Allow(ctx, subject); !res.Allowed {
			return &fetchLimitError{retryAfter: res.RetryAfter}
		}
		return nil
	}
}

// servedStale reports whether the proxy answered r with a stale object.
func servedStale(r *http.Request) bool {
	stale, _ := caddyhttp.GetVar(r.Context(), varServedStale).(bool)
	return stale
}

// ServedStale implements imageproxy.StaleObserver: the request is counted
// as outcome "stale", and the outage is logged once, until a fetch
// succeeds again.
func (o *proxyObserver) ServedStale(r *http.Request, k imageproxy.Key, cause *imageproxy.UpstreamError) {
	caddyhttp.SetVar(r.Context(), varServedStale, true)
	if o.outage.CompareAndSwap(false, true) {
		o.logger.Warn("upstream failing: serving stored images past cache_ttl (stale_if_error) until it answers again",
			zap.String("variant", k.Variant), zap.Int("upstream_status", cause.Upstream))
	}
}

// outageOver ends a logged outage when a fetch succeeds.
func (o *proxyObserver) outageOver() {
	if o.outage.Load() && o.outage.CompareAndSwap(true, false) {
		o.logger.Info("upstream answering again: stale answers have stopped")
	}
}

// proxyObserver turns the proxy's events into metrics.
type proxyObserver struct {
	variants map[string]*variantState
	logger   *zap.Logger
	outage   atomic.Bool // stale answers are being served
}
