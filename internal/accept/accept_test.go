package accept

import (
	"strings"
	"testing"
)

func TestQuality(t *testing.T) {
	const chromium = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	for _, tc := range []struct {
		header, typ string
		q           int
		named       bool
	}{
		{"", "image/avif", 0, false},
		{chromium, "image/avif", 1000, true},
		{chromium, "image/webp", 1000, true},
		{chromium, "image/png", 0, false}, // image/* does not name it
		{"*/*", "application/json", 0, false},
		{"image/*;q=1", "image/webp", 0, false},
		{"application/json", "application/json", 1000, true},
		{"APPLICATION/JSON", "application/json", 1000, true},
		{" \timage/webp \t; Q = 0.5 ", "image/webp", 500, true},
		{"image/webp;q=0", "image/webp", 0, true},
		{"image/webp;q=0.000", "image/webp", 0, true},
		{"image/webp;q=0.001", "image/webp", 1, true},
		{"image/webp;q=0.12", "image/webp", 120, true},
		{"image/webp;q=1.", "image/webp", 1000, true},
		{"image/webp;q=1.000", "image/webp", 1000, true},
		{"image/webp;level=1;q=0.3", "image/webp", 300, true},
		{"image/webp;q=0.3;q=0.9", "image/webp", 300, true}, // the first q
		{"image/webpx", "image/webp", 0, false},
		{"image/web", "image/webp", 0, false},
		// The lowest weight of a type named twice wins, in either order.
		{"image/webp,image/webp;q=0", "image/webp", 0, true},
		{"image/webp;q=0,image/webp", "image/webp", 0, true},
		{"image/webp;q=0.4,image/webp;q=0.6", "image/webp", 400, true},
		// A malformed q-value makes its element ignored.
		{"image/webp;q=high", "image/webp", 0, false},
		{"image/webp;q=1.5", "image/webp", 0, false},
		{"image/webp;q=1.001", "image/webp", 0, false},
		{"image/webp;q=0.0001", "image/webp", 0, false},
		{"image/webp;q=-1", "image/webp", 0, false},
		{"image/webp;q=", "image/webp", 0, false},
		{"image/webp;q", "image/webp", 0, false},
		{"image/webp;q=.5", "image/webp", 0, false},
		{"image/webp;q=0x1", "image/webp", 0, false},
		{"image/webp;q=NaN", "image/webp", 0, false},
		{"image/webp;q=1e0", "image/webp", 0, false},
		// ... and only that element: another one still counts.
		{"image/webp;q=bad,image/webp;q=0.7", "image/webp", 700, true},
		{"image/webp;q=bad,image/webp;q=0", "image/webp", 0, true},
		{",,image/webp,,", "image/webp", 1000, true},
	} {
		q, named := Quality(tc.header, tc.typ)
		if q != tc.q || named != tc.named {
			t.Errorf("Quality(%q, %q) = %d, %t; want %d, %t", tc.header, tc.typ, q, named, tc.q, tc.named)
		}
		if got, want := Accepts(tc.header, tc.typ), tc.named && tc.q > 0; got != want {
			t.Errorf("Accepts(%q, %q) = %t, want %t", tc.header, tc.typ, got, want)
		}
	}
}

func TestQualityLines(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		q     int
		named bool
	}{
		{nil, 0, false},
		{[]string{"text/html", "image/avif"}, 1000, true},
		{[]string{"image/avif", "image/avif;q=0"}, 0, true}, // a refusal on any line holds
		{[]string{"image/avif;q=0.2", "image/avif;q=0.9"}, 200, true},
		{[]string{"image/avif;q=oops", "text/html"}, 0, false},
	} {
		q, named := QualityLines(tc.lines, "image/avif")
		if q != tc.q || named != tc.named {
			t.Errorf("QualityLines(%q) = %d, %t; want %d, %t", tc.lines, q, named, tc.q, tc.named)
		}
		if got := AcceptsLines(tc.lines, "image/avif"); got != (tc.named && tc.q > 0) {
			t.Errorf("AcceptsLines(%q) = %t", tc.lines, got)
		}
	}
}

func TestNoAllocations(t *testing.T) {
	const h = "image/avif;q=0.9,image/webp,image/apng,image/*,*/*;q=0.8"
	lines := []string{h, "application/json;q=0.5"}
	if n := testing.AllocsPerRun(100, func() {
		Quality(h, "image/webp")
		AcceptsLines(lines, "application/json")
	}); n != 0 {
		t.Errorf("%v allocations per run, want 0", n)
	}
}

// FuzzQuality checks the invariants of the rules on any header: no panic,
// a weight in range, 0 for a type not named, Accepts agreeing with
// Quality, case not mattering, and elements about other types (appended
// after a comma) changing nothing.
func FuzzQuality(f *testing.F) {
	for _, s := range []string{
		"", "image/avif", "image/webp;q=0", "image/webp;q=0.5,image/avif;q=1.000",
		"image/*,*/*;q=0.8", "image/webp;q=bad", "IMAGE/WEBP ; Q=0.001", "image/webp;q=1.5",
	} {
		f.Add(s, "image/webp")
	}
	f.Fuzz(func(t *testing.T, header, typ string) {
		if strings.ContainsAny(typ, ",;") || trimOWS(typ) == "" {
			return // not a media type: it would match an empty element
		}
		q, named := Quality(header, typ)
		if q < 0 || q > MaxQ || (!named && q != 0) {
			t.Fatalf("Quality(%q, %q) = %d, %t", header, typ, q, named)
		}
		if Accepts(header, typ) != (named && q > 0) {
			t.Fatalf("Accepts disagrees with Quality on %q, %q", header, typ)
		}
		if uq, un := Quality(strings.ToUpper(header), strings.ToLower(typ)); (uq != q || un != named) && isASCII(header+typ) {
			t.Fatalf("case matters: %q → %d,%t; upper → %d,%t", header, q, named, uq, un)
		}
		if !strings.EqualFold(trimOWS(typ), "other/type") {
			if aq, an := Quality(header+",other/type;q=0", typ); aq != q || an != named {
				t.Fatalf("another type's element changed %q: %d,%t → %d,%t", header, q, named, aq, an)
			}
		}
		if lq, ln := QualityLines([]string{header}, typ); lq != q || ln != named {
			t.Fatalf("QualityLines of one line differs on %q", header)
		}
	})
}

// isASCII: Unicode case folding (EqualFold) and ToUpper may disagree on
// non-ASCII text, which no media type contains.
func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func BenchmarkQuality(b *testing.B) {
	const h = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	for b.Loop() {
		Quality(h, "image/webp")
	}
}
