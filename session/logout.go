package session

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/lestrrat-go/jwx/v3/jws/jwsbb"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// backchannelLogoutEvent is the member of a logout token's events claim
// that makes it one (OpenID Connect Back-Channel Logout 1.0 §2.4).
const backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"

// maxLogoutRequest bounds the form body of a logout request.
const maxLogoutRequest = 64 << 10

// BackchannelLogoutConfig configures a [BackchannelLogout].
type BackchannelLogoutConfig struct {
	// Issuer must equal the logout token's iss. Required.
	Issuer string
	// Audience must be among the logout token's aud: the client id the
	// gateway (or the application it fronts) is registered under at the
	// identity provider. Required.
	Audience string
	// JWKS holds the issuer's signing keys, the ones that sign its ID
	// tokens. Required.
	JWKS *JWKS
	// Revocations records the logouts. Required.
	Revocations *Revocations
	// Leeway is the clock skew allowed on exp and iat. Default 30s;
	// negative means none.
	Leeway time.Duration
	// MaxTokenSize is the longest logout token, in bytes, that is even
	// parsed. Default 8 KiB.
	MaxTokenSize int
	// MaxAge bounds a logout token that has no exp: it is accepted only
	// if issued (iat) at most MaxAge ago, and is then treated as expiring
	// MaxAge after iat. §2.4 requires exp, but Ory Hydra v2.3.0 sends
	// none; MaxAge gives such a token the short lifetime OWASP ASVS 10.5.5
	// asks for. Default 2m; negative refuses tokens without exp.
	MaxAge time.Duration
	// OnResult, if set, is called after each request ServeHTTP handled
	// with the entry recorded or the reason it was refused (an error that
	// never quotes the token), for a log line. It must not block.
	OnResult func(rev Revocation, err error)
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// BackchannelLogout receives OpenID Connect Back-Channel Logout 1.0
// requests: the identity provider POSTs a form with logout_token, a JWT
// naming a user (sub) or a login session (sid) that has logged out.
// ServeHTTP validates it as §2.6 says and records the logout in the
// Revocations: the sid if the token has one (that session ends), else the
// sub (every session of that user issued until now ends).
type BackchannelLogout struct {
	issuer   string
	audience string
	jwks     *JWKS
	revoked  *Revocations
	maxSize  int
	maxAge   time.Duration // 0: exp required
	leeway   time.Duration
	validate []jwt.ParseOption
	onResult func(Revocation, error)
	now      func() time.Time
	// seen remembers the jti of each accepted token until its exp, so a
	// replayed token is refused (§2.6 step 8 allows it).
	seen *ttlCache[[sha256.Size]byte, struct{}]
}

// NewBackchannelLogout validates cfg and returns the receiver.
func NewBackchannelLogout(cfg BackchannelLogoutConfig) (*BackchannelLogout, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("backchannel logout: the issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("backchannel logout: the audience (client id) is required")
	case cfg.JWKS == nil:
		return nil, errors.New("backchannel logout: the issuer's keys (a jwks url or discovery) are required")
	case cfg.Revocations == nil:
		return nil, errors.New("backchannel logout: no revocation set")
	}
	b := &BackchannelLogout{
		issuer:   cfg.Issuer,
		audience: cfg.Audience,
		jwks:     cfg.JWKS,
		revoked:  cfg.Revocations,
		maxSize:  cfg.MaxTokenSize,
		onResult: cfg.OnResult,
		now:      cfg.Now,
		seen:     newTTLCache[[sha256.Size]byte, struct{}](0),
	}
	if b.maxSize <= 0 {
		b.maxSize = 8 << 10
	}
	b.maxAge = ttlOrDefault(cfg.MaxAge, 2*time.Minute)
	if b.now == nil {
		b.now = time.Now
	}
	leeway := cfg.Leeway
	if leeway == 0 {
		leeway = 30 * time.Second
	} else if leeway < 0 {
		leeway = 0
	}
	b.leeway = leeway
	b.validate = []jwt.ParseOption{
		jwt.WithValidate(true),
		jwt.WithAcceptableSkew(leeway),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return b.now() })),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithRequiredClaim(jwt.IssuedAtKey),
		jwt.WithRequiredClaim(jwt.JwtIDKey),
	}
	return b, nil
}

// LogoutToken is what a valid logout token says.
type LogoutToken struct {
	// Subject and SessionID are the token's sub and sid; at least one is
	// set.
	Subject, SessionID string
	// ID is the token's jti.
	ID string
	// Expires is the token's exp.
	Expires time.Time
}

