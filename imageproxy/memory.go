package imageproxy

import (
	"container/heap"
	"context"
	"math"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// entryOverhead is the number of bytes Memory charges for one entry on top
// of its body and strings: the LRU list element, the map slot, the Object
// and the bookkeeping struct, rounded up. It keeps a cache of many tiny
// objects from growing far past its budget.
const entryOverhead = 256

// Memory is a byte-bounded LRU tier kept in process memory. Each entry
// lives until its TTL passes or it is evicted to make room: stale entries
// first (those past their Object.FreshUntil, kept only for
// Config.StaleIfError), the one that went stale first; then the least
// recently used. It is safe for concurrent use.
type Memory struct {
	mu      sync.Mutex
	lru     *simplelru.LRU[Key, *memEntry]
	byStale staleHeap // every resident entry, the earliest to go stale first
	bytes   int64     // charged bytes of the resident entries
	max     int64
	onEvict func()
	now     func() time.Time // time.Now; replaced in tests
}

type memEntry struct {
	key     Key
	obj     *Object
	expires time.Time
	staleAt time.Time // obj.FreshUntil, or expires when it has none
	cost    int64
	index   int // in Memory.byStale
}

// NewMemory returns a Memory that holds at most maxBytes, charging each
// entry len(Body), the lengths of its key's and headers' strings, and 256
// bytes for the bookkeeping around it. onEvict, if not nil, is called once
// for every entry dropped to make room (not for Delete, replacement or
// expiry), outside the tier's lock. With maxBytes <= 0 nothing is ever
// stored; callers that turn the cache off pass no Memory tier instead.
func NewMemory(maxBytes int64, onEvict func()) *Memory {
	m := &Memory{max: maxBytes, onEvict: onEvict, now: time.Now}
	// The count bound is unused (bytes bound the cache), and math.MaxInt
	// is positive, so NewLRU cannot fail.
	m.lru, _ = simplelru.NewLRU(math.MaxInt, m.removed)
	return m
}

// removed is the LRU's eviction callback, called with m.mu held for every
// entry that leaves the list, whatever the reason.
func (m *Memory) removed(_ Key, e *memEntry) {
	m.bytes -= e.cost
	heap.Remove(&m.byStale, e.index)
}

// cost is what one entry is charged.
func cost(k Key, obj *Object) int64 {
	return int64(len(obj.Body)+len(obj.ContentType)+len(obj.ETag)+
		len(k.AccountHash)+len(k.ID)+len(k.Variant)) + entryOverhead
}

// Name returns "memory".
func (m *Memory) Name() string { return "memory" }

// Get returns the live object stored under k. An expired entry is removed
// and reported as a miss.
func (m *Memory) Get(_ context.Context, k Key) (*Object, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.lru.Get(k)
	if !ok {
		return nil, false
	}
	if !m.now().Before(e.expires) {
		m.lru.Remove(k)
		return nil, false
	}
	return e.obj, true
}

// Set stores obj under k for ttl, replacing any entry for k, then evicts
// entries until the tier is within its budget: stale ones first, then the
// least recently used. An
// object whose cost alone exceeds the budget, or a ttl <= 0, stores
// nothing (and still drops the old entry, which is no longer current).
func (m *Memory) Set(_ context.Context, k Key, obj *Object, ttl time.Duration) {
	c := cost(k, obj)
	evicted := 0
	m.mu.Lock()
	m.lru.Remove(k)
	if c <= m.max && ttl > 0 {
		now := m.now()
		e := &memEntry{key: k, obj: obj, expires: now.Add(ttl), cost: c}
		e.staleAt = e.expires
		if !obj.FreshUntil.IsZero() && obj.FreshUntil.Before(e.expires) {
			e.staleAt = obj.FreshUntil
		}
		m.lru.Add(k, e)
		heap.Push(&m.byStale, e)
		m.bytes += c
		for m.bytes > m.max {
			if oldest := m.byStale[0]; !now.Before(oldest.staleAt) {
				m.lru.Remove(oldest.key) // stale: the first to go
			} else {
				m.lru.RemoveOldest()
			}
			evicted++
		}
	}
	m.mu.Unlock()
	if m.onEvict != nil {
		for range evicted {
			m.onEvict()
		}
	}
}

// Delete removes the given keys and returns how many of them held a live
// entry.
func (m *Memory) Delete(_ context.Context, keys ...Key) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	n := 0
	for _, k := range keys {
		if e, ok := m.lru.Peek(k); ok {
			if now.Before(e.expires) {
				n++
			}
			m.lru.Remove(k)
		}
	}
	return n
}

// Bytes returns the bytes charged for the resident entries, expired ones
// not yet removed included. It never exceeds the budget.
func (m *Memory) Bytes() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bytes
}

// Len returns the number of resident entries, expired ones not yet
// removed included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

// Clear removes every entry, for when the tier may hold bytes that were
// purged elsewhere (a replica that missed purges while cut off).
func (m *Memory) Clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lru.Purge()
}

// staleHeap orders entries by the time they go stale, earliest first
// (container/heap), so eviction finds a stale entry in O(1) and removes
// it in O(log n).
type staleHeap []*memEntry

func (h staleHeap) Len() int           { return len(h) }
func (h staleHeap) Less(i, j int) bool { return h[i].staleAt.Before(h[j].staleAt) }
func (h staleHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *staleHeap) Push(x any) {
	e := x.(*memEntry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *staleHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
