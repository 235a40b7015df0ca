package session

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// maxJWKSBytes bounds a JWKS document; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// JWKSConfig configures a [JWKS]. Zero values mean the documented defaults.
type JWKSConfig struct {
	// URL is the JWKS document's http or https address. Required.
	URL string
	// HTTP is the client used to fetch it. Default: a client with
	// Timeout as its timeout.
	HTTP *http.Client
	// Timeout bounds one fetch. Default 5s.
	Timeout time.Duration
	// RefreshInterval is how often the set is refetched in the background.
	// Default 15m.
	RefreshInterval time.Duration
	// MinRefetchInterval is the shortest time between two fetches caused by
	// tokens with an unknown key id, so that forged kids cannot turn the
	// gateway into a load generator against the identity provider.
	// Default 1m.
	MinRefetchInterval time.Duration
	// RetryBackoff is the first wait before fetching again while no set
	// has ever loaded (the identity provider was down at start); it
	// doubles after each failure up to MinRefetchInterval. Default 1s.
	RetryBackoff time.Duration
	// OnStateChange, if set, is called with the error when a fetch fails
	// after a success (or the very first fetch fails), and with nil when a
	// fetch succeeds after a failure: once per outage, for a log line. It
	// is called with the set's lock held and must not block.
	OnStateChange func(err error)
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// JWKS is a JSON Web Key Set fetched from a URL and kept fresh: it is
// fetched when created, refreshed in the background, refetched (at most
// once per MinRefetchInterval) when a token names an unknown key id, and it
// keeps the last good set when a fetch fails. Keys are selected by kid; a
// token without a kid is accepted only when the set holds exactly one key.
// Symmetric ("oct") keys and keys marked for encryption are ignored.
type JWKS struct {
	issuer     string // set when the URL is discovered from the issuer
	client     *http.Client
	timeout    time.Duration
	refresh    time.Duration
	minRefetch time.Duration
	backoff    time.Duration
	onState    func(error)
	now        func() time.Time

	keys atomic.Pointer[keySet]
	done chan struct{}

	// mu serialises fetches, so concurrent requests with one new kid cause
	// one fetch, and guards the fields below.
	mu           sync.Mutex
	url          string // "" until discovered
	lastOnDemand time.Time
	lastErr      error
	failing      bool // the last fetch failed
	failures     int  // consecutive failures while no set has loaded
}

// keySet is one fetched generation of keys, replaced as a whole.
type keySet struct {
	byKid map[string]*verifyKey
	sole  *verifyKey // the only key, if the set has exactly one
}

func (s *keySet) lookup(kid string) *verifyKey {
	if s == nil {
		return nil
	}
	if kid == "" {
		return s.sole
	}
	return s.byKid[kid]
}

// NewJWKS fetches the set at cfg.URL (waiting at most Timeout) and refreshes
// it in the background until ctx is cancelled. A failed first fetch is not an error: the
// identity provider may be briefly down while the server starts, and
// requests fail closed (ErrUnavailable) until a fetch succeeds; see
// [JWKS.Err]. Only an invalid configuration is an error.
func NewJWKS(ctx context.Context, cfg JWKSConfig) (*JWKS, error) {
	if !absoluteHTTP(cfg.URL) {
		return nil, errors.New("jwks url must be an absolute http or https url")
	}
	return startJWKS(ctx, cfg, ""), nil
}

// NewDiscoveredJWKS is NewJWKS for an OpenID provider named by its issuer
// alone: the set's URL is the jwks_uri of the provider's discovery
// document, <issuer>/.well-known/openid-configuration, whose issuer must
// equal issuer exactly (OpenID Connect Discovery 1.0 §4.3). cfg.URL must be
// empty. Discovery is retried with the set's fetches, with the same
// backoff, until it succeeds: a provider down at start is not an error,
// and requests fail closed (ErrUnavailable) until then.
func NewDiscoveredJWKS(ctx context.Context, issuer string, cfg JWKSConfig) (*JWKS, error) {
	if cfg.URL != "" {
		return nil, errors.New("jwks: give an issuer to discover or a jwks url, not both")
	}
	if !absoluteHTTP(issuer) {
		return nil, errors.New("issuer must be an absolute http or https url to discover its keys")
	}
	return startJWKS(ctx, cfg, issuer), nil
}

func startJWKS(ctx context.Context, cfg JWKSConfig, issuer string) *JWKS {
	k := &JWKS{
		issuer:     issuer,
		url:        cfg.URL,
		client:     cfg.HTTP,
		timeout:    orDefault(cfg.Timeout, 5*time.Second),
		refresh:    orDefault(cfg.RefreshInterval, 15*time.Minute),
		minRefetch: orDefault(cfg.MinRefetchInterval, time.Minute),
		backoff:    orDefault(cfg.RetryBackoff, time.Second),
		onState:    cfg.OnStateChange,
		now:        cfg.Now,
		done:       make(chan struct{}),
	}
	if k.client == nil {
		k.client = &http.Client{Timeout: k.timeout}
	}
	if k.now == nil {
		k.now = time.Now
	}
	_ = k.Refresh(ctx) // recorded in lastErr; see doc comment
	go k.run(ctx)
	return k
}

// absoluteHTTP reports whether s is an absolute http or https URL.
func absoluteHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// Refresh fetches the set now. On failure the previous set stays in use and
// the error is returned (and reported by Err until a fetch succeeds).
func (k *JWKS) Refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.fetchLocked(ctx)
}

