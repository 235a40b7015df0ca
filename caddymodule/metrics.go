package caddymodule

import (
	"errors"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/config"
	"github.com/seed-a64a90cf/imagegate/internal/buildinfo"
	"github.com/seed-a64a90cf/imagegate/session"
)

// outcome is what became of a request under the prefix. Its string is the
// `outcome` label of imagegate_requests_total and the value of the
// {http.cf_images.outcome} placeholder.
type outcome int

const (
	outcomeRedirect outcome = iota
	outcomeJSON
	outcomeNotModified
	outcomeProxied
	outcomeStale
	outcomeUnauthenticated
	outcomeForbidden
	outcomeLimited
	outcomeBadRequest
	outcomeNotFound
	outcomeMethodNotAllowed
	outcomeUnavailable
	outcomeUpstreamError
	outcomeUpstreamTimeout
	numOutcomes
)

var outcomeInfo = [numOutcomes]struct {
	name   string
	status int // the answer's status when the outcome is a refusal
}{
	outcomeRedirect:    {"redirect", http.StatusFound},
	outcomeJSON:        {"json", http.StatusOK},
	outcomeNotModified: {"not_modified", http.StatusNotModified},
	outcomeProxied:     {"proxied", http.StatusOK},
	outcomeStale:       {"stale", http.StatusOK},
	// A session verdict's status is the session package's decision.
	outcomeUnauthenticated:  {"unauthenticated", session.Unauthenticated.Status()},
	outcomeForbidden:        {"forbidden", session.Forbidden.Status()},
	outcomeLimited:          {"limited", session.Limited.Status()},
	outcomeBadRequest:       {"bad_request", http.StatusBadRequest},
	outcomeNotFound:         {"not_found", http.StatusNotFound},
	outcomeMethodNotAllowed: {"method_not_allowed", http.StatusMethodNotAllowed},
	outcomeUnavailable:      {"unavailable", session.Unavailable.Status()},
	outcomeUpstreamError:    {"upstream_error", http.StatusBadGateway},
	outcomeUpstreamTimeout:  {"upstream_timeout", http.StatusGatewayTimeout},
}

func (o outcome) String() string { return outcomeInfo[o].name }
func (o outcome) status() int    { return outcomeInfo[o].status }

// outcomeValues holds each outcome's name boxed once, so setting the
// placeholder allocates nothing.
var outcomeValues = func() (v [numOutcomes]any) {
	for o := range numOutcomes {
		v[o] = o.String()
	}
	return v
}()

// otherVariant labels every variant that is not configured, so that
// label values are bounded by the configuration, never by requests.
const otherVariant = "other"

// Collectors are process-wide and re-registered into each config's
// registry (Caddy makes a new one per load), so counters keep counting
// across reloads and a handler used twice in one config shares them.
var metrics = struct {
	requests        *prometheus.CounterVec
	billable        *prometheus.CounterVec
	cacheHits       prometheus.Counter
	cacheMisses     prometheus.Counter
	cacheEvictions  prometheus.Counter
	signatures      prometheus.Counter
	validity        prometheus.Histogram
	sessionChecks   *prometheus.CounterVec
	sessionTime     *prometheus.HistogramVec
	decisionHits    *prometheus.CounterVec
	decisionMisses  *prometheus.CounterVec
	uploadURLs      *prometheus.CounterVec
	apiRateLimited  prometheus.Counter
	signingFailures prometheus.Counter
	byteEvictions   prometheus.Counter
	keyInfo         *prometheus.GaugeVec
	buildInfo       *prometheus.GaugeVec
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
		Help: "Session and authorization checks of image and upload requests, by session method and result (allowed, unauthenticated, revoked, forbidden, unavailable, limited).",
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
		Help: "Direct-upload URL requests, by result (issued, unauthenticated, forbidden, unavailable, limited, upstream_error, method_not_allowed).",
	}, []string{"result"}),
	apiRateLimited: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_api_rate_limited_total",
		Help: "Cloudflare API calls answered 429, or not made because the API's Retry-After had not passed.",
	}),
	signingFailures: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_signing_failures_total",
		Help: "Delivery URLs whose signature Cloudflare refused (403) in proxy mode: the signing key is wrong or was deleted.",
	}),
	byteEvictions: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "imagegate_byte_cache_evictions_total",
		Help: "Images evicted from the proxy-mode memory tier to make room; a steady rate means cache_size is too small.",
	}),
	keyInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagegate_signing_key_info",
		Help: "Set to 1 for each signing key a live config uses, identified by a short non-reversible fingerprint.",
	}, []string{"key_id"}),
	buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "imagegate_build_info",
		Help: "Always 1; labels give the imagegate module version and the Go version that built it.",
	}, []string{"version", "goversion"}),
}

