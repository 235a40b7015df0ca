package session

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// TokenSource names one place a JWT may come from. Exactly one field is set.
type TokenSource struct {
	// Cookie is the name of a cookie whose value is the token.
	Cookie string
	// Header is the name of a request header. For Authorization the value
	// must be "Bearer <token>"; any other header holds the bare token.
	Header string
}

// JWTConfig configures a [JWT] authenticator. Zero values mean the
// documented defaults. Exactly one of Secret, PublicKeyPEM and JWKS is set.
type JWTConfig struct {
	// Sources lists where the token may be, in order; the first source
	// present in the request is used and the others are ignored.
	// Default: the Authorization header.
	Sources []TokenSource
	// Secret is the HMAC key for HS256, HS384 and HS512, at least 32 bytes.
	Secret []byte
	// PublicKeyPEM is a PEM public key or certificate: RSA (RS*, PS*),
	// ECDSA P-256/384/521 (ES256/384/512) or Ed25519 (EdDSA).
	PublicKeyPEM []byte
	// JWKS supplies keys by key id: fetched from a URL ([NewJWKS]) or
	// discovered from the issuer ([NewDiscoveredJWKS]).
	JWKS *JWKS
	// Issuer, if set, must equal the iss claim.
	Issuer string
	// Audience, if set, must be one of the aud claim's values.
	Audience string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s;
	// negative means none.
	Leeway time.Duration
	// MaxTokenSize is the longest token, in bytes, that is even parsed.
	// Default 8 KiB.
	MaxTokenSize int
	// SubjectClaim names the claim that identifies the caller. Default
	// "sub", which must be a string (RFC 7519 §4.1.2); another claim may
	// also be an integer, as some providers use numeric user ids.
	SubjectClaim string
	// CacheSize bounds the verification cache (entries). A verified token
	// is remembered until its exp, so repeated requests skip the signature
	// check; a hit compares the whole token. Default 10000; negative
	// disables.
	CacheSize int
	// Revocations, if set, is consulted on every request, cached tokens
	// included: a revoked subject, sid or jti is ErrRevoked.
	Revocations *Revocations
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// JWT authenticates requests carrying a signed JSON Web Token. Parsing and
// signature verification are done by github.com/lestrrat-go/jwx/v3; this
// type chooses the key, pins the algorithm to the key type and maps
// failures onto the package's errors.
type JWT struct {
	sources   []TokenSource
	static    *verifyKey
	jwks      *JWKS
	validate  []jwt.ParseOption
	maxSize   int
	subject   string
	challenge string
	vary      []string
	cache     *tokenCache[Identity]
	revoked   *Revocations
	now       func() time.Time
}

// NewJWT validates cfg and returns the authenticator.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	j := &JWT{
		sources: cfg.Sources,
		jwks:    cfg.JWKS,
		maxSize: cfg.MaxTokenSize,
		subject: cfg.SubjectClaim,
		revoked: cfg.Revocations,
		now:     cfg.Now,
	}
	if len(j.sources) == 0 {
		j.sources = defaultTokenSources()
	}
	for _, s := range j.sources {
		if (s.Cookie == "") == (s.Header == "") {
			return nil, errors.New("sources: each token source names exactly one cookie or header")
		}
		if s.Cookie != "" && !validCookieName(s.Cookie) {
			// No browser can send it, and net/http would never find it.
			return nil, fmt.Errorf("sources: cookie name %q is not a valid cookie name", s.Cookie)
		}
		if strings.EqualFold(s.Header, "Authorization") {
			j.challenge = "Bearer"
		}
		if s.Cookie != "" {
			j.vary = varyList(j.vary, "Cookie")
		} else {
			j.vary = varyList(j.vary, s.Header)
		}
	}
	keys := 0
	if len(cfg.Secret) > 0 {
		keys++
		vk, err := newVerifyKey(cfg.Secret, "")
		if err != nil {
			return nil, fmt.Errorf("secret: %v", err)
		}
		j.static = vk
	}
	if len(cfg.PublicKeyPEM) > 0 {
		keys++
		pub, err := parsePublicKeyPEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("public key: %v", err)
		}
		vk, err := newVerifyKey(pub, "")
		if err != nil {
			return nil, fmt.Errorf("public key: %v", err)
		}
		j.static = vk
	}
	if cfg.JWKS != nil {
		keys++
	}
	if keys != 1 {
		return nil, errors.New("configure exactly one of secret, secret_file, public_key_file and jwks_url, or an issuer alone to discover its keys")
	}
	if j.maxSize <= 0 {
		j.maxSize = 8 << 10
	}
	if j.subject == "" {
		j.subject = "sub"
	}
	if j.now == nil {
		j.now = time.Now
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	} else if leeway < 0 {
		leeway = 0
	}
	j.cache = newTokenCache[Identity](cfg.CacheSize)
	j.validate = []jwt.ParseOption{
		jwt.WithValidate(true),
		jwt.WithAcceptableSkew(leeway),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return j.now() })),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
	}
	if cfg.Issuer != "" {
		j.validate = append(j.validate, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		j.validate = append(j.validate, jwt.WithAudience(cfg.Audience))
	}
	return j, nil
}

