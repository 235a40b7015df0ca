package signer

// entryOverhead is the heap one cached URL costs besides its three strings
// (id, variant, URL), on 64-bit Go 1.26, each part rounded to the
// allocator's size class:
//
//   - the LRU's list element (next, prev, list, key, value, expiry): 104 B → 112
//   - its share of the LRU's map: a 40-byte slot (the key and a pointer)
//     and a control byte, in a table that may be as little as 7/16 full,
//     plus the table's headers: at most 112 B (measured)
//   - the URL struct: 120 B → 128
//   - the one-element arrays behind Location and ETag: 16 B each
//   - the ETag string ("<24 hex digits>"): 26 B → 32
//
// TestEntryBytesMatchesTheHeap checks the total against runtime.MemStats.
const entryOverhead = 112 + 112 + 128 + 16 + 16 + 32

// entryBytes is the estimated heap cost of caching url for image id and
// variant: the fixed overhead plus each string rounded up as the allocator
// rounds it. It errs high, never low, so MaxBytes is a bound on the heap.
func entryBytes(id, variant, url string) int64 {
	return entryOverhead + allocBytes(len(id)) + allocBytes(len(variant)) + allocBytes(len(url))
}

// allocBytes bounds the heap an n-byte string takes: Go rounds each
// allocation up to a size class, losing at most an eighth (12.5%) above 128
// bytes and at most 15 bytes below.
func allocBytes(n int) int64 {
	if n == 0 {
		return 0
	}
	return int64(n+n/8+15) &^ 15
}
