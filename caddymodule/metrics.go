package caddymodule

import (
	"errors"
	"runtime/debug"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"

	"github.com/seed-a64a90cf/imagegate/config"
)

// outcome is what became of a request under the prefix. Its string is the
// `outcome` label of imagegate_requests_total.
type outcome int

const (
	outcomeRedirect outcome = iota
	outcomeJSON
	outcomeNotModified
	outcomeUnauthenticated
	outcomeForbidden
	outcomeBadRequest
	outcomeNotFound
	outcomeMethodNotAllowed
	outcomeUnavailable
	outcomeUpstreamError
	numOutcomes
)

var outcomeNames = [numOutcomes]string{
	"redirect", "json", "not_modified", "unauthenticated", "forbidden", "bad_request", "not_found", "method_not_allowed", "unavailable", "upstream_error",
}

func (o outcome) String() string { return outcomeNames[o] }

// logLevel is info for a caller's mistake or a denial, warn when a
// dependency failed.
func (o outcome) logLevel() zapcore.Level {
	if o == outcomeUnavailable || o == outcomeUpstreamError {
		return zapcore.WarnLevel
	}
	return zapcore.InfoLevel
}

// otherVariant labels every variant that is not configured, so that
// label values are bounded by the configuration, never by requests.
const otherVariant = "other"

// Collectors are process-wide and re-registered into each config's
// registry (Caddy makes a new one per load), so counters keep counting
// across reloads and a handler used twice in one config shares them.
var metrics = struct {
	requests       *prometheus.CounterVec
	billable       *prometheus.CounterVec
	cacheHits      prometheus.Counter
	cacheMisses    prometheus.Counter
	cacheEvictions prometheus.Counter
	signatures     prometheus.Counter
	validity       prometheus.Histogram
	sessionChecks  *prometheus.CounterVec
	sessionTime    *prometheus.HistogramVec
	decisionHits   *prometheus.CounterVec
	decisionMisses *prometheus.CounterVec
	uploadURLs     *prometheus.CounterVec
	keyInfo        *prometheus.GaugeVec
	buildInfo      *prometheus.GaugeVec
}{
	requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_requests_total",
		Help: "Requests under the gateway prefix, by configured variant (other for anything else) and outcome.",
	}, []string{"variant", "outcome"}),
	billable: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_billable_deliveries_total",
		Help: "Responses that make a client fetch the image from Cloudflare, each billed as one delivery.",
	}, []string{"variant"}),
	cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_url_cache_hits_total",
		Help: "Delivery URLs served from the signed-URL cache.",
	}),
	cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_url_cache_misses_total",
		Help: "Delivery URLs that had to be made because the cache had none fresh.",
	}),
	cacheEvictions: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_url_cache_evictions_total",
		Help: "Cached delivery URLs evicted to make room; a steady rate means cache_size is too small.",
	}),
	signatures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_signatures_total",
		Help: "HMAC signatures made for delivery URLs.",
	}),
	validity: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "imagegate_url_validity_seconds",
		Help:    "Seconds of validity left on each delivery URL handed out.",
		Buckets: []float64{60, 300, 600, 900, 1800, 2700, 3600, 7200, 14400, 43200, 86400},
	}),
	sessionChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_session_checks_total",
		Help: "Session and authorization checks, by session method and result (allowed, unauthenticated, forbidden, unavailable).",
	}, []string{"method", "result"}),
	sessionTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "imagegate_session_check_duration_seconds",
		Help:    "Time spent checking the caller's session and authorization, by session method.",
		Buckets: []float64{0.000005, 0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5},
	}, []string{"method"}),
	decisionHits: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_decision_cache_hits_total",
		Help: "Session decisions answered from cache (verified tokens, introspection answers), by session method.",
	}, []string{"method"}),
	decisionMisses: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_decision_cache_misses_total",
		Help: "Session decisions that needed a signature check or a call to the app, by session method.",
	}, []string{"method"}),
	uploadURLs: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "imagegate_upload_urls_total",
		Help: "Direct-upload URL requests, by result (issued, unauthenticated, unavailable, upstream_error, method_not_allowed).",
	}, []string{"result"}),
	keyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagegate_signing_key_info",
		Help: "Set to 1 for each signing key a live config uses, identified by a short non-reversible fingerprint.",
	}, []string{"key_id"}),
	buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagegate_build_info",
		Help: "Always 1; labels give the imagegate module version and the Go version that built it.",
	}, []string{"version", "goversion"}),
}

