package caddymodule

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-a64a90cf/imagegate/fleet"
)

// Collectors of the shared Redis tier, process-wide like the others.
var fleetMetrics = struct {
	up       prometheus.Gauge
	ops      *prometheus.CounterVec
	opErrors *prometheus.CounterVec
	opTime   *prometheus.HistogramVec
	rejected *prometheus.CounterVec
}{
	rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_redis_rejected_total",
		Help: "Values and messages read from Redis and rejected, never served: by reason (mac, size, type, purge, filled). Any rate means someone else writes to the gateway's keys.",
	}, []string{"reason"}),
	up: prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "imagegate_redis_up",
		Help: "1 while the gateway uses Redis, 0 while its circuit breaker has it serving from memory, upstream and per-replica limits.",
	}),
	ops: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_redis_operations_total",
		Help: "Redis operations, by operation (get, set, del, limit, publish).",
	}, []string{"op"}),
	opErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_redis_errors_total",
		Help: "Redis operations that failed, timed out, were skipped by the open breaker, or dropped (write queue full), by operation.",
	}, []string{"op"}),
	opTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imagegate_redis_operation_duration_seconds",
		Help:    "Time of Redis operations, by operation.",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25},
	}, []string{"op"}),
}

func init() {
	for _, reason := range []string{fleet.RejectMAC, fleet.RejectSize, fleet.RejectType, fleet.RejectPurge, fleet.RejectFilled} {
		fleetMetrics.rejected.WithLabelValues(reason)
	}
	for _, op := range []string{fleet.OpGet, fleet.OpSet, fleet.OpDel, fleet.OpLimit, fleet.OpPublish} {
		fleetMetrics.ops.WithLabelValues(op)
		fleetMetrics.opErrors.WithLabelValues(op)
		fleetMetrics.opTime.WithLabelValues(op)
	}
}

func countRedisRejected(reason string) { fleetMetrics.rejected.WithLabelValues(reason).Inc() }

func observeRedisOp(op string, d time.Duration, err error) {
	fleetMetrics.ops.WithLabelValues(op).Inc()
	fleetMetrics.opTime.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		fleetMetrics.opErrors.WithLabelValues(op).Inc()
	}
}

func fleetCollectors() []prometheus.Collector {
	return []prometheus.Collector{fleetMetrics.up, fleetMetrics.ops, fleetMetrics.opErrors, fleetMetrics.opTime, fleetMetrics.rejected}
}