// defaultTokenSources is where a token is read when JWTConfig.Sources is
// empty.
func defaultTokenSources() []TokenSource { return []TokenSource{{Header: "Authorization"}} }

// Challenge returns "Bearer" when the token may come from the Authorization
// header, so that a 401 can carry WWW-Authenticate, and "" otherwise.
func (j *JWT) Challenge() string { return j.challenge }

// Vary returns the headers the token may be read from, derived from the
// configured sources (after defaults): Cookie once for any number of
// cookie sources, and each header source.
func (j *JWT) Vary() []string { return slices.Clone(j.vary) }

// Authenticate verifies the request's token. A missing, oversized, invalid
// or expired token is ErrUnauthenticated, a revoked one ErrRevoked; a JWKS
// that has never loaded is ErrUnavailable.
func (j *JWT) Authenticate(r *http.Request, _ Image) (Identity, Outcome, error) {
	tok := j.token(r)
	if tok == "" {
		return Identity{}, Outcome{}, fmt.Errorf("%w: no token", ErrUnauthenticated)
	}
	if len(tok) > j.maxSize {
		return Identity{}, Outcome{}, fmt.Errorf("%w: token larger than %d bytes", ErrUnauthenticated, j.maxSize)
	}
	now := j.now()
	if id, ok := j.cache.get(tok, now); ok {
		// A cached token is checked again: it may have been revoked since.
		if err := j.revoked.Check(id); err != nil {
			return Identity{}, Outcome{CacheHit: true}, err
		}
		return id, Outcome{CacheHit: true}, nil
	}
	id, exp, err := j.verify(r.Context(), tok)
	if err != nil {
		return Identity{}, Outcome{}, err
	}
	// Never cache past exp: after it the token must be rejected even though
	// the leeway would still accept it on a fresh check.
	j.cache.add(tok, id, exp, now)
	if err := j.revoked.Check(id); err != nil {
		return Identity{}, Outcome{}, err
	}
	return id, Outcome{}, nil
}

// token returns the token from the first source present in r, or "".
func (j *JWT) token(r *http.Request) string {
	for _, s := range j.sources {
		if s.Cookie != "" {
			if v, _ := cookieValue(r.Header, s.Cookie); v != "" {
				return v
			}
			continue
		}
		v := r.Header.Get(s.Header)
		if v == "" {
			continue
		}
		if strings.EqualFold(s.Header, "Authorization") {
			// Another scheme (Basic, …) belongs to someone else: skip it.
			const bearer = "bearer "
			if len(v) <= len(bearer) || !strings.EqualFold(v[:len(bearer)], bearer) {
				continue
			}
			v = strings.TrimSpace(v[len(bearer):])
		}
		if v != "" {
			return v
		}
	}
	return ""
}

// verify checks tok's signature and claims and returns the identity with
// the token's expiry.
func (j *JWT) verify(ctx context.Context, tok string) (Identity, time.Time, error) {
	// Read alg and kid from the protected header to choose the key. The
	// header is not trusted: the key decides which algorithms are allowed,
	// and jwx checks the signature with exactly the algorithm chosen here.
	hdr, _, _, err := jwsbb.SplitCompactString(tok)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	h := jwsbb.HeaderParseCompact(hdr)
	algName, err := jwsbb.HeaderGetString(h, "alg")
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: token header has no algorithm", ErrUnauthenticated)
	}
	vk := j.static
	if vk == nil {
		kid, _ := jwsbb.HeaderGetString(h, "kid")
		if vk, err = j.jwks.key(ctx, kid); err != nil {
			return Identity{}, time.Time{}, err
		}
	}
	alg, ok := vk.alg(algName)
	if !ok {
		// The header is the caller's text: name it only if it is an
		// algorithm at all.
		named := "an unknown algorithm"
		if _, known := jwa.LookupSignatureAlgorithm(algName); known {
			named = "algorithm " + strconv.Quote(algName)
		}
		return Identity{}, time.Time{}, fmt.Errorf("%w: %s not allowed for this key", ErrUnauthenticated, named)
	}
	opts := make([]jwt.ParseOption, 0, len(j.validate)+1)
	opts = append(opts, jwt.WithKey(alg, vk.key))
	opts = append(opts, j.validate...)
	t, err := jwt.ParseString(tok, opts...)
	if err != nil {
		return Identity{}, time.Time{}, fmt.Errorf("%w: %s", ErrUnauthenticated, reason(err, tok))
	}
	exp, _ := t.Expiration() // required by validation
	claims := make(map[string]any, len(t.Keys()))
	for _, k := range t.Keys() {
		var v any
		if err := t.Get(k, &v); err == nil {
			claims[k] = v
		}
	}
	sub, err := subjectOf(j.subject, claims[j.subject])
	if err != nil {
		return Identity{}, time.Time{}, err
	}
	id := Identity{Subject: sub, Claims: claims}
	id.SessionID, _ = claims["sid"].(string)
	id.TokenID, _ = t.JwtID()
	id.IssuedAt, _ = t.IssuedAt()
	return id, exp, nil
}