func init() {
	version, goVersion := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		for _, m := range bi.Deps {
			if m.Path == "github.com/seed-a64a90cf/imagegate" {
				version = m.Version
			}
		}
		if bi.Main.Path == "github.com/seed-a64a90cf/imagegate" {
			version = bi.Main.Version
		}
	}
	metrics.buildInfo.WithLabelValues(version, goVersion).Set(1)
}

// registerMetrics adds the process-wide collectors to reg. A collector
// already there (the handler appears twice in one config) is fine.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil { // a bare caddy.Context, as in some tests
		return nil
	}
	for _, c := range []prometheus.Collector{
		metrics.requests, metrics.billable, metrics.cacheHits, metrics.cacheMisses,
		metrics.cacheEvictions, metrics.signatures, metrics.validity, metrics.sessionChecks, metrics.sessionTime,
		metrics.decisionHits, metrics.decisionMisses, metrics.uploadURLs, metrics.keyInfo, metrics.buildInfo,
	} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}

// keysInUse counts the provisioned handlers signing with each key, so that
// imagegate_signing_key_info shows exactly the keys of live configs: after
// a rotation and reload, the old key's series goes away once the old
// config is cleaned up.
var keysInUse = struct {
	sync.Mutex
	refs map[string]int
}{refs: map[string]int{}}

// useKey marks keyID as in use by one more handler.
func useKey(keyID string) {
	keysInUse.Lock()
	defer keysInUse.Unlock()
	keysInUse.refs[keyID]++
	metrics.keyInfo.WithLabelValues(keyID).Set(1)
}

// releaseKey undoes useKey.
func releaseKey(keyID string) {
	keysInUse.Lock()
	defer keysInUse.Unlock()
	if keysInUse.refs[keyID]--; keysInUse.refs[keyID] <= 0 {
		delete(keysInUse.refs, keyID)
		metrics.keyInfo.DeleteLabelValues(keyID)
	}
}

// variantState holds one variant's resolved metric handles, so the request
// path does no label lookups.
type variantState struct {
	public   bool
	requests [numOutcomes]prometheus.Counter
	billable prometheus.Counter
}

func newVariantState(name string, public bool) *variantState {
	vs := &variantState{public: public, billable: metrics.billable.WithLabelValues(name)}
	for o := range numOutcomes {
		vs.requests[o] = metrics.requests.WithLabelValues(name, o.String())
	}
	return vs
}

func newVariantStates(cfg config.Gateway) map[string]*variantState {
	m := make(map[string]*variantState, len(cfg.Variants)+len(cfg.PublicVariants)+1)
	for _, v := range cfg.Variants {
		m[v] = newVariantState(v, false)
	}
	for _, v := range cfg.PublicVariants {
		m[v] = newVariantState(v, true)
	}
	return m
}

// otherState counts requests whose variant is not configured.
var otherState = newVariantState(otherVariant, false)

func (h *Handler) variantState(name string) *variantState {
	if vs, ok := h.variants[name]; ok {
		return vs
	}
	return otherState
}

func (vs *variantState) count(o outcome) { vs.requests[o].Inc() }

// served counts a handed-out URL: the request, its validity, and whether
// it is a billable delivery, one the client will fetch from Cloudflare.
func (vs *variantState) served(o outcome, billable bool, validitySeconds float64) {
	vs.requests[o].Inc()
	if billable {
		vs.billable.Inc()
	}
	metrics.validity.Observe(validitySeconds)
}
