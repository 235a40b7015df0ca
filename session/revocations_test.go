package session

import (
	"errors"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

func TestRevocationsCheck(t *testing.T) {
	clk := newClock()
	var added []Revocation
	r := NewRevocations(RevocationsConfig{TTL: time.Hour, Now: clk.Now, OnAdd: func(rev Revocation) { added = append(added, rev) }})
	old := Identity{Subject: "alice", IssuedAt: t0.Add(-time.Minute)}
	if err := r.Check(old); err != nil {
		t.Fatalf("empty set: %v", err)
	}
	if _, err := r.Revoke(RevocationRequest{Subject: "alice"}, SourceAdmin); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		id   Identity
		want bool // revoked
	}{
		{"issued before", old, true},
		{"issued the same second", Identity{Subject: "alice", IssuedAt: t0}, true},
		{"no iat", Identity{Subject: "alice"}, true},
		{"issued after (a new login)", Identity{Subject: "alice", IssuedAt: t0.Add(time.Second)}, false},
		{"someone else", Identity{Subject: "bob", IssuedAt: t0.Add(-time.Minute)}, false},
	} {
		err := r.Check(c.id)
		if got := errors.Is(err, ErrRevoked); got != c.want {
			t.Errorf("%s: %v, want revoked=%v", c.name, err, c.want)
		}
		if c.want && Classify(err) != Unauthenticated {
			t.Errorf("%s: verdict %v, want Unauthenticated", c.name, Classify(err))
		}
	}
	if _, err := r.Revoke(RevocationRequest{SessionID: "s1", TokenID: "j1"}, SourceBackchannel); err != nil {
		t.Fatal(err)
	}
	if err := r.Check(Identity{Subject: "bob", SessionID: "s1"}); !errors.Is(err, ErrRevoked) {
		t.Errorf("sid: %v", err)
	}
	if err := r.Check(Identity{Subject: "bob", TokenID: "j1"}); !errors.Is(err, ErrRevoked) {
		t.Errorf("jti: %v", err)
	}
	if err := r.Check(Identity{Subject: "bob", SessionID: "s2", TokenID: "j2"}); err != nil {
		t.Errorf("other sid and jti: %v", err)
	}
	if len(added) != 3 || added[0].Source != SourceAdmin || added[2].Kind != RevokeToken {
		t.Fatalf("OnAdd saw %+v", added)
	}
	if got := r.List(); len(got) != 3 {
		t.Fatalf("List = %+v", got)
	}
	// Entries are forgotten after the TTL.
	clk.Add(time.Hour)
	if err := r.Check(old); err != nil {
		t.Errorf("after the TTL: %v", err)
	}
	if got := r.List(); len(got) != 0 {
		t.Errorf("List after the TTL = %+v", got)
	}
}

func TestRevocationsApply(t *testing.T) {
	clk := newClock()
	calls := 0
	r := NewRevocations(RevocationsConfig{TTL: time.Hour, Now: clk.Now, OnAdd: func(Revocation) { calls++ }})
	later := Revocation{Kind: RevokeSubject, Value: "alice", At: t0.Add(time.Minute), Expires: t0.Add(time.Hour)}
	earlier := Revocation{Kind: RevokeSubject, Value: "alice", At: t0, Expires: t0.Add(2 * time.Hour)}
	r.Apply(later, earlier, later,
		Revocation{Kind: "bogus", Value: "x", Expires: t0.Add(time.Hour)},
		Revocation{Kind: RevokeToken, Value: "gone", At: t0.Add(-2 * time.Hour), Expires: t0.Add(-time.Hour)})
	got := r.List()
	if calls != 0 {
		t.Errorf("Apply called OnAdd %d times", calls)
	}
	if len(got) != 1 || !got[0].At.Equal(later.At) || !got[0].Expires.Equal(earlier.Expires) {
		t.Fatalf("List = %+v, want alice with the later At and Expires", got)
	}
	if err := r.Check(Identity{Subject: "alice", IssuedAt: t0.Add(30 * time.Second)}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("issued between the two revocations: %v", err)
	}
}

func TestRevokeRequest(t *testing.T) {
	r := NewRevocations(RevocationsConfig{})
	if _, err := r.Revoke(RevocationRequest{}, SourceAdmin); err == nil {
		t.Error("empty request: want error")
	}
	long := string(make([]byte, maxRevocationValue+1))
	if _, err := r.Revoke(RevocationRequest{Subject: "alice", TokenID: long}, SourceAdmin); err == nil {
		t.Error("too long: want error")
	}
	if n := len(r.List()); n != 0 {
		t.Errorf("a refused request recorded %d entries", n)
	}
	if _, err := r.Add("nope", "x", SourceAdmin); err == nil {
		t.Error("unknown kind: want error")
	}
}

func TestJWTRevoked(t *testing.T) {
	// A verified token is cached; a revocation refuses it at the next
	// request all the same, and a token issued after a subject's
	// revocation works.
	clk := newClock()
	rev := NewRevocations(RevocationsConfig{Now: clk.Now})
	j, err := NewJWT(JWTConfig{Secret: testSecret, Revocations: rev, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwa.HS256(), testSecret, "", claims("sid", "s1", "jti", "j1"))
	g := NewGate(j, nil)
	for range 2 {
		if d := g.Image(bearer(tok), Image{ID: "x"}); d.Verdict != Allowed {
			t.Fatalf("before: %+v", d)
		}
	}
	for _, req := range []RevocationRequest{{Subject: "alice"}, {SessionID: "s1"}, {TokenID: "j1"}} {
		rev2 := NewRevocations(RevocationsConfig{Now: clk.Now})
		j2, _ := NewJWT(JWTConfig{Secret: testSecret, Revocations: rev2, Now: clk.Now})
		g2 := NewGate(j2, nil)
		if d := g2.Image(bearer(tok), Image{ID: "x"}); d.Verdict != Allowed {
			t.Fatalf("%+v: before: %+v", req, d)
		}
		if _, err := rev2.Revoke(req, SourceAdmin); err != nil {
			t.Fatal(err)
		}
		d := g2.Image(bearer(tok), Image{ID: "x"})
		if d.Verdict != Unauthenticated || !errors.Is(d.Err, ErrRevoked) || !d.CacheHit {
			t.Fatalf("%+v: cached and revoked: %+v", req, d)
		}
	}
	if _, err := rev.Revoke(RevocationRequest{Subject: "alice"}, SourceAdmin); err != nil {
		t.Fatal(err)
	}
	if d := g.Image(bearer(tok), Image{ID: "x"}); !errors.Is(d.Err, ErrRevoked) {
		t.Fatalf("revoked: %+v", d)
	}
	clk.Add(time.Second)
	fresh := sign(t, jwa.HS256(), testSecret, "", claims("iat", clk.Now(), "sid", "s2", "jti", "j2"))
	if d := g.Image(bearer(fresh), Image{ID: "x"}); d.Verdict != Allowed {
		t.Fatalf("a new login: %+v", d)
	}
}
