package imageproxy

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// MaxNegative is how many remembered upstream 404s a Proxy keeps; the
// least recently remembered go first. Made-up ids are free to ask for, so
// the set must be bounded; a forgotten 404 costs one more upstream request.
const MaxNegative = 10000

// imageVariant names what a 404 is remembered for: an image's variant in
// every format bucket.
type imageVariant struct{ accountHash, id, variant string }

func imageVariantOf(k Key) imageVariant { return imageVariant{k.AccountHash, k.ID, k.Variant} }

// negative remembers upstream 404s per (id, variant) for a while, so an
// image that does not exist costs one upstream request per ttl rather than
// one per view. It is per process: each replica learns a 404 on its own.
type negative struct {
	ttl time.Duration
	mu  sync.Mutex
	lru *simplelru.LRU[imageVariant, time.Time] // the time each entry expires
}

func newNegative(ttl time.Duration) *negative {
	n := &negative{ttl: ttl}
	// MaxNegative is positive, so NewLRU cannot fail.
	n.lru, _ = simplelru.NewLRU[imageVariant, time.Time](MaxNegative, nil)
	return n
}

// remember records that upstream answered 404 for k.
func (n *negative) remember(k Key, now time.Time) {
	if n.ttl <= 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lru.Add(imageVariantOf(k), now.Add(n.ttl))
}

// has reports whether a 404 for k is remembered and current.
func (n *negative) has(k Key, now time.Time) bool {
	if n.ttl <= 0 {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	iv := imageVariantOf(k)
	exp, ok := n.lru.Peek(iv)
	if ok && !now.Before(exp) {
		n.lru.Remove(iv)
		return false
	}
	return ok
}

// forget drops what is remembered for keys.
func (n *negative) forget(keys ...Key) {
	if n.ttl <= 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, k := range keys {
		n.lru.Remove(imageVariantOf(k))
	}
}