// Validate checks a logout token as OpenID Connect Back-Channel Logout
// 1.0 §2.6 says: a signature by one of the issuer's keys (with the
// algorithm the key allows), iss, aud, iat, exp (or, without exp, an iat
// within MaxAge) and jti, the events claim
// holding the back-channel-logout member as a JSON object, no nonce, sub
// or sid, a typ header of logout+jwt if there is one (plain JWT is
// accepted from providers that predate explicit typing), and a jti not
// seen before. Its error wraps ErrUnauthenticated (ErrUnavailable when the
// issuer's keys have never loaded) and never quotes the token. A valid
// token's jti is remembered until its exp.
func (b *BackchannelLogout) Validate(ctx context.Context, tok string) (LogoutToken, error) {
	bad := func(why string) (LogoutToken, error) {
		return LogoutToken{}, fmt.Errorf("%w: logout token: %s", ErrUnauthenticated, why)
	}
	if tok == "" {
		return bad("missing")
	}
	if len(tok) > b.maxSize {
		return bad("too large")
	}
	hdr, _, _, err := jwsbb.SplitCompactString(tok)
	if err != nil {
		return bad("malformed")
	}
	h := jwsbb.HeaderParseCompact(hdr)
	if typ, err := jwsbb.HeaderGetString(h, "typ"); err == nil {
		// §2.4 recommends explicit typing; "JWT" is what providers sent
		// before it. Any other type is a token meant for something else.
		switch typ {
		case "logout+jwt", "application/logout+jwt", "JWT", "jwt":
		default:
			return bad("typ is not logout+jwt")
		}
	}
	algName, err := jwsbb.HeaderGetString(h, "alg")
	if err != nil {
		return bad("no algorithm")
	}
	kid, _ := jwsbb.HeaderGetString(h, "kid")
	vk, err := b.jwks.key(ctx, kid)
	if err != nil {
		return LogoutToken{}, fmt.Errorf("logout token: %w", err)
	}
	alg, ok := vk.alg(algName)
	if !ok {
		return bad("algorithm not allowed for the issuer's key")
	}
	opts := make([]jwt.ParseOption, 0, len(b.validate)+1)
	opts = append(opts, jwt.WithKey(alg, vk.key))
	opts = append(opts, b.validate...)
	t, err := jwt.ParseString(tok, opts...)
	if err != nil {
		if errors.Is(err, jwt.MissingRequiredClaimError()) {
			return bad("iat or jti missing")
		}
		return bad(reason(err, tok))
	}
	var events map[string]any
	if err := t.Get("events", &events); err != nil {
		return bad("no events claim")
	}
	if ev, ok := events[backchannelLogoutEvent]; !ok {
		return bad("events claim has no back-channel logout event")
	} else if _, ok := ev.(map[string]any); !ok {
		return bad("back-channel logout event is not a JSON object")
	}
	if t.Has("nonce") {
		return bad("has a nonce")
	}
	var lt LogoutToken
	lt.Subject, _ = t.Subject()
	if t.Has("sid") {
		if err := t.Get("sid", &lt.SessionID); err != nil {
			return bad("sid is not a string")
		}
	}
	if lt.Subject == "" && lt.SessionID == "" {
		return bad("neither sub nor sid")
	}
	lt.ID, _ = t.JwtID()
	if lt.ID == "" {
		return bad("empty jti")
	}
	now := b.now()
	var hasExp bool
	if lt.Expires, hasExp = t.Expiration(); !hasExp {
		iat, _ := t.IssuedAt() // required above
		lt.Expires = iat.Add(b.maxAge)
		if b.maxAge <= 0 || now.After(lt.Expires.Add(b.leeway)) {
			return bad("no exp, and not issued recently enough to do without")
		}
	}
	// Replays are refused for as long as the token itself is valid, plus
	// a margin over the leeway.
	key := sha256.Sum256([]byte(b.issuer + "\x00" + lt.ID))
	if _, ok := b.seen.get(key, now); ok {
		return bad("jti already used")
	}
	b.seen.add(key, struct{}{}, lt.Expires.Add(time.Minute), now)
	return lt, nil
}

// Logout validates tok and records the logout it asks for: the session
// if the token names one, else the subject.
func (b *BackchannelLogout) Logout(ctx context.Context, tok string) (Revocation, error) {
	lt, err := b.Validate(ctx, tok)
	if err != nil {
		return Revocation{}, err
	}
	if lt.SessionID != "" {
		return b.revoked.Add(RevokeSession, lt.SessionID, SourceBackchannel)
	}
	return b.revoked.Add(RevokeSubject, lt.Subject, SourceBackchannel)
}

// ServeHTTP answers a back-channel logout request (§2.8): 200 with
// Cache-Control: no-store when the logout token is valid and recorded,
// 400 with {"error":"invalid_request"} when it is not, and 405 to a
// method other than POST; 503 with Retry-After while the issuer's keys
// have never loaded, so the provider retries instead of giving up. The
// reason for a 400 is not sent: OnResult gets it.
func (b *BackchannelLogout) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutRequest)
	var rev Revocation
	err := r.ParseForm()
	if err != nil {
		err = fmt.Errorf("%w: logout request: unreadable form", ErrUnauthenticated)
	} else {
		rev, err = b.Logout(r.Context(), r.PostForm.Get("logout_token"))
	}
	if b.onResult != nil {
		b.onResult(rev, err)
	}
	if err != nil {
		if Classify(err) == Unavailable {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		invalidLogoutRequest(w)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func invalidLogoutRequest(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
}
