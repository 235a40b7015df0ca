package main

// byteCache simulates proxy mode's byte cache: an LRU bounded in bytes
// whose entries also expire a fixed ttl after they were stored (a hit does
// not extend them, as a tier's Set(ttl) does not). Every entry is
// imageBytes long, the workload's average image size.
type byteCache struct {
	capacity, imageBytes int64 // bytes
	ttl                  int64 // nanoseconds
	used                 int64
	index                map[int64]int32 // key → node
	nodes                []cacheNode     // nodes[0] is the list's sentinel: nodes[0].next is the most recently used
	free                 []int32
	evictions            int64 // live entries dropped for space, not for age
}

type cacheNode struct {
	key, expires int64
	prev, next   int32
}

// newByteCache returns an empty cache of capacity bytes. A capacity below
// imageBytes holds nothing: every lookup misses.
func newByteCache(capacity, imageBytes, ttl int64) *byteCache {
	return &byteCache{
		capacity: capacity, imageBytes: imageBytes, ttl: ttl,
		index: map[int64]int32{},
		nodes: make([]cacheNode, 1),
	}
}

// fetch is one request at time now for key: it reports whether the cache
// held a live copy and, on a miss, stores one as fetched from upstream.
func (c *byteCache) fetch(key, now int64) (hit bool) {
	if n, ok := c.index[key]; ok {
		if now < c.nodes[n].expires {
			c.unlink(n)
			c.pushFront(n)
			return true
		}
		c.remove(n) // expired: refetched below
	}
	if c.imageBytes > c.capacity {
		return false
	}
	for c.used+c.imageBytes > c.capacity {
		lru := c.nodes[0].prev
		if c.nodes[lru].expires > now {
			c.evictions++
		}
		c.remove(lru)
	}
	var n int32
	if len(c.free) > 0 {
		n = c.free[len(c.free)-1]
		c.free = c.free[:len(c.free)-1]
	} else {
		n = int32(len(c.nodes))
		c.nodes = append(c.nodes, cacheNode{})
	}
	c.nodes[n] = cacheNode{key: key, expires: now + c.ttl}
	c.index[key] = n
	c.used += c.imageBytes
	c.pushFront(n)
	return false
}

func (c *byteCache) remove(n int32) {
	c.unlink(n)
	delete(c.index, c.nodes[n].key)
	c.used -= c.imageBytes
	c.free = append(c.free, n)
}

func (c *byteCache) unlink(n int32) {
	p, nx := c.nodes[n].prev, c.nodes[n].next
	c.nodes[p].next, c.nodes[nx].prev = nx, p
}

func (c *byteCache) pushFront(n int32) {
	first := c.nodes[0].next
	c.nodes[n].prev, c.nodes[n].next = 0, first
	c.nodes[first].prev = n
	c.nodes[0].next = n
}
