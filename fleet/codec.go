package fleet

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// objectV2 is the first byte of an encoded object. The layout is
//
//	version      1 byte, objectV2
//	mac          32 bytes: HMAC-SHA256 of the Redis key and everything after the MAC
//	content type uvarint length, bytes (at most maxHeaderField)
//	etag         uvarint length, bytes (at most maxHeaderField)
//	modified     varint Unix seconds of Last-Modified, 0 when unknown
//	fresh until  varint Unix milliseconds of FreshUntil, 0 when none
//	body         uvarint length, bytes, ending the value exactly
//
// The MAC binds the value to its key, so a value copied from another key
// is as forged as one made up. HTTP dates have whole-second resolution, so
// seconds lose nothing. Anything else (another version, a short or long
// value, a MAC that fails) does not decode and is a miss.
const objectV2 = 2

// maxHeaderField bounds the content type and the ETag of a stored object;
// an object with a longer one is not stored. Real ones are tens of bytes.
const maxHeaderField = 256

// maxValueOverhead is the most an encoding adds to its body: version,
// MAC, two bounded fields and four varints.
const maxValueOverhead = 1 + macSize + 2*maxHeaderField + 5*binary.MaxVarintLen64

var (
	errForged      = errors.New("fleet: cached object fails its MAC")
	errUndecodable = errors.New("fleet: undecodable cached object")
)

// encodable reports whether obj can be stored: its header fields fit.
func encodable(obj *imageproxy.Object) bool {
	return len(obj.ContentType) <= maxHeaderField && len(obj.ETag) <= maxHeaderField
}

// encodeObject returns obj's encoding under redisKey, MACed with key.
func encodeObject(key []byte, redisKey string, obj *imageproxy.Object) []byte {
	b := make([]byte, 1+macSize, maxValueOverhead+len(obj.Body))
	b[0] = objectV2
	b = binary.AppendUvarint(b, uint64(len(obj.ContentType)))
	b = append(b, obj.ContentType...)
	b = binary.AppendUvarint(b, uint64(len(obj.ETag)))
	b = append(b, obj.ETag...)
	b = binary.AppendVarint(b, unixOrZero(obj.LastModified, time.Time.Unix))
	b = binary.AppendVarint(b, unixOrZero(obj.FreshUntil, time.Time.UnixMilli))
	b = binary.AppendUvarint(b, uint64(len(obj.Body)))
	b = append(b, obj.Body...)
	copy(b[1:], mac(key, domainObject, []byte(redisKey), b[1+macSize:]))
	return b
}

func unixOrZero(t time.Time, unix func(time.Time) int64) int64 {
	if t.IsZero() {
		return 0
	}
	return unix(t)
}

// decodeObject checks b's version and MAC against redisKey, then decodes
// it. The object's Body aliases b, so the caller hands b over.
func decodeObject(key []byte, redisKey string, b []byte) (*imageproxy.Object, error) {
	if len(b) < 1+macSize || b[0] != objectV2 ||
		!validMAC(key, b[1:1+macSize], domainObject, []byte(redisKey), b[1+macSize:]) {
		return nil, errForged
	}
	return parseObject(b[1+macSize:])
}

// parseObject decodes the fields after the MAC. It trusts nothing about
// b: every length is checked.
func parseObject(b []byte) (*imageproxy.Object, error) {
	d := decoder{b: b}
	obj := &imageproxy.Object{
		ContentType: string(d.field(maxHeaderField)),
		ETag:        string(d.field(maxHeaderField)),
	}
	if mod := d.varint(); mod != 0 {
		obj.LastModified = time.Unix(mod, 0).UTC()
	}
	if fresh := d.varint(); fresh != 0 {
		obj.FreshUntil = time.UnixMilli(fresh)
	}
	obj.Body = d.field(len(b))
	if d.bad || len(d.b) != 0 {
		return nil, errUndecodable
	}
	return obj, nil
}

// decoder reads fields from b; after the first malformed one, bad is set
// and every later read returns nothing.
type decoder struct {
	b   []byte
	bad bool
}

// field reads a uvarint length of at most limit, then that many bytes.
func (d *decoder) field(limit int) []byte {
	n, w := binary.Uvarint(d.b)
	if d.bad || w <= 0 || n > uint64(limit) || n > uint64(len(d.b)-w) {
		d.bad = true
		return nil
	}
	end := w + int(n)
	f := d.b[w:end:end]
	d.b = d.b[end:]
	return f
}

func (d *decoder) varint() int64 {
	v, w := binary.Varint(d.b)
	if d.bad || w <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[w:]
	return v
}
