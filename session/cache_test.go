package session

import (
	"hash/maphash"
	"testing"
	"time"
	"unsafe"

	"github.com/lestrrat-go/jwx/v3/jwa"
)

// TestJWTCacheCollisionIsAMiss forces every token into one hash bucket,
// as someone who learnt the cache's seed could for chosen tokens: a token
// sharing a cached token's hash must be verified itself and answer with
// its own identity, never the cached one's, and the two only evict each
// other.
func TestJWTCacheCollisionIsAMiss(t *testing.T) {
	clk := newClock()
	j, err := NewJWT(JWTConfig{Secret: testSecret, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	j.cache.hash = func(maphash.Seed, string) uint64 { return 42 }
	alice := sign(t, jwa.HS256(), testSecret, "", claims("sub", "alice"))
	bob := sign(t, jwa.HS256(), testSecret, "", claims("sub", "bob"))
	forged := alice[:len(alice)-3] + "AAA" // alice's claims, a bad signature
	steps := []struct {
		tok     string
		subject string // "" for a refusal
		hit     bool
	}{
		{alice, "alice", false},
		{alice, "alice", true},
		{bob, "bob", false}, // same bucket as alice's entry: a miss, verified
		{bob, "bob", true},
		{forged, "", false}, // same bucket, bob's entry: verified, refused
		{bob, "bob", true},  // a refused token stores nothing
		{alice, "alice", false},
	}
	for i, s := range steps {
		id, out, err := j.Authenticate(bearer(s.tok), Image{})
		if id.Subject != s.subject || out.CacheHit != s.hit || (err == nil) != (s.subject != "") {
			t.Fatalf("step %d: subject %q, hit %v, err %v; want subject %q, hit %v", i, id.Subject, out.CacheHit, err, s.subject, s.hit)
		}
	}
}

// TestTokenCacheKeepsItsOwnCopy: the cached token is not a slice of the
// request's header, which it would keep in memory.
func TestTokenCacheKeepsItsOwnCopy(t *testing.T) {
	clk := newClock()
	c := newTokenCache[string](0)
	header := "session=abc; other=" + string(make([]byte, 4096))
	tok := header[len("session=") : len("session=")+3]
	c.add(tok, "v", clk.Now().Add(time.Hour), clk.Now())
	e, ok := c.c.get(c.hash(c.seed, "abc"), clk.Now())
	if !ok || e.tok != "abc" || unsafe.StringData(e.tok) == unsafe.StringData(tok) {
		t.Fatalf("cached token %q shares the header's memory (or is missing: %v)", e.tok, ok)
	}
}
