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
			FreshUntil:   time.UnixMilli(1767225600123),
		}},
		{"zero", imageproxy.Object{}},
		{"no date", imageproxy.Object{Body: bytes.Repeat([]byte{0}, 300), ContentType: "image/webp"}},
		{"before 1970", imageproxy.Object{Body: []byte("x"), LastModified: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeObject(testMACKey, "k", encodeObject(testMACKey, "k", &tt.obj))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !bytes.Equal(got.Body, tt.obj.Body) || got.ContentType != tt.obj.ContentType ||
				got.ETag != tt.obj.ETag || !got.LastModified.Equal(tt.obj.LastModified) ||
				got.LastModified.IsZero() != tt.obj.LastModified.IsZero() ||
				!got.FreshUntil.Equal(tt.obj.FreshUntil) || got.FreshUntil.IsZero() != tt.obj.FreshUntil.IsZero() {
				t.Fatalf("round trip: got %+v, want %+v", got, tt.obj)
			}
		})
	}
}

// TestObjectCodecRejects checks that anything but a whole version-2
// encoding with its MAC under its own key is refused, so a cut, forged or
// foreign value is a miss, not garbage.
func TestObjectCodecRejects(t *testing.T) {
	good := encodeObject(testMACKey, "k", &imageproxy.Object{
		Body: []byte("body"), ContentType: "image/png", ETag: `"e"`, LastModified: time.Unix(1e9, 0),
	})
	bad := map[string][]byte{
		"empty":          nil,
		"other version":  append([]byte{1}, good[1:]...),
		"trailing bytes": append(append([]byte(nil), good...), 0),
		"huge length":    append(append([]byte(nil), good[:1+macSize]...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01),
	}
	for n := 1; n < len(good); n++ {
		bad[fmt.Sprintf("cut at %d", n)] = good[:n]
	}
	for name, b := range bad {
		if obj, err := decodeObject(testMACKey, "k", b); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, obj)
		}
	}
	if _, err := decodeObject(testMACKey, "other key", good); err == nil {
		t.Error("a value decoded under another Redis key")
	}
	// Past the MAC, the parser still checks every length.
	for name, b := range map[string][]byte{
		"huge length":     {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"long type":       append([]byte{0x81, 0x02}, make([]byte, 257)...),
		"truncated field": {5, 'i', 'm'},
	} {
		if obj, err := parseObject(b); err == nil {
			t.Errorf("parse %s: decoded %+v", name, obj)
		}
	}
}
