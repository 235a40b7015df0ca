package session

import (
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