// reason names why jwx rejected tok without repeating any of it.
func reason(err error, tok string) string {
	switch {
	case errors.Is(err, jws.VerifyError()), errors.Is(err, jws.VerificationError()):
		return "invalid signature"
	case errors.Is(err, jwt.TokenExpiredError()):
		return "token expired"
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return "token not valid yet"
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return "token issued in the future"
	case errors.Is(err, jwt.InvalidIssuerError()):
		if errors.Is(err, jwt.ClaimNotFoundError()) {
			return `token has no issuer claim "iss"`
		}
		return "wrong issuer"
	case errors.Is(err, jwt.InvalidAudienceError()):
		if errors.Is(err, jwt.ClaimNotFoundError()) {
			return `token has no audience claim "aud"`
		}
		return "wrong audience"
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		// exp is the only claim NewJWT requires.
		return `token has no expiry claim "exp"`
	case errors.Is(err, jwt.ValidateError()):
		return "invalid claims"
	}
	// jwx verifies the signature before it decodes the claims, so what is
	// left is a signed claim set that jwx cannot decode: say which claim.
	return claimsProblem(tok)
}

// registeredClaims are the claims jwx decodes into fixed types, with the
// name used in errors and a check of the JSON value's type.
var registeredClaims = []struct {
	key, name string
	ok        func(any) bool
	want      string
}{
	{"sub", "subject", isString, "a string"},
	{"iss", "issuer", isString, "a string"},
	{"aud", "audience", isStringOrStrings, "a string or an array of strings"},
	{"exp", "expiry", isNumericDate, "a number"},
	{"nbf", "not-before", isNumericDate, "a number"},
	{"iat", "issued-at", isNumericDate, "a number"},
	{"jti", "token id", isString, "a string"},
}

// claimsProblem decodes tok's claim set and names the first registered
// claim whose type jwx refuses.
func claimsProblem(tok string) string {
	_, payload, _, err := jwsbb.SplitCompactString(tok)
	if err != nil {
		return "malformed token"
	}
	raw, err := base64.RawURLEncoding.DecodeString(string(payload))
	if err != nil {
		return "malformed token: claims are not base64url"
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var claims map[string]any
	if err := d.Decode(&claims); err != nil {
		return "malformed token: claims are not a JSON object"
	}
	for _, c := range registeredClaims {
		if v, ok := claims[c.key]; ok && !c.ok(v) {
			return fmt.Sprintf("%s claim %q is not %s", c.name, c.key, c.want)
		}
	}
	return "malformed token: claims not understood"
}

func isString(v any) bool {
	_, ok := v.(string)
	return ok
}

func isStringOrStrings(v any) bool {
	switch v := v.(type) {
	case string:
		return true
	case []any:
		for _, e := range v {
			if !isString(e) {
				return false
			}
		}
		return true
	}
	return false
}

// isNumericDate accepts what jwx accepts for a time claim: a number, or a
// string holding a number or an RFC 3339 time.
func isNumericDate(v any) bool {
	switch v := v.(type) {
	case json.Number:
		return true
	case string:
		if _, err := strconv.ParseFloat(v, 64); err == nil {
			return true
		}
		_, err := time.Parse(time.RFC3339, v)
		return err == nil
	}
	return false
}

// subjectOf returns the subject held in the claim named name: a
// non-empty string, or an integral number (some providers use numeric user
// ids in a custom claim; the registered sub claim is always a string, as
// jwx enforces while parsing).
func subjectOf(name string, v any) (string, error) {
	why := "is not a string or an integer"
	switch s := v.(type) {
	case nil:
		return "", fmt.Errorf("%w: token has no subject claim %q", ErrUnauthenticated, name)
	case string:
		if s != "" {
			return s, nil
		}
		why = "is empty"
	case float64:
		if s == math.Trunc(s) && math.Abs(s) < 1<<53 {
			return strconv.FormatInt(int64(s), 10), nil
		}
		why = "is not an integer"
	case json.Number:
		if _, err := s.Int64(); err == nil {
			return s.String(), nil
		}
		why = "is not an integer"
	}
	return "", fmt.Errorf("%w: subject claim %q %s", ErrUnauthenticated, name, why)
}
