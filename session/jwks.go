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
	url        string
	client     *http.Client
	timeout    time.Duration
	refresh    time.Duration
	minRefetch time.Duration
	now        func() time.Time

	keys atomic.Pointer[keySet]
	done chan struct{}

	// mu serialises fetches, so concurrent requests with one new kid cause
	// one fetch, and guards the fields below.
	mu           sync.Mutex
	lastOnDemand time.Time
	lastErr      error
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
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("jwks url must be an absolute http or https url")
	}
	k := &JWKS{
		url:        cfg.URL,
		client:     cfg.HTTP,
		timeout:    orDefault(cfg.Timeout, 5*time.Second),
		refresh:    orDefault(cfg.RefreshInterval, 15*time.Minute),
		minRefetch: orDefault(cfg.MinRefetchInterval, time.Minute),
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
	return k, nil
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

// nextDelay retries sooner while no set has ever been loaded.
func (k *JWKS) nextDelay() time.Duration {
	if k.keys.Load() == nil {
		return k.minRefetch
	}
	return k.refresh
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
	set, err := k.fetch(ctx)
	if err != nil {
		k.lastErr = fmt.Errorf("fetching jwks: %w", err)
		return k.lastErr
	}
	k.lastErr = nil
	k.keys.Store(set)
	return nil
}

func (k *JWKS) fetch(ctx context.Context) (*keySet, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
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
	return parseKeySet(body)
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
