package caddymodule

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// Proxy-mode collectors, process-wide like the others (see metrics).
var proxyMetrics = struct {
	hits       *prometheus.CounterVec
	misses     prometheus.Counter
	bytes      prometheus.GaugeFunc
	fetches    *prometheus.CounterVec
	fetchTime  prometheus.Histogram
	sent       prometheus.Counter
	fetchClass [6]prometheus.Counter // error, 1xx … 5xx
}{
	hits: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_byte_cache_hits_total",
		Help: "Proxy-mode requests served from the byte cache, by tier (memory, redis).",
	}, []string{"tier"}),
	misses: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_byte_cache_misses_total",
		Help: "Proxy-mode requests no byte-cache tier could serve.",
	}),
	bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "imagegate_byte_cache_resident_bytes",
		Help: "Bytes of image data held in the memory tiers of live configs.",
	}, residentBytes),
	fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_upstream_fetches_total",
		Help: "Proxy-mode fetches from Cloudflare, by status class (2xx, 4xx, 5xx, or error for no answer).",
	}, []string{"status"}),
	fetchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "imagegate_upstream_fetch_duration_seconds",
		Help:    "Time from sending a proxy-mode fetch to the end of its body.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15},
	}),
	sent: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_sent_bytes_total",
		Help: "Image body bytes written to clients in proxy mode.",
	}),
}

func init() {
	names := [6]string{"error", "1xx", "2xx", "3xx", "4xx", "5xx"}
	for i, n := range names {
		proxyMetrics.fetchClass[i] = proxyMetrics.fetches.WithLabelValues(n)
	}
	// Every series exists from the start, so dashboards and alerts see
	// zeros rather than nothing.
	for _, tier := range []string{"memory", "redis"} {
		proxyMetrics.hits.WithLabelValues(tier)
	}
}

// residentBytes sums the memory tiers of live configs.
func residentBytes() float64 {
	var n int64
	memoryTiers.Range(func(_, v any) bool {
		n += v.(pooledMemory).Bytes()
		return true
	})
	return float64(n)
}

func (*proxyObserver) CacheHit(tier string) { proxyMetrics.hits.WithLabelValues(tier).Inc() }
func (*proxyObserver) CacheMiss()           { proxyMetrics.misses.Inc() }
func (*proxyObserver) Sent(n int64)         { proxyMetrics.sent.Add(float64(n)) }

// Fetched counts a fetch; a 200 is what Cloudflare bills, so it is the
// proxy-mode billable delivery. Cache hits and refusals never are.
func (o *proxyObserver) Fetched(k imageproxy.Key, status int, d time.Duration) {
	proxyMetrics.fetchClass[min(status/100, 5)].Inc()
	proxyMetrics.fetchTime.Observe(d.Seconds())
	if status == 200 {
		o.outageOver()
		if vs, ok := o.variants[k.Variant]; ok {
			vs.billable.Inc()
		}
	}
}

func proxyCollectors() []prometheus.Collector {
	return []prometheus.Collector{proxyMetrics.hits, proxyMetrics.misses, proxyMetrics.bytes,
		proxyMetrics.fetches, proxyMetrics.fetchTime, proxyMetrics.sent}
}
