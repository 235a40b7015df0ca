package imageref

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for i, tc := range []struct {
		in          string
		id, variant string
		err         error
	}{
		{"2cdc28f0-017a-49c4-9ed7-87056c83901f/public", "2cdc28f0-017a-49c4-9ed7-87056c83901f", "public", nil},
		{"folder/sub/photo.jpg/thumbnail", "folder/sub/photo.jpg", "thumbnail", nil},
		{"a%2Fb/public", "a/b", "public", nil},             // %2F is part of the id, not a separator
		{"a%252Fb/public", "a%2Fb", "public", nil},         // decoded exactly once
		{"100%25-real/public", "100%-real", "public", nil}, // a literal % in an id
		{"caf%C3%A9/public", "café", "public", nil},
		{"a/public%2Fx", "", "", ErrBadVariant}, // the variant cannot hide a slash
		{"a/w=400", "", "", ErrBadVariant},      // flexible variants are not names
		{"abc", "", "", ErrMissingVariant},
		{"abc/", "", "", ErrMissingVariant},
		{"/public", "", "", ErrMissingVariant},
		{"", "", "", ErrMissingVariant},
		{"a%zz/public", "", "", ErrBadEncoding},
		{"a/b/../c/public", "", "", ErrIDSegment},
		{"a/./c/public", "", "", ErrIDSegment},
		{"a//c/public", "", "", ErrIDSegment},
		{"a%2F..%2Fb/public", "", "", ErrIDSegment},
		{"%2Fa/public", "", "", ErrIDSlashes},
		{"a%2F/public", "", "", ErrIDSlashes},
		{"a%00b/public", "", "", ErrIDCharacter},
		{"a%7Fb/public", "", "", ErrIDCharacter},
		{"a%C2%85b/public", "", "", ErrIDCharacter}, // C1 control (NEL)
		{"a%3Fb/public", "", "", ErrIDCharacter},
		{"a%23b/public", "", "", ErrIDCharacter},
		{"a%5Cb/public", "", "", ErrIDCharacter},
		{"a%FFb/public", "", "", ErrIDCharacter}, // not UTF-8
		{strings.Repeat("x", 1025) + "/public", "", "", ErrIDTooLong},
		{strings.Repeat("x", 1024) + "/public", strings.Repeat("x", 1024), "public", nil},
	} {
		ref, err := Parse(tc.in)
		if !errors.Is(err, tc.err) || ref.ID != tc.id || ref.Variant != tc.variant {
			t.Errorf("case %d: Parse(%q) = %+v, %v; want %q %q %v", i, tc.in, ref, err, tc.id, tc.variant, tc.err)
		}
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"2cdc28f0-017a-49c4-9ed7-87056c83901f": true,
		"2CDC28F0-017A-49C4-9ED7-87056C83901F": true,
		"2cdc28f0017a49c49ed787056c83901f":     false,
		"2cdc28f0-017a-49c4-9ed7-87056c83901":  false,
		"2cdc28f0-017a-49c4-9ed7_87056c83901f": false,
		"2cdc28f0-017a-49c4-9ed7-87056c83901g": false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) = %v", s, !want)
		}
	}
}

func TestEscapePath(t *testing.T) {
	for id, want := range map[string]string{
		"plain-id_1.jpg":   "plain-id_1.jpg",
		"a/b/c":            "a/b/c",
		"100%-real":        "100%25-real",
		"a b/c&d":          "a%20b/c&d",
		"café":             "caf%C3%A9",
		"users/alice/x:1":  "users/alice/x:1",
		"semi;colon,comma": "semi%3Bcolon%2Ccomma",
	} {
		if got := EscapePath(id); got != want {
			t.Errorf("EscapePath(%q) = %q, want %q", id, got, want)
		}
	}
}

// FuzzParse checks that Parse never panics, that the variant it accepts is
// a valid name (Parse checks the id with ValidateID itself), and that
// EscapePath gives a path Parse reads back as the same id.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"a/public", "a%2Fb/public", "100%25/x", "a/../b/c", "%C3%A9/v", "a//b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ref, err := Parse(in)
		if err != nil {
			return
		}
		if !ValidVariantName(ref.Variant) {
			t.Fatalf("Parse(%q) accepted variant %q", in, ref.Variant)
		}
		back, err := Parse(EscapePath(ref.ID) + "/" + ref.Variant)
		if err != nil || back != ref {
			t.Fatalf("round trip of %q: %+v, %v", ref.ID, back, err)
		}
		if _, err := url.Parse("https://h/" + EscapePath(ref.ID)); err != nil {
			t.Fatalf("EscapePath(%q) is not a valid URL path: %v", ref.ID, err)
		}
	})
}
