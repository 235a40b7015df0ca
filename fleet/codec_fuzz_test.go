package fleet

import (
	"bytes"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// fuzzRedisKey is the Redis key the fuzz target's values are checked
// under.
const fuzzRedisKey = "imagegate:v2:img:{acct:img}:public:avif"

// fuzzSeeds are valid encodings under fuzzRedisKey and testMACKey, the
// starting points of FuzzDecodeObject besides testdata/fuzz.
func fuzzSeeds() [][]byte {
	objs := []*imageproxy.Object{
		{Body: []byte("\x89PNG\r\n\x1a\n body"), ContentType: "image/png", ETag: `"abc"`,
			LastModified: time.Unix(1700000000, 0), FreshUntil: time.UnixMilli(1767225600123)},
		{Body: []byte{}, ContentType: "image/avif"},
		{Body: bytes.Repeat([]byte{0xff}, 300), ContentType: "image/svg+xml", ETag: `"` + string(bytes.Repeat([]byte("e"), 254)) + `"`},
	}
	var seeds [][]byte
	for _, o := range objs {
		seeds = append(seeds, encodeObject(testMACKey, fuzzRedisKey, o))
	}
	return seeds
}

// FuzzDecodeObject feeds the Redis object decoder what anyone with write
// access to Redis could store. It must never panic, accept a value only
// with a valid MAC (which then re-encodes to the same bytes), and, past
// the MAC, keep every field within its bounds.
func FuzzDecodeObject(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
		f.Add(s[1+macSize:]) // the fields alone, for parseObject
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if obj, err := decodeObject(testMACKey, fuzzRedisKey, b); err == nil {
			if re := encodeObject(testMACKey, fuzzRedisKey, obj); !bytes.Equal(re, b) {
				t.Fatalf("decoded %x, re-encoded %x", b, re)
			}
		}
		obj, err := parseObject(b)
		if err != nil {
			return
		}
		if len(obj.ContentType) > maxHeaderField || len(obj.ETag) > maxHeaderField || len(obj.Body) > len(b) {
			t.Fatalf("fields out of bounds: type %d, etag %d, body %d bytes from %d", len(obj.ContentType), len(obj.ETag), len(obj.Body), len(b))
		}
		// Whatever the fields hold, a MAC made with another key never
		// verifies under the fleet's.
		forged := encodeObject([]byte("an attacker's key, 32 bytes long"), fuzzRedisKey, obj)
		if _, err := decodeObject(testMACKey, fuzzRedisKey, forged); err == nil {
			t.Fatal("a value MACed with another key decoded")
		}
	})
}
