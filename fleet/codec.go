package fleet

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// objectV1 is the first byte of an encoded object. The layout is
//
//	version      1 byte, objectV1
//	content type uvarint length, bytes
//	etag         uvarint length, bytes
//	modified     varint Unix seconds of Last-Modified, 0 when unknown
//	body         uvarint length, bytes, ending the value exactly
//
// HTTP dates have whole-second resolution, so seconds lose nothing.
// Anything else (another version, a short or long value) does not decode
// and is a miss.
const objectV1 = 1

var errUndecodable = errors.New("fleet: undecodable cached object")

// encodeObject returns obj's encoding.
func encodeObject(obj *imageproxy.Object) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen64+len(obj.ContentType)+len(obj.ETag)+len(obj.Body))
	b = append(b, objectV1)
	b = binary.AppendUvarint(b, uint64(len(obj.ContentType)))
	b = append(b, obj.ContentType...)
	b = binary.AppendUvarint(b, uint64(len(obj.ETag)))
	b = append(b, obj.ETag...)
	var mod int64
	if !obj.LastModified.IsZero() {
		mod = obj.LastModified.Unix()
	}
	b = binary.AppendVarint(b, mod)
	b = binary.AppendUvarint(b, uint64(len(obj.Body)))
	return append(b, obj.Body...)
}

// decodeObject decodes b. The object's Body aliases b, so the caller hands
// b over.
func decodeObject(b []byte) (*imageproxy.Object, error) {
	if len(b) == 0 || b[0] != objectV1 {
		return nil, errUndecodable
	}
	d := decoder{b: b[1:]}
	obj := &imageproxy.Object{
		ContentType: string(d.field()),
		ETag:        string(d.field()),
	}
	if mod := d.varint(); mod != 0 {
		obj.LastModified = time.Unix(mod, 0).UTC()
	}
	obj.Body = d.field()
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

func (d *decoder) field() []byte {
	n, w := binary.Uvarint(d.b)
	if d.bad || w <= 0 || n > uint64(len(d.b)-w) {
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
