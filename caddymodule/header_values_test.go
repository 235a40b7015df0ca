package caddymodule

import (
	"strconv"
	"testing"
)

func TestPrivateMaxAge(t *testing.T) {
	// Twice over a range wider than the memo, so that every slot is
	// overwritten by an age sharing it and read back.
	for range 2 {
		for s := int64(0); s < 3*int64(len(maxAgeTexts)); s += 7 {
			if got, want := privateMaxAge(s), "private, max-age="+strconv.FormatInt(s, 10); got != want {
				t.Fatalf("privateMaxAge(%d) = %q, want %q", s, got, want)
			}
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = privateMaxAge(1800) }); n != 0 {
		t.Errorf("privateMaxAge allocates %v times for a repeated age, want 0", n)
	}
}

// TestHeaderSlabSlicesAreSeparate: appending to one slice (hdr.Add) or
// writing into it never changes another, nor the values it was copied from,
// and the slab keeps working past its capacity.
func TestHeaderSlabSlicesAreSeparate(t *testing.T) {
	var s headerSlab
	shared := []string{"Cookie", "Accept"}
	a := s.one("a")
	b := s.copy(shared)
	c := s.one("c")
	a = append(a, "a2")
	b[0] = "edited"
	if c[0] != "c" || b[1] != "Accept" || shared[0] != "Cookie" || a[1] != "a2" {
		t.Fatalf("slices overlap: a %q, b %q, c %q, shared %q", a, b, c, shared)
	}
	for i := range 10 {
		v := strconv.Itoa(i)
		if got := s.one(v); len(got) != 1 || got[0] != v {
			t.Fatalf("one(%q) past capacity = %q", v, got)
		}
		if got := s.copy(shared); len(got) != 2 || got[0] != "Cookie" {
			t.Fatalf("copy past capacity = %q", got)
		}
	}
}