// Err returns the error of the last fetch, or nil if it succeeded.
func (k *JWKS) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lastErr
}

// Done is closed when the background refresh has stopped after the context
// given to NewJWKS was cancelled.
func (k *JWKS) Done() <-chan struct{} { return k.done }

func (k *JWKS) run(ctx context.Context) {
	defer close(k.done)
	t := time.NewTimer(k.nextDelay())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = k.Refresh(ctx)
			t.Reset(k.nextDelay())
		}
	}
}

// nextDelay retries sooner while no set has ever been loaded: after
// RetryBackoff, doubling with each failure up to MinRefetchInterval.
func (k *JWKS) nextDelay() time.Duration {
	if k.keys.Load() != nil {
		return k.refresh
	}
	k.mu.Lock()
	n := k.failures
	k.mu.Unlock()
	d := k.backoff
	for i := 1; i < n && d < k.minRefetch; i++ {
		d *= 2
	}
	return min(d, k.minRefetch)
}

// key returns the key for kid, refetching the set if kid is unknown and the
// last such refetch is at least MinRefetchInterval old.
func (k *JWKS) key(ctx context.Context, kid string) (*verifyKey, error) {
	if vk := k.keys.Load().lookup(kid); vk != nil {
		return vk, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	// Whoever held the lock before us may have fetched the key already.
	if vk := k.keys.Load().lookup(kid); vk != nil {
		return vk, nil
	}
	now := k.now()
	if k.lastOnDemand.IsZero() || now.Sub(k.lastOnDemand) >= k.minRefetch {
		k.lastOnDemand = now
		// Detached from the request: its cancellation must not fail the
		// fetch that other requests are waiting for.
		_ = k.fetchLocked(context.WithoutCancel(ctx))
		if vk := k.keys.Load().lookup(kid); vk != nil {
			return vk, nil
		}
	}
	if k.keys.Load() == nil {
		return nil, fmt.Errorf("%w: no jwks key set loaded", ErrUnavailable)
	}
	return nil, fmt.Errorf("%w: unknown key id", ErrUnauthenticated)
}

func (k *JWKS) fetchLocked(ctx context.Context) error {
	err := k.discoverLocked(ctx)
	if err == nil {
		var set *keySet
		if set, err = k.fetch(ctx); err == nil {
			k.keys.Store(set)
		} else {
			err = fmt.Errorf("fetching jwks: %w", err)
		}
	}
	k.lastErr = err
	if err != nil {
		if k.keys.Load() == nil {
			k.failures++
		}
		if !k.failing {
			k.failing = true
			if k.onState != nil {
				k.onState(err)
			}
		}
		return err
	}
	k.failures = 0
	if k.failing {
		k.failing = false
		if k.onState != nil {
			k.onState(nil)
		}
	}
	return nil
}

func (k *JWKS) fetch(ctx context.Context) (*keySet, error) {
	body, err := k.get(ctx, k.url)
	if err != nil {
		return nil, err
	}
	return parseKeySet(body)
}

// get fetches a JSON document of at most maxJWKSBytes.
func (k *JWKS) get(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, errors.New("document larger than 1 MiB")
	}
	return body, nil
}

// parseKeySet turns a JWKS document into verification keys, skipping keys
// that cannot verify signatures.
func parseKeySet(doc []byte) (*keySet, error) {
	set, err := jwk.Parse(doc)
	if err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	ks := &keySet{byKid: make(map[string]*verifyKey, set.Len())}
	var last *verifyKey
	for i := range set.Len() {
		key, _ := set.Key(i)
		if use, ok := key.KeyUsage(); ok && use != "" && use != jwk.ForSignature.String() {
			continue
		}
		if key.KeyType().String() == "oct" {
			// A published set must not hold shared secrets; accepting one
			// would let anyone who can read the set mint tokens.
			continue
		}
		pub, err := jwk.PublicKeyOf(key)
		if err != nil {
			continue
		}
		var raw any
		if err := jwk.Export(pub, &raw); err != nil {
			continue
		}
		var only string
		if a, ok := key.Algorithm(); ok {
			only = a.String()
		}
		vk, err := newVerifyKey(raw, only)
		if err != nil {
			continue
		}
		kid, _ := key.KeyID()
		ks.byKid[kid] = vk
		last = vk
	}
	n := len(ks.byKid)
	if n == 0 {
		return nil, errors.New("no usable signing keys")
	}
	if n == 1 {
		ks.sole = last
	}
	return ks, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
