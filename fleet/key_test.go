package fleet

import (
	"strings"
	"testing"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

func TestImageKey(t *testing.T) {
	long := strings.Repeat("x", maxKeyPart+1)
	tests := []struct {
		name string
		key  imageproxy.Key
		want string
	}{
		{"plain", imageproxy.Key{AccountHash: "acct", ID: "img-1", Variant: "public", Format: imageproxy.FormatAVIF},
			"imagegate:v1:img:acct:img-1:public:avif"},
		{"webp", imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v", Format: imageproxy.FormatWebP},
			"imagegate:v1:img:a:i:v:webp"},
		{"original, empty variant", imageproxy.Key{AccountHash: "a", ID: "i"},
			"imagegate:v1:img:a:i::orig"},
		{"at the length limit", imageproxy.Key{AccountHash: "a", ID: long[1:], Variant: "v"},
			"imagegate:v1:img:a:" + long[1:] + ":v:orig"},
	}
	for _, tt := range tests {
		if got := imageKey(tt.key); got != tt.want {
			t.Errorf("%s: imageKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestImageKeyHashes checks that long, ':'-holding, '#'-leading and
// non-printable components are hashed, keeping keys bounded and distinct.
func TestImageKeyHashes(t *testing.T) {
	keys := []imageproxy.Key{
		{AccountHash: "a", ID: strings.Repeat("x", 10000), Variant: "v"},
		{AccountHash: "a", ID: strings.Repeat("x", 10001), Variant: "v"},
		{AccountHash: "a", ID: "b:c", Variant: "d"},
		{AccountHash: "a", ID: "b", Variant: "c:d"},
		{AccountHash: "a", ID: "#" + strings.Repeat("0", 64), Variant: "v"},
		{AccountHash: "a", ID: "two words", Variant: "v"},
		{AccountHash: "a", ID: "caf\u00e9", Variant: "v"},
		{AccountHash: strings.Repeat("h", 100), ID: "i", Variant: strings.Repeat("w", 100)},
	}
	seen := map[string]int{}
	for i, k := range keys {
		got := imageKey(k)
		if len(got) > 256 {
			t.Errorf("key %d is %d bytes, want it bounded", i, len(got))
		}
		if !strings.Contains(got, ":#") {
			t.Errorf("key %d = %q, want a hashed component", i, got)
		}
		if j, dup := seen[got]; dup {
			t.Errorf("keys %d and %d share Redis key %q", j, i, got)
		}
		seen[got] = i
		for j := 0; j < len(got); j++ {
			if got[j] <= ' ' || got[j] > '~' {
				t.Errorf("key %d = %q holds a non-printable byte", i, got)
				break
			}
		}
	}
}
