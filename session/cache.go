package session

import (
	"hash/maphash"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// ttlCache is a bounded LRU whose entries each carry their own expiry, since
// a token's exp or an app's max-age differ per entry. A nil *ttlCache is a
// disabled cache: it never hits and stores nothing.
type ttlCache[K comparable, V any] struct {
	lru *lru.Cache[K, ttlEntry[V]]
}

type ttlEntry[V any] struct {
	v   V
	exp time.Time
}

// defaultCacheSize is the bound of every cache whose configured size is 0.
const defaultCacheSize = 10000

// newTTLCache returns a cache holding at most size entries (0 means
// defaultCacheSize), or nil (disabled) when size is negative.
func newTTLCache[K comparable, V any](size int) *ttlCache[K, V] {
	if size == 0 {
		size = defaultCacheSize
	}
	if size < 0 {
		return nil
	}
	c, err := lru.New[K, ttlEntry[V]](size)
	if err != nil { // only for size <= 0, excluded above
		panic(err)
	}
	return &ttlCache[K, V]{lru: c}
}

// get returns the value for k if it is present and not expired at now.
// Expired entries are left for the LRU to evict or for add to overwrite:
// removing one here could race with a concurrent add of a fresh entry.
func (c *ttlCache[K, V]) get(k K, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	e, ok := c.lru.Get(k)
	if !ok || !now.Before(e.exp) {
		return zero, false
	}
	return e.v, true
}

// add stores v for k until exp. Entries that are already expired are not
// stored.
func (c *ttlCache[K, V]) add(k K, v V, exp, now time.Time) {
	if c == nil || !now.Before(exp) {
		return
	}
	c.lru.Add(k, ttlEntry[V]{v: v, exp: exp})
}

// tokenCache is a ttlCache of values per bearer credential (a token),
// cheap enough to consult on every request. It is keyed by a 64-bit
// maphash of the token under a random seed of its own (a few nanoseconds,
// where SHA-256 of a token and the copy to hash it cost more than the rest
// of the lookup), and each entry keeps the token itself: a hit compares
// the whole token, so two tokens sharing a hash, by chance or chosen by
// someone who learnt the seed, only evict each other. A caller never gets
// the value stored for another token. A nil *tokenCache is disabled.
//
// Only verified tokens are stored, so its memory is the cached tokens'
// own length (bounded by the authenticator's maximum token size) per
// entry, plus the value.
type tokenCache[V any] struct {
	c    *ttlCache[uint64, tokenEntry[V]]
	seed maphash.Seed
	// hash is maphash.String; a test replaces it to force collisions.
	hash func(maphash.Seed, string) uint64
}

type tokenEntry[V any] struct {
	tok string
	v   V
}

// newTokenCache returns a cache holding at most size entries (0 means
// defaultCacheSize), or nil (disabled) when size is negative.
func newTokenCache[V any](size int) *tokenCache[V] {
	c := newTTLCache[uint64, tokenEntry[V]](size)
	if c == nil {
		return nil
	}
	return &tokenCache[V]{c: c, seed: maphash.MakeSeed(), hash: maphash.String}
}

// get returns the value stored for exactly tok if it is not expired at now.
func (c *tokenCache[V]) get(tok string, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	e, ok := c.c.get(c.hash(c.seed, tok), now)
	if !ok || e.tok != tok {
		return zero, false
	}
	return e.v, true
}

// add stores v for tok until exp, replacing whatever shares tok's hash.
// The cache keeps its own copy of tok: the caller's is usually a slice of
// a request header, which would otherwise stay in memory with it.
func (c *tokenCache[V]) add(tok string, v V, exp, now time.Time) {
	if c == nil {
		return
	}
	c.c.add(c.hash(c.seed, tok), tokenEntry[V]{tok: strings.Clone(tok), v: v}, exp, now)
}
