package cfemulator

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
)

// The collectors are process-wide and registered into every config's
// registry Caddy gives each config (process-wide collectors registered
// into each new registry), so counts survive config reloads.
var (
	deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_emulator_deliveries_total",
		Help: "Delivery requests the Cloudflare Images emulator answered, by variant and HTTP status code; code 200 is what Cloudflare would bill. 304 answers are counted in imagegate_emulator_not_modified_total instead.",
	}, []string{"variant", "code"})
	notModifiedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_emulator_not_modified_total",
		Help: "Delivery requests the Cloudflare Images emulator answered with 304 Not Modified, by variant.",
	}, []string{"variant"})
	apiCallsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_emulator_api_calls_total",
		Help: "API requests the Cloudflare Images emulator answered, by host (api or batch) and HTTP status code.",
	}, []string{"host", "code"})
	apiRateLimitedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_emulator_api_rate_limited_total",
		Help: "API requests the Cloudflare Images emulator refused with 429 because a rate limit was reached, by host (api or batch).",
	}, []string{"host"})
)

// registerMetrics adds the collectors to reg (see provision.Register).
func registerMetrics(reg *prometheus.Registry) error {
	return provision.Register(reg, deliveriesTotal, notModifiedTotal, apiCallsTotal, apiRateLimitedTotal)
}
