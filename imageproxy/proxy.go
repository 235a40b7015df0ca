package imageproxy

import (
	"cmp"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxObject = 10 << 20
	DefaultTTL       = 24 * time.Hour
	DefaultTimeout   = 15 * time.Second
	DefaultUserAgent = "imagegate"
)

// Config describes a Proxy.
type Config struct {
	// Tiers are looked up in order; a hit in a later tier fills the
	// earlier ones, for a full TTL (a tier does not tell how long its
	// copy has left). No tiers means nothing is cached: every request
	// makes its own fetch and streams it, as a reverse proxy does
	// (concurrent requests share a fetch only through a tier).
	Tiers []Tier
	// MaxObject is the largest body stored, in bytes (default 10 MiB).
	// Larger bodies stream through to one caller, uncached.
	MaxObject int64
	// TTL is how long a stored object is fresh (default 24h): served
	// without asking upstream. Tiers keep it for TTL + StaleIfError.
	TTL time.Duration
	// StaleIfError is how long past TTL a stored object may still be
	// served when its refetch fails with a 5xx, a timeout or a
	// connection error (RFC 5861); never after a 404 or 403. Stale
	// objects count against the memory tier's budget and are evicted
	// before fresh ones. 0 (the default) serves nothing stale.
	StaleIfError time.Duration
	// NegativeTTL is how long an upstream 404 is remembered per (account,
	// id, variant), in process memory (at most MaxNegative of them):
	// meanwhile the image is a 404 without an upstream request. Purge
	// forgets them. 0 (the default) remembers nothing.
	NegativeTTL time.Duration
	// Timeout bounds one whole upstream fetch: connect, headers and body
	// (default 15s). It bounds a pass-through of a body over MaxObject
	// too, so set it for the slowest client of the largest image.
	Timeout time.Duration
	// UserAgent is the fixed User-Agent sent upstream (default
	// "imagegate").
	UserAgent string
	// Transport makes upstream requests. The default is an
	// *http.Transport of the Proxy's own, tuned for one upstream host:
	// keep-alive with 32 idle connections, HTTP/2 when offered, a 3s dial
	// timeout, proxies from the environment as http.DefaultTransport, no
	// compression; Proxy.Close releases its idle connections. A Transport
	// given here should add no request headers: http.Transport adds
	// Accept-Encoding unless DisableCompression is set.
	Transport http.RoundTripper
	// Observer receives metrics events; it may be nil. If it is also a
	// StaleObserver, it is told about stale answers.
	Observer Observer
	// Leases, if set, coordinates fetches with other processes sharing
	// the tiers: one fetches a missing object, the others wait for it in
	// the shared tier, bounded by Timeout (see FillLeases).
	Leases FillLeases
	// Admit, if set, is called just before each upstream request, with
	// the context of the request the fetch answers first (its values; not
	// its cancellation) and the key. Only real upstream requests are
	// admitted: not hits, not requests that join a fetch in flight, not
	// a wait that another replica's fetch fills, not a remembered 404.
	// A non-nil error refuses the fetch: Serve returns that error to the
	// request, with nothing written, and other requests that were waiting
	// for the fetch start over (and are admitted on their own).
	Admit func(ctx context.Context, k Key) error
}

// Observer receives the proxy's metrics events. Its methods are called on
// the request path and must be cheap and safe for concurrent use.
type Observer interface {
	// CacheHit reports a request served from the named tier.
	CacheHit(tier string)
	// CacheMiss reports a request no tier could serve.
	CacheMiss()
	// Fetched reports one upstream fetch of k finished, with the upstream
	// status, or 0 for a connection error, a timeout or a body cut short.
	Fetched(k Key, status int, d time.Duration)
	// Sent reports body bytes written to a client's ResponseWriter by
	// one request.
	Sent(bytes int64)
}

