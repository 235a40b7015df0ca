package session

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrRevoked is the error of a caller whose session was revoked (an admin
// revocation, a back-channel logout). It wraps ErrUnauthenticated, so the
// verdict is Unauthenticated (401) like any invalid session; test for it
// with errors.Is to count revoked refusals apart.
var ErrRevoked = fmt.Errorf("%w: session revoked", ErrUnauthenticated)

// RevocationKind says what a [Revocation] matches.
type RevocationKind string

// The kinds of revocation.
const (
	// RevokeSubject refuses every token of a subject issued (iat) at or
	// before the revocation: "alice is logged out everywhere". A token
	// issued later, a new login, works again.
	RevokeSubject RevocationKind = "sub"
	// RevokeSession refuses every token whose sid claim is the value: one
	// login session (OpenID Connect Front/Back-Channel Logout's sid).
	RevokeSession RevocationKind = "sid"
	// RevokeToken refuses the token whose jti claim is the value.
	RevokeToken RevocationKind = "jti"
)

// Revocation sources, for Revocation.Source and a metric label.
const (
	SourceAdmin       = "admin"
	SourceBackchannel = "backchannel"
)

// Revocation is one entry of a [Revocations] set.
type Revocation struct {
	// Kind says whether Value is a subject, a session id or a token id.
	Kind RevocationKind `json:"kind"`
	// Value is the subject, sid or jti revoked.
	Value string `json:"value"`
	// At is when the revocation was recorded. For RevokeSubject, tokens
	// issued at or before At are refused.
	At time.Time `json:"at"`
	// Expires is when the entry is forgotten: At plus the longest token
	// lifetime the sessions accept, after which every token it could
	// refuse has expired anyway.
	Expires time.Time `json:"expires"`
	// Source is who asked: SourceAdmin or SourceBackchannel.
	Source string `json:"source,omitempty"`
}

// valid reports whether r names something to revoke.
func (r Revocation) valid() error {
	switch r.Kind {
	case RevokeSubject, RevokeSession, RevokeToken:
	default:
		return fmt.Errorf("revocation: unknown kind %q (want sub, sid or jti)", r.Kind)
	}
	if r.Value == "" {
		return fmt.Errorf("revocation: empty %s", r.Kind)
	}
	if len(r.Value) > maxRevocationValue {
		return fmt.Errorf("revocation: %s longer than %d bytes", r.Kind, maxRevocationValue)
	}
	return nil
}

// maxRevocationValue bounds a revoked subject, sid or jti; real ones are
// a few dozen bytes.
const maxRevocationValue = 1024

// DefaultRevocationTTL is how long a revocation lasts when
// RevocationsConfig.TTL is zero: longer than the lifetime of the access
// and ID tokens of common identity providers (minutes to an hour).
const DefaultRevocationTTL = 24 * time.Hour

// RevocationsConfig configures a [Revocations] set.
type RevocationsConfig struct {
	// TTL is how long an entry lasts: it must be at least the longest
	// lifetime (exp - iat) of a token the sessions accept, or a token
	// could outlive its revocation. Default DefaultRevocationTTL.
	TTL time.Duration
	// OnAdd, if set, is called after Add records an entry (not after
	// Apply): the place to publish it to other replicas and count it. It
	// must not block.
	OnAdd func(Revocation)
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Revocations is the set of revoked subjects, sessions and tokens that
// the [JWT] and [OAuth2Introspect] authenticators consult on every
// request, cached answers included, so a revocation bites at the next
// request. Entries are forgotten after the TTL.
//
// The set is in memory: it is per process unless its owner feeds it the
// entries of other replicas through Apply (e.g. from Redis Pub/Sub) and
// publishes its own from OnAdd.
//
// Reads take no lock: the set is an immutable snapshot replaced as a
// whole on each change, since changes are rare and checks are on every
// request. It is safe for concurrent use.
type Revocations struct {
	ttl   time.Duration
	onAdd func(Revocation)
	now   func() time.Time

	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[revocationSnapshot]
}

// revocationSnapshot is one immutable generation of the set.
type revocationSnapshot struct {
	entries map[revocationKey]Revocation
}

type revocationKey struct {
	kind  RevocationKind
	value string
}

// NewRevocations returns an empty set.
func NewRevocations(cfg RevocationsConfig) *Revocations {
	r := &Revocations{ttl: cfg.TTL, onAdd: cfg.OnAdd, now: cfg.Now}
	if r.ttl <= 0 {
		r.ttl = DefaultRevocationTTL
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.snap.Store(&revocationSnapshot{})
	return r
}

// TTL returns how long an entry lasts.
func (r *Revocations) TTL() time.Duration { return r.ttl }

// Add records a revocation of kind for value now, from source, and
// returns the entry as recorded. A later revocation of the same subject
// moves its At forward; one of a sid or jti already revoked extends it.
func (r *Revocations) Add(kind RevocationKind, value, source string) (Revocation, error) {
	now := r.now()
	rev := Revocation{Kind: kind, Value: value, At: now, Expires: now.Add(r.ttl), Source: source}
	if err := rev.valid(); err != nil {
		return Revocation{}, err
	}
	r.Apply(rev)
	if r.onAdd != nil {
		r.onAdd(rev)
	}
	return rev, nil
}

// Apply records entries made elsewhere (another replica, a store loaded
// after a reconnect) without calling OnAdd. Invalid or expired entries
// are ignored; for an entry already present, the later At and Expires
// win, so applying the same entries twice, or out of order, is harmless.
func (r *Revocations) Apply(revs ...Revocation) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.snap.Load()
	next := &revocationSnapshot{entries: make(map[revocationKey]Revocation, len(old.entries)+len(revs))}
	for k, e := range old.entries {
		if now.Before(e.Expires) {
			next.entries[k] = e
		}
	}
	for _, rev := range revs {
		if rev.valid() != nil || !now.Before(rev.Expires) {
			continue
		}
		k := revocationKey{rev.Kind, rev.Value}
		if cur, ok := next.entries[k]; ok {
			if cur.At.After(rev.At) {
				rev.At, rev.Source = cur.At, cur.Source
			}
			if cur.Expires.After(rev.Expires) {
				rev.Expires = cur.Expires
			}
		}
		next.entries[k] = rev
	}
	r.snap.Store(next)
}

// List returns the live entries, oldest first.
func (r *Revocations) List() []Revocation {
	now := r.now()
	s := r.snap.Load()
	out := make([]Revocation, 0, len(s.entries))
	for _, e := range s.entries {
		if now.Before(e.Expires) {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b Revocation) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		if a.Kind != b.Kind {
			if a.Kind < b.Kind {
				return -1
			}
			return 1
		}
		if a.Value < b.Value {
			return -1
		}
		if a.Value > b.Value {
			return 1
		}
		return 0
	})
	return out
}

// Check returns an error wrapping ErrRevoked if id is revoked: its
// subject was revoked after its token was issued (a token without an
// issue time counts as issued before), or its session id or token id was
// revoked. It returns nil otherwise, at the cost of an atomic load when
// the set is empty.
func (r *Revocations) Check(id Identity) error {
	if r == nil {
		return nil
	}
	s := r.snap.Load()
	if len(s.entries) == 0 {
		return nil
	}
	now := r.now()
	if id.Subject != "" {
		if e, ok := s.entries[revocationKey{RevokeSubject, id.Subject}]; ok && now.Before(e.Expires) {
			// iat has whole seconds: a token issued in the same second as
			// the revocation is refused, since it may be older than it.
			if id.IssuedAt.IsZero() || !id.IssuedAt.After(e.At) {
				return fmt.Errorf("%w: subject logged out", ErrRevoked)
			}
		}
	}
	if id.SessionID != "" {
		if e, ok := s.entries[revocationKey{RevokeSession, id.SessionID}]; ok && now.Before(e.Expires) {
			return fmt.Errorf("%w: session logged out", ErrRevoked)
		}
	}
	if id.TokenID != "" {
		if e, ok := s.entries[revocationKey{RevokeToken, id.TokenID}]; ok && now.Before(e.Expires) {
			return fmt.Errorf("%w: token revoked", ErrRevoked)
		}
	}
	return nil
}

// RevocationRequest is the body of an admin revocation, as JSON:
// {"sub": "alice"}, {"sid": "…"} or {"jti": "…"}; several fields record
// one entry each.
type RevocationRequest struct {
	Subject   string `json:"sub,omitempty"`
	SessionID string `json:"sid,omitempty"`
	TokenID   string `json:"jti,omitempty"`
}

// Revoke records every entry req names, from source, and returns them as
// recorded. A request naming nothing, or a value too long, records
// nothing and is an error safe to show the caller.
func (r *Revocations) Revoke(req RevocationRequest, source string) ([]Revocation, error) {
	var todo []Revocation
	for _, c := range []struct {
		kind  RevocationKind
		value string
	}{{RevokeSubject, req.Subject}, {RevokeSession, req.SessionID}, {RevokeToken, req.TokenID}} {
		if c.value == "" {
			continue
		}
		rev := Revocation{Kind: c.kind, Value: c.value}
		if err := rev.valid(); err != nil {
			return nil, err
		}
		todo = append(todo, rev)
	}
	if len(todo) == 0 {
		return nil, errors.New("revocation: name a sub, sid or jti")
	}
	out := make([]Revocation, 0, len(todo))
	for _, t := range todo {
		rev, err := r.Add(t.Kind, t.Value, source)
		if err != nil {
			return out, err
		}
		out = append(out, rev)
	}
	return out, nil
}
