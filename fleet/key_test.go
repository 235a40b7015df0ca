package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// testKeys is a client for building keys; it never connects.
func testKeys(t *testing.T, prefix string) *Client {
	t.Helper()
	c, err := Open(Options{URLs: []string{"redis://127.0.0.1:1"}, KeyPrefix: prefix})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestImageKey(t *testing.T) {
	c := testKeys(t, "")
	long := strings.Repeat("x", maxKeyPart+1)
	tests := []struct {
		name string
		key  imageproxy.Key
		want string
	}{
		{"plain", imageproxy.Key{AccountHash: "acct", ID: "img-1", Variant: "public", Format: imageproxy.FormatAVIF},
			"imagegate:v2:img:{acct:img-1}:public:avif"},
		{"webp", imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v", Format: imageproxy.FormatWebP},
			"imagegate:v2:img:{a:i}:v:webp"},
		{"original, empty variant", imageproxy.Key{AccountHash: "a", ID: "i"},
			"imagegate:v2:img:{a:i}::orig"},
		{"at the length limit", imageproxy.Key{AccountHash: "a", ID: long[1:], Variant: "v"},
			"imagegate:v2:img:{a:" + long[1:] + "}:v:orig"},
	}
	for _, tt := range tests {
		if got := c.imageKey(tt.key); got != tt.want {
			t.Errorf("%s: imageKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestImageKeyHashes checks that long, ':'-holding, '#'-leading and
// non-printable components are hashed, keeping keys bounded and distinct.
func TestImageKeyHashes(t *testing.T) {
	c := testKeys(t, "")
	keys := []imageproxy.Key{
		{AccountHash: "a", ID: strings.Repeat("x", 10000), Variant: "v"},
		{AccountHash: "a", ID: strings.Repeat("x", 10001), Variant: "v"},
		{AccountHash: "a", ID: "b:c", Variant: "d"},
		{AccountHash: "a", ID: "b", Variant: "c:d"},
		{AccountHash: "a", ID: "#" + strings.Repeat("0", 64), Variant: "v"},
		{AccountHash: "a", ID: "two words", Variant: "v"},
		{AccountHash: "a", ID: "caf\u00e9", Variant: "v"},
		{AccountHash: strings.Repeat("h", 100), ID: "i", Variant: strings.Repeat("w", 100)},
		{AccountHash: "a", ID: "b}c", Variant: "v"},
		{AccountHash: "a", ID: "{b}", Variant: "v"},
		{AccountHash: "a{", ID: "b", Variant: "v"},
		{AccountHash: "a", ID: "b", Variant: "}v"},
	}
	seen := map[string]int{}
	for i, k := range keys {
		got := c.imageKey(k)
		if len(got) > 256 {
			t.Errorf("key %d is %d bytes, want it bounded", i, len(got))
		}
		if !strings.Contains(got, ":#") && !strings.Contains(got, "{#") {
			t.Errorf("key %d = %q, want a hashed component", i, got)
		}
		if j, dup := seen[got]; dup {
			t.Errorf("keys %d and %d share Redis key %q", j, i, got)
		}
		seen[got] = i
		if strings.Count(got, "{") != 1 || strings.Count(got, "}") != 1 {
			t.Errorf("key %d = %q: an ID or variant moved the hash tag", i, got)
		}
		for j := 0; j < len(got); j++ {
			if got[j] <= ' ' || got[j] > '~' {
				t.Errorf("key %d = %q holds a non-printable byte", i, got)
				break
			}
		}
	}
}

// TestKeysHonourThePrefix checks every kind of key and channel the
// package makes for a custom prefix.
func TestKeysHonourThePrefix(t *testing.T) {
	c := testKeys(t, "tenant7:")
	k := imageproxy.Key{AccountHash: "a", ID: "i", Variant: "v"}
	lim := NewLimiter(c, "api", limit.Rate{Events: 1, Per: time.Second}, &countingLimiter{})
	for _, got := range []string{c.imageKey(k), lim.key("alice"), c.Key("x", "y"), c.Channel("purge")} {
		if !strings.HasPrefix(got, "tenant7:") {
			t.Errorf("%q does not start with the prefix tenant7:", got)
		}
	}
	if got, want := c.Key("v1", "lease", objectTag("a", "i")), "tenant7:v1:lease:{a:i}"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
}