// Proxy serves cached image bodies, fetching misses from upstream once
// per key at a time. It is safe for concurrent use.
type Proxy struct {
	tiers     []Tier
	maxObject int64
	ttl       time.Duration
	stale     time.Duration // StaleIfError
	timeout   time.Duration
	userAgent []string
	rt        http.RoundTripper
	own       *http.Transport // the default Transport, if Proxy made it
	obs       Observer
	staleObs  StaleObserver // obs, if it is one
	leases    FillLeases
	admit     func(ctx context.Context, k Key) error
	neg       *negative

	mu      sync.Mutex
	flights map[Key]*flight
	// stored counts flights that stored an object. A miss that sees it
	// change between its tier lookup and becoming a fetch's leader looks
	// again, so a fetch that finishes in between is not repeated.
	stored atomic.Uint64
}

// New returns a Proxy for cfg, with defaults for its zero fields.
func New(cfg Config) (*Proxy, error) {
	if cfg.MaxObject < 0 || cfg.TTL < 0 || cfg.Timeout < 0 || cfg.StaleIfError < 0 || cfg.NegativeTTL < 0 {
		return nil, errors.New("imageproxy: MaxObject, TTL, Timeout, StaleIfError and NegativeTTL must not be negative")
	}
	for _, t := range cfg.Tiers {
		if t == nil {
			return nil, errors.New("imageproxy: a nil tier")
		}
	}
	p := &Proxy{
		tiers:     cfg.Tiers,
		maxObject: cmp.Or(cfg.MaxObject, DefaultMaxObject),
		ttl:       cmp.Or(cfg.TTL, DefaultTTL),
		stale:     cfg.StaleIfError,
		timeout:   cmp.Or(cfg.Timeout, DefaultTimeout),
		userAgent: []string{cmp.Or(cfg.UserAgent, DefaultUserAgent)},
		rt:        cfg.Transport,
		obs:       cfg.Observer,
		leases:    cfg.Leases,
		admit:     cfg.Admit,
		neg:       newNegative(cfg.NegativeTTL),
		flights:   make(map[Key]*flight),
	}
	if p.obs == nil {
		p.obs = nopObserver{}
	}
	p.staleObs, _ = p.obs.(StaleObserver)
	if p.rt == nil {
		p.own = newTransport()
		p.rt = p.own
	}
	return p, nil
}

// newTransport returns a Transport for many requests to one host: kept
// alive, HTTP/2 when offered, quick to give up on a dead address.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   32,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		// No Accept-Encoding: images are compressed already, and the
		// upstream request carries only Accept and User-Agent.
		DisableCompression: true,
	}
}

// Close releases the idle connections of the Transport New made. A Proxy
// given a Transport leaves it alone.
func (p *Proxy) Close() {
	if p.own != nil {
		p.own.CloseIdleConnections()
	}
}

// Purge deletes keys from every tier and returns the total number of
// entries deleted, after Invalidate.
func (p *Proxy) Purge(ctx context.Context, keys ...Key) int {
	p.Invalidate(keys...)
	n := 0
	for _, t := range p.tiers {
		n += t.Delete(ctx, keys...)
	}
	return n
}

// Invalidate is what a purge does to this process beyond its tiers, for a
// purge that arrives from elsewhere (another replica's, over Pub/Sub):
// a fetch under way for one of the keys still answers the requests
// waiting for it but stores nothing, or deletes what it stored (a shared
// tier's background write may still land after that delete); a request
// after Invalidate starts a fetch of its own; remembered 404s for the
// keys are forgotten.
func (p *Proxy) Invalidate(keys ...Key) {
	p.mu.Lock()
	for _, k := range keys {
		if f, ok := p.flights[k]; ok {
			f.purged.Store(true)
			delete(p.flights, k)
		}
	}
	p.mu.Unlock()
	p.neg.forget(keys...)
}

type nopObserver struct{}

func (nopObserver) CacheHit(string)                 {}
func (nopObserver) CacheMiss()                      {}
func (nopObserver) Fetched(Key, int, time.Duration) {}
func (nopObserver) Sent(int64)                      {}