// moduleVersion is imagegate's module version, "unknown" in a build
// without module information; it names the upstream User-Agent too.
// moduleVersion is imagegate's own version (internal/buildinfo), sent
// upstream in proxy mode's User-Agent and exported in imagegate_build_info.
var moduleVersion = buildinfo.Version()

func init() {
	metrics.buildInfo.WithLabelValues(moduleVersion, runtime.Version()).Set(1)
}

// metricsInUse and redisMetricsInUse say which collectors the running
// config registered. Caddy serves /metrics from the registry of the last
// config it tried to load, even one it then rejected (it switches the admin
// endpoint to the new config before provisioning the apps), so the admin
// route registers these collectors into every new registry first: a
// rejected reload leaves every series in place.
var metricsInUse, redisMetricsInUse atomic.Bool

// registerMetrics adds the process-wide collectors to reg. A collector
// already there (the handler appears twice in one config) is fine.
func registerMetrics(reg *prometheus.Registry) error {
	metricsInUse.Store(true)
	cs := []prometheus.Collector{
		metrics.requests, metrics.billable, metrics.cacheHits, metrics.cacheMisses,
		metrics.cacheEvictions, metrics.signatures, metrics.validity, metrics.sessionChecks, metrics.sessionTime,
		metrics.decisionHits, metrics.decisionMisses, metrics.uploadURLs, metrics.apiRateLimited,
		metrics.signingFailures, metrics.byteEvictions, metrics.keyInfo, metrics.buildInfo,
	}
	cs = append(cs, proxyCollectors()...)
	return provision.Register(reg, append(cs, revocationsTotal)...)
}

// registerRedisMetrics adds the Redis collectors to reg, for a config that
// uses Redis: without one, imagegate_redis_up is absent rather than 0.
func registerRedisMetrics(reg *prometheus.Registry) error {
	redisMetricsInUse.Store(true)
	return provision.Register(reg, fleetCollectors()...)
}

// registerMetricsInUse registers the collectors the running config uses
// into a new config's registry.
func registerMetricsInUse(reg *prometheus.Registry) error {
	var errs []error
	if metricsInUse.Load() {
		errs = append(errs, registerMetrics(reg))
	}
	if redisMetricsInUse.Load() {
		errs = append(errs, registerRedisMetrics(reg))
	}
	return errors.Join(errs...)
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

// checkMetrics holds one session method's resolved handles for
// imagegate_session_checks_total and its companions.
type checkMetrics struct {
	results  [session.Limited + 1]prometheus.Counter
	revoked  prometheus.Counter // unauthenticated because the session was revoked
	duration prometheus.Observer
	hits     prometheus.Counter
	misses   prometheus.Counter // nil for methods that cache nothing
}

func newCheckMetrics(m SessionMethod) *checkMetrics {
	name := m.CaddyModule().ID.Name()
	c := &checkMetrics{
		duration: metrics.sessionTime.WithLabelValues(name),
		hits:     metrics.decisionHits.WithLabelValues(name),
		revoked:  metrics.sessionChecks.WithLabelValues(name, "revoked"),
	}
	for v := range c.results {
		c.results[v] = metrics.sessionChecks.WithLabelValues(name, session.Verdict(v).String())
	}
	if dc, ok := m.(DecisionCacher); ok && dc.CachesDecisions() {
		c.misses = metrics.decisionMisses.WithLabelValues(name)
	}
	return c
}

// observe counts one check: image or upload, each exactly once.
func (c *checkMetrics) observe(d session.Decision, took time.Duration) {
	c.duration.Observe(took.Seconds())
	if d.Verdict == session.Unauthenticated && errors.Is(d.Err, session.ErrRevoked) {
		c.revoked.Inc()
	} else {
		c.results[d.Verdict].Inc()
	}
	switch {
	case d.CacheHit:
		c.hits.Inc()
	case c.misses != nil:
		c.misses.Inc()
	}
}
