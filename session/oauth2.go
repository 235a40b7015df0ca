package session

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// maxIntrospectionBytes bounds an introspection answer; real ones are
// well under a KiB.
const maxIntrospectionBytes = 64 << 10

// OAuth2IntrospectConfig configures an [OAuth2Introspect] authenticator.
// Zero values mean the documented defaults.
type OAuth2IntrospectConfig struct {
	// Endpoint is the authorization server's introspection endpoint, an
	// absolute http or https URL. Required.
	Endpoint string
	// ClientID and ClientSecret authenticate the gateway to the endpoint
	// with HTTP Basic (RFC 7662 §2.1, RFC 6749 §2.3.1). Required.
	ClientID     string
	ClientSecret []byte
	// Source is where the access token is read: the Authorization header
	// as "Bearer <token>" (the default), another header holding the bare
	// token, or a cookie.
	Source TokenSource
	// Audience, if set, must be one of the answer's aud values.
	Audience string
	// Issuer, if set, must equal the answer's iss.
	Issuer string
	// Scope, if set, must be one of the answer's space-separated scope
	// values.
	Scope string
	// SubjectClaim names the member of the answer that identifies the
	// caller. Default "sub".
	SubjectClaim string
	// CacheTTL is how long an active answer is reused, never past the
	// token's exp: the longest a token revoked at the authorization server
	// keeps working here. Default 30s; negative disables caching.
	CacheTTL time.Duration
	// NegativeTTL is how long an inactive answer is reused. Default 5s;
	// negative disables.
	NegativeTTL time.Duration
	// Timeout bounds one call. Default 2s.
	Timeout time.Duration
	// MaxTokenSize is the longest token, in bytes, that is sent to the
	// endpoint. Default 8 KiB.
	MaxTokenSize int
	// CacheSize bounds the answer cache (entries). Default 10000;
	// negative disables.
	CacheSize int
	// Revocations, if set, is consulted on every request, cached answers
	// included: a revoked subject, sid or jti is ErrRevoked.
	Revocations *Revocations
	// OnCall, if set, is called after each call to the endpoint with its
	// duration and its error (nil for any answer the endpoint gave, active
	// or not), for metrics. It must not block.
	OnCall func(d time.Duration, err error)
	// HTTP supplies the transport. Redirects are never followed.
	// Default: http.DefaultTransport.
	HTTP *http.Client
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// OAuth2Introspect authenticates requests carrying an OAuth 2.0 access
// token, opaque or JWT, by asking the authorization server (RFC 7662): a
// POST of token=…&token_type_hint=access_token with HTTP Basic client
// authentication. An active answer that passes the audience, issuer and
// scope checks allows, with its members as the identity's claims (so
// `authorize claim` reads them like JWT claims); active:false, a failed
// check or a missing subject is ErrUnauthenticated; an error, a timeout or
// an answer that is not RFC 7662 JSON is ErrUnavailable (fail closed).
//
// Answers are cached under HMAC-SHA256 of the token with a random
// per-authenticator key, so the token is never kept and nobody can choose
// two tokens that share an entry; an active answer is never cached past
// the token's exp (§4). Cached answers keep working while the endpoint is
// down. Concurrent misses for one token make a single call. The token is
// never part of an error.
type OAuth2Introspect struct {
	endpoint    string
	clientID    string
	secret      string
	source      TokenSource
	audience    string
	issuer      string
	scope       string
	subject     string
	ttl         time.Duration
	negativeTTL time.Duration
	timeout     time.Duration
	maxSize     int
	revoked     *Revocations
	onCall      atomic.Pointer[func(time.Duration, error)]
	client      *http.Client
	now         func() time.Time
	challenge   string
	vary        []string
	hashKey     [32]byte

	cache *ttlCache[[sha256.Size]byte, introspection]
	group singleflight.Group
}

// introspection is one cached answer: an identity, or why there is none.
type introspection struct {
	id  Identity
	err error // nil or wraps ErrUnauthenticated
}

// NewOAuth2Introspect validates cfg and returns the authenticator.
func NewOAuth2Introspect(cfg OAuth2IntrospectConfig) (*OAuth2Introspect, error) {
	if !absoluteHTTP(cfg.Endpoint) {
		return nil, errors.New("endpoint: must be an absolute http or https url")
	}
	if cfg.ClientID == "" || len(cfg.ClientSecret) == 0 {
		return nil, errors.New("client_id and client_secret are required: the endpoint authenticates its callers")
	}
	src := cfg.Source
	if src == (TokenSource{}) {
		src = TokenSource{Header: "Authorization"}
	}
	if (src.Cookie == "") == (src.Header == "") {
		return nil, errors.New("source: name exactly one cookie or header")
	}
	o := &OAuth2Introspect{
		endpoint:    cfg.Endpoint,
		clientID:    cfg.ClientID,
		secret:      string(cfg.ClientSecret),
		source:      src,
		audience:    cfg.Audience,
		issuer:      cfg.Issuer,
		scope:       cfg.Scope,
		subject:     cfg.SubjectClaim,
		ttl:         ttlOrDefault(cfg.CacheTTL, 30*time.Second),
		negativeTTL: ttlOrDefault(cfg.NegativeTTL, 5*time.Second),
		timeout:     orDefault(cfg.Timeout, 2*time.Second),
		maxSize:     cfg.MaxTokenSize,
		revoked:     cfg.Revocations,
		now:         cfg.Now,
	}
	if cfg.OnCall != nil {
		o.onCall.Store(&cfg.OnCall)
	}
	if o.subject == "" {
		o.subject = "sub"
	}
	if o.maxSize <= 0 {
		o.maxSize = 8 << 10
	}
	if o.now == nil {
		o.now = time.Now
	}
	if src.Cookie != "" {
		o.vary = []string{"Cookie"}
	} else {
		o.vary = varyList(nil, src.Header)
		if strings.EqualFold(src.Header, "Authorization") {
			o.challenge = "Bearer"
		}
	}
	if _, err := rand.Read(o.hashKey[:]); err != nil {
		return nil, fmt.Errorf("cache key: %v", err)
	}
	o.cache = newTTLCache[[sha256.Size]byte, introspection](cfg.CacheSize)
	o.client = &http.Client{}
	if cfg.HTTP != nil {
		*o.client = *cfg.HTTP
	}
	o.client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return o, nil
}

// SetOnCall replaces OAuth2IntrospectConfig.OnCall; nil removes it. It is
// safe to call while requests are served.
func (o *OAuth2Introspect) SetOnCall(f func(d time.Duration, err error)) {
	if f == nil {
		o.onCall.Store(nil)
		return
	}
	o.onCall.Store(&f)
}

// Challenge returns "Bearer" when the token is read from the
// Authorization header, and "" otherwise.
func (o *OAuth2Introspect) Challenge() string { return o.challenge }

// Vary returns the header the token is read from.
func (o *OAuth2Introspect) Vary() []string { return slices.Clone(o.vary) }

// Authenticate asks the authorization server about the request's token,
// or reuses its cached answer, and checks the revocations.
func (o *OAuth2Introspect) Authenticate(r *http.Request, _ Image) (Identity, Outcome, error) {
	tok := o.token(r)
	if tok == "" {
		return Identity{}, Outcome{}, fmt.Errorf("%w: no token", ErrUnauthenticated)
	}
	if len(tok) > o.maxSize {
		return Identity{}, Outcome{}, fmt.Errorf("%w: token larger than %d bytes", ErrUnauthenticated, o.maxSize)
	}
	key := o.key(tok)
	if a, ok := o.cache.get(key, o.now()); ok {
		return o.result(a, Outcome{CacheHit: true})
	}
	v, err, _ := o.group.Do(string(key[:]), func() (any, error) {
		// A call for this token may have finished since our cache check.
		if a, ok := o.cache.get(key, o.now()); ok {
			return a, nil
		}
		a, until, err := o.call(r.Context(), tok)
		if err != nil {
			return introspection{}, err
		}
		o.cache.add(key, a, until, o.now())
		return a, nil
	})
	if err != nil {
		return Identity{}, Outcome{}, err
	}
	return o.result(v.(introspection), Outcome{})
}

func (o *OAuth2Introspect) result(a introspection, out Outcome) (Identity, Outcome, error) {
	if a.err != nil {
		return Identity{}, out, a.err
	}
	if err := o.revoked.Check(a.id); err != nil {
		return Identity{}, out, err
	}
	return a.id, out, nil
}

// key is the cache key of tok: HMAC-SHA256 under a key nobody else
// holds, so neither the token nor a way to collide with it is stored.
func (o *OAuth2Introspect) key(tok string) [sha256.Size]byte {
	m := hmac.New(sha256.New, o.hashKey[:])
	m.Write([]byte(tok))
	var k [sha256.Size]byte
	m.Sum(k[:0])
	return k
}

// token returns the access token in r, or "".
func (o *OAuth2Introspect) token(r *http.Request) string {
	if o.source.Cookie != "" {
		if c, err := r.Cookie(o.source.Cookie); err == nil {
			return c.Value
		}
		return ""
	}
	v := r.Header.Get(o.source.Header)
	if !strings.EqualFold(o.source.Header, "Authorization") {
		return strings.TrimSpace(v)
	}
	const bearer = "bearer "
	if len(v) <= len(bearer) || !strings.EqualFold(v[:len(bearer)], bearer) {
		return ""
	}
	return strings.TrimSpace(v[len(bearer):])
}

// call asks the endpoint about tok and returns the answer and until when
// it may be cached.
func (o *OAuth2Introspect) call(ctx context.Context, tok string) (introspection, time.Time, error) {
	start := time.Now()
	a, until, err := o.ask(ctx, tok)
	if f := o.onCall.Load(); f != nil {
		(*f)(time.Since(start), err)
	}
	return a, until, err
}

func (o *OAuth2Introspect) ask(ctx context.Context, tok string) (introspection, time.Time, error) {
	// Detached from the first caller: others may be waiting on this call.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
	defer cancel()
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return introspection{}, time.Time{}, fmt.Errorf("%w: building introspection request: %v", ErrUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// RFC 6749 §2.3.1: the client id and secret are form-encoded before
	// they are joined for Basic.
	req.SetBasicAuth(url.QueryEscape(o.clientID), url.QueryEscape(o.secret))
	resp, err := o.client.Do(req)
	if err != nil {
		// The error of a failed Do quotes the URL, never the body: the
		// token is not in it. The endpoint's URL is configuration, but say
		// less anyway.
		if ctx.Err() != nil {
			return introspection{}, time.Time{}, fmt.Errorf("%w: introspection timed out after %v", ErrUnavailable, o.timeout)
		}
		return introspection{}, time.Time{}, fmt.Errorf("%w: introspection request failed", ErrUnavailable)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return introspection{}, time.Time{}, fmt.Errorf("%w: introspection answered status %d", ErrUnavailable, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxIntrospectionBytes+1))
	if err != nil {
		return introspection{}, time.Time{}, fmt.Errorf("%w: reading the introspection answer failed", ErrUnavailable)
	}
	if len(body) > maxIntrospectionBytes {
		return introspection{}, time.Time{}, fmt.Errorf("%w: introspection answer larger than %d bytes", ErrUnavailable, maxIntrospectionBytes)
	}
	return o.judge(body)
}

// judge turns an introspection answer into a cacheable decision.
func (o *OAuth2Introspect) judge(body []byte) (introspection, time.Time, error) {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return introspection{}, time.Time{}, fmt.Errorf("%w: introspection answer is not a JSON object", ErrUnavailable)
	}
	active, ok := m["active"].(bool)
	if !ok {
		return introspection{}, time.Time{}, fmt.Errorf(`%w: introspection answer has no boolean "active"`, ErrUnavailable)
	}
	now := o.now()
	deny := func(why string) (introspection, time.Time, error) {
		return introspection{err: fmt.Errorf("%w: %s", ErrUnauthenticated, why)}, now.Add(o.negativeTTL), nil
	}
	if !active {
		return deny("token not active")
	}
	claims, err := introspectionClaims(m)
	if err != nil {
		return deny(err.Error())
	}
	until := now.Add(o.ttl)
	if exp, ok := claims["exp"].(time.Time); ok {
		if !now.Before(exp) {
			return deny("token expired")
		}
		until = minTime(until, exp)
	}
	if nbf, ok := claims["nbf"].(time.Time); ok && now.Before(nbf) {
		return deny("token not valid yet")
	}
	if o.issuer != "" {
		if iss, _ := claims["iss"].(string); iss != o.issuer {
			return deny("wrong issuer")
		}
	}
	if o.audience != "" {
		aud, _ := claims["aud"].([]string)
		if !slices.Contains(aud, o.audience) {
			return deny("wrong audience")
		}
	}
	if o.scope != "" {
		scope, _ := claims["scope"].(string)
		if !slices.Contains(strings.Fields(scope), o.scope) {
			return deny("scope not granted")
		}
	}
	sub, err := subjectOf(o.subject, claims[o.subject])
	if err != nil {
		return introspection{err: err}, now.Add(o.negativeTTL), nil
	}
	id := Identity{Subject: sub, Claims: claims}
	id.SessionID, _ = claims["sid"].(string)
	if ext, ok := claims["ext"].(map[string]any); ok && id.SessionID == "" {
		// Ory Hydra puts a login session's sid in "ext", the session data
		// its consent added to the token, not at the top level.
		id.SessionID, _ = ext["sid"].(string)
	}
	id.TokenID, _ = claims["jti"].(string)
	id.IssuedAt, _ = claims["iat"].(time.Time)
	return introspection{id: id}, until, nil
}

// introspectionClaims gives an answer's members the types jwx gives JWT
// claims, so that policies read both alike: exp, iat and nbf become
// time.Time, aud a []string; other numbers are float64, as encoding/json
// decodes them. A registered member of the wrong type is an error.
func introspectionClaims(m map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(m))
	for k, v := range m {
		switch k {
		case "active":
			continue
		case "exp", "iat", "nbf":
			n, ok := v.(json.Number)
			f, err := n.Float64()
			if !ok || err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("answer's %q is not a number", k)
			}
			sec, frac := math.Modf(f)
			v = time.Unix(int64(sec), int64(frac*1e9)).UTC()
		case "aud":
			switch a := v.(type) {
			case string:
				v = []string{a}
			case []any:
				ss := make([]string, 0, len(a))
				for _, e := range a {
					s, ok := e.(string)
					if !ok {
						return nil, errors.New(`answer's "aud" is not a string or an array of strings`)
					}
					ss = append(ss, s)
				}
				v = ss
			default:
				return nil, errors.New(`answer's "aud" is not a string or an array of strings`)
			}
		default:
			v = plainNumbers(v)
		}
		out[k] = v
	}
	return out, nil
}

// plainNumbers replaces json.Number by float64 throughout v.
func plainNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = plainNumbers(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = plainNumbers(t[k])
		}
	}
	return v
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
