package session

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/singleflight"
)

// IntrospectConfig configures an [Introspect] authenticator. Zero values
// mean the documented defaults.
type IntrospectConfig struct {
	// URL is the application's endpoint that judges a session. Required.
	URL string
	// Method is the HTTP method used to call it. Default GET.
	Method string
	// Cookies names the request cookies forwarded to the application.
	Cookies []string
	// Headers names the request headers forwarded to the application
	// (e.g. Authorization).
	Headers []string
	// PerImage also forwards X-Image-Id and X-Image-Variant, so the
	// application decides per image; decisions are then cached per image.
	PerImage bool
	// SubjectHeader is the response header naming the caller.
	// Default X-User-Id.
	SubjectHeader string
	// Timeout bounds one call. Default 2s.
	Timeout time.Duration
	// CacheTTL is how long an allowing answer is reused. Default 30s;
	// negative disables.
	CacheTTL time.Duration
	// NegativeTTL is how long a 401 or 403 answer is reused. Default 5s;
	// negative disables.
	NegativeTTL time.Duration
	// CacheSize bounds the decision cache (entries). Default 10000;
	// negative disables caching.
	CacheSize int
	// HTTP supplies the transport. Redirects are never followed whatever
	// this client says: a redirect to a login page is not an approval.
	// Default: http.DefaultTransport.
	HTTP *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Introspect asks the application that owns an opaque session (a Django
// sessionid, a Rails or Express cookie) whether the caller is logged in,
// forwarding only the configured cookies and headers. 2xx allows, with the
// subject from SubjectHeader (possibly empty); 401 is ErrUnauthenticated;
// 403 is ErrForbidden; anything else, including redirects and timeouts, is
// ErrUnavailable. A request carrying none of the forwarded credentials is
// ErrUnauthenticated without a call.
//
// Answers are cached under a hash of exactly the forwarded bytes (the
// Cookie header as sent to the application, quoting included, the
// forwarded headers, and the image id and variant when PerImage), so two
// callers share a decision only if the application would have seen
// identical requests. The application's
// Cache-Control on its answer overrides the TTL: max-age=N caches for N
// seconds, no-store or no-cache not at all. Concurrent misses for one key
// make a single call.
type Introspect struct {
	url         string
	method      string
	cookies     []string
	headers     []string
	perImage    bool
	subject     string
	timeout     time.Duration
	ttl         time.Duration
	negativeTTL time.Duration
	client      *http.Client
	now         func() time.Time
	challenge   string
	vary        []string

	cache *ttlCache[[sha256.Size]byte, decision]
	group singleflight.Group
}

// decision is one cached answer of the application.
type decision struct {
	verdict error // nil, ErrUnauthenticated or ErrForbidden
	subject string
}

// NewIntrospect validates cfg and returns the authenticator.
func NewIntrospect(cfg IntrospectConfig) (*Introspect, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("url: must be an absolute http or https url")
	}
	if len(cfg.Cookies) == 0 && len(cfg.Headers) == 0 {
		return nil, errors.New("sources: forward at least one cookie or header")
	}
	i := &Introspect{
		url:         cfg.URL,
		method:      cfg.Method,
		cookies:     cfg.Cookies,
		perImage:    cfg.PerImage,
		subject:     cfg.SubjectHeader,
		timeout:     orDefault(cfg.Timeout, 2*time.Second),
		ttl:         ttlOrDefault(cfg.CacheTTL, 30*time.Second),
		negativeTTL: ttlOrDefault(cfg.NegativeTTL, 5*time.Second),
		now:         cfg.Now,
	}
	if len(cfg.Cookies) > 0 {
		i.vary = varyList(i.vary, "Cookie")
	}
	for _, h := range cfg.Headers {
		i.headers = append(i.headers, http.CanonicalHeaderKey(h))
		if strings.EqualFold(h, "Authorization") {
			i.challenge = "Bearer"
		}
		i.vary = varyList(i.vary, h)
	}
	if i.method == "" {
		i.method = http.MethodGet
	}
	if i.subject == "" {
		i.subject = "X-User-Id"
	}
	if i.now == nil {
		i.now = time.Now
	}
	i.cache = newTTLCache[[sha256.Size]byte, decision](cfg.CacheSize)
	// Copy the client so that our redirect rule does not change the
	// caller's.
	i.client = &http.Client{}
	if cfg.HTTP != nil {
		*i.client = *cfg.HTTP
	}
	i.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return i, nil
}

func ttlOrDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// Challenge returns "Bearer" when the Authorization header is forwarded.
func (i *Introspect) Challenge() string { return i.challenge }

// Vary returns the forwarded headers: Cookie if any cookie is forwarded,
// then each forwarded header.
func (i *Introspect) Vary() []string { return slices.Clone(i.vary) }

// Authenticate asks the application, or its cached answer, about r.
func (i *Introspect) Authenticate(r *http.Request, img Image) (Identity, Outcome, error) {
	var stack [512]byte
	cookie := i.appendCookie(stack[:0], r)
	key, ok := i.key(cookie, r, img)
	if !ok {
		return Identity{}, Outcome{}, fmt.Errorf("%w: no session credentials", ErrUnauthenticated)
	}
	if d, ok := i.cache.get(key, i.now()); ok {
		return d.result(Outcome{CacheHit: true})
	}
	v, err, _ := i.group.Do(string(key[:]), func() (any, error) {
		// A call for this key may have finished between our cache check
		// and now.
		if d, ok := i.cache.get(key, i.now()); ok {
			return d, nil
		}
		d, ttl, err := i.call(r.Context(), string(cookie), r, img)
		if err != nil {
			return decision{}, err
		}
		now := i.now()
		i.cache.add(key, d, now.Add(ttl), now)
		return d, nil
	})
	if err != nil {
		return Identity{}, Outcome{}, err
	}
	return v.(decision).result(Outcome{})
}

func (d decision) result(o Outcome) (Identity, Outcome, error) {
	if d.verdict != nil {
		return Identity{}, o, fmt.Errorf("%w: introspection denied", d.verdict)
	}
	return Identity{Subject: d.subject}, o, nil
}

// appendCookie appends to b the Cookie header forwarded to the
// application: each configured cookie present in r, serialized as the
// client sent it (a quoted value stays quoted), joined by "; ". Both the
// cache key and the call use this one rendering, so two requests share a
// cached decision only if the application would have seen the same bytes.
func (i *Introspect) appendCookie(b []byte, r *http.Request) []byte {
	start := len(b)
	for _, name := range i.cookies {
		c, err := r.Cookie(name)
		if err != nil || c.Value == "" {
			continue
		}
		if len(b) > start {
			b = append(b, "; "...)
		}
		b = append(b, c.Name...)
		b = append(b, '=')
		if c.Quoted {
			b = append(b, '"')
			b = append(b, c.Value...)
			b = append(b, '"')
		} else {
			b = append(b, c.Value...)
		}
	}
	return b
}

// key hashes exactly what is forwarded: the Cookie header, the forwarded
// headers' values and, per image, the image. Every field is
// length-prefixed so that different requests cannot produce the same byte
// stream. ok is false when the request carries none of the forwarded
// credentials.
func (i *Introspect) key(cookie []byte, r *http.Request, img Image) (k [sha256.Size]byte, ok bool) {
	var stack [512]byte
	b := stack[:0]
	field := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(cookie)))
	b = append(b, cookie...)
	ok = len(cookie) > 0
	for _, name := range i.headers {
		field(name)
		vals := r.Header[name]
		b = binary.AppendUvarint(b, uint64(len(vals)))
		for _, v := range vals {
			if v != "" {
				ok = true
			}
			field(v)
		}
	}
	if i.perImage {
		field(img.ID)
		field(img.Variant)
	}
	return sha256.Sum256(b), ok
}

