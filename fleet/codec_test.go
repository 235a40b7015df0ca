package fleet

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

func TestObjectCodec(t *testing.T) {
	tests := []struct {
		name string
		obj  imageproxy.Object
	}{
		{"full", imageproxy.Object{
			Body: []byte("\x89PNG body"), ContentType: "image/png", ETag: `"abc"`,
			LastModified: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC),
		}},
		{"zero", imageproxy.Object{}},
		{"no date", imageproxy.Object{Body: bytes.Repeat([]byte{0}, 300), ContentType: "image/webp"}},
		{"before 1970", imageproxy.Object{Body: []byte("x"), LastModified: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeObject(encodeObject(&tt.obj))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got.Body, tt.obj.Body) || got.ContentType != tt.obj.ContentType ||
				got.ETag != tt.obj.ETag || !got.LastModified.Equal(tt.obj.LastModified) ||
				got.LastModified.IsZero() != tt.obj.LastModified.IsZero() {
				t.Fatalf("round trip: got %+v, want %+v", got, tt.obj)
			}
		})
	}
}

// TestObjectCodecRejects checks that anything but a whole version-1
// encoding is refused, so a cut or foreign value is a miss, not garbage.
func TestObjectCodecRejects(t *testing.T) {
	good := encodeObject(&imageproxy.Object{
		Body: []byte("body"), ContentType: "image/png", ETag: `"e"`, LastModified: time.Unix(1e9, 0),
	})
	bad := map[string][]byte{
		"empty":          nil,
		"other version":  append([]byte{2}, good[1:]...),
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"huge length":    {objectV1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	}
	for n := 1; n < len(good); n++ {
		bad[fmt.Sprintf("cut at %d", n)] = good[:n]
	}
	for name, b := range bad {
		if obj, err := decodeObject(b); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, obj)
		}
	}
}