// call asks the application and returns its decision and how long it may
// be cached.
func (i *Introspect) call(ctx context.Context, cookie string, r *http.Request, img Image) (decision, time.Duration, error) {
	// Detached from the first caller: others may be waiting on this call.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), i.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, i.method, i.url, nil)
	if err != nil {
		return decision{}, 0, fmt.Errorf("%w: building introspection request: %v", ErrUnavailable, err)
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for _, name := range i.headers {
		for _, v := range r.Header[name] {
			req.Header.Add(name, v)
		}
	}
	if i.perImage {
		req.Header.Set("X-Image-Id", img.ID)
		req.Header.Set("X-Image-Variant", img.Variant)
	}
	resp, err := i.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return decision{}, 0, fmt.Errorf("%w: introspection timed out after %v", ErrUnavailable, i.timeout)
		}
		return decision{}, 0, fmt.Errorf("%w: introspection request failed: %v", ErrUnavailable, err)
	}
	// Drain a little so the connection can be reused; the body is unused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()

	var d decision
	ttl := i.ttl
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		d.subject = resp.Header.Get(i.subject)
	case resp.StatusCode == http.StatusUnauthorized:
		d.verdict, ttl = ErrUnauthenticated, i.negativeTTL
	case resp.StatusCode == http.StatusForbidden:
		d.verdict, ttl = ErrForbidden, i.negativeTTL
	default:
		return decision{}, 0, fmt.Errorf("%w: introspection answered status %d", ErrUnavailable, resp.StatusCode)
	}
	if v, ok := cacheControlTTL(resp.Header.Values("Cache-Control")); ok {
		ttl = v
	}
	return d, ttl, nil
}

// cacheControlTTL reads max-age, no-store and no-cache. ok is false when
// the header says nothing about lifetime.
func cacheControlTTL(values []string) (ttl time.Duration, ok bool) {
	for _, v := range values {
		for dir := range strings.SplitSeq(v, ",") {
			dir = strings.TrimSpace(dir)
			name, arg, _ := strings.Cut(dir, "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(arg, `"`), 10, 64)
				if err == nil && n >= 0 {
					ttl, ok = time.Duration(min(n, 1<<32))*time.Second, true
				}
			}
		}
	}
	return ttl, ok
}
