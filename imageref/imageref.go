// Package imageref parses and validates the image references a browser asks
// for: the <id>/<variant> part of a gateway path such as /img/<id>/<variant>.
//
// The rules follow Cloudflare Images: an id is either a generated UUID or a
// custom id (up to 1024 bytes, any number of '/'-separated segments). The
// gateway is stricter than Cloudflare where a lax reading could let a request
// reach a different object than the one it names: no empty, "." or ".."
// segment, no control character, and none of '?', '#' or '\'.
package imageref

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxIDBytes is Cloudflare's limit on a custom image id.
const MaxIDBytes = 1024

// Errors returned by Parse and ValidateID. They are safe to show to callers:
// none of them contains the input.
var (
	ErrMissingVariant = errors.New("path must be <id>/<variant>")
	ErrBadEncoding    = errors.New("malformed percent-encoding")
	ErrEmptyID        = errors.New("image id is empty")
	ErrIDTooLong      = errors.New("image id is longer than 1024 bytes")
	ErrIDSlashes      = errors.New("image id must not start or end with '/'")
	ErrIDSegment      = errors.New("image id has an empty, '.' or '..' segment")
	ErrIDCharacter    = errors.New("image id contains a forbidden character")
	ErrBadVariant     = errors.New("variant name is malformed")
)

// Ref is a parsed image reference.
type Ref struct {
	// ID is the decoded image id; it may contain '/'.
	ID string
	// Variant is the decoded variant name.
	Variant string
}

// Parse splits an escaped path (as from url.URL.EscapedPath, with the
// gateway prefix already removed, e.g. "abc/thumbnail") into id and variant.
//
// The variant is the last literal '/'-separated segment and the id is
// everything before it. Each part is percent-decoded exactly once, so an
// encoded "%2F" never acts as a separator, and "%252F" becomes the three
// characters "%2F" of the id.
func Parse(escaped string) (Ref, error) {
	i := strings.LastIndexByte(escaped, '/')
	if i <= 0 || i == len(escaped)-1 {
		return Ref{}, ErrMissingVariant
	}
	id, err := url.PathUnescape(escaped[:i])
	if err != nil {
		return Ref{}, ErrBadEncoding
	}
	variant, err := url.PathUnescape(escaped[i+1:])
	if err != nil {
		return Ref{}, ErrBadEncoding
	}
	if err := ValidateID(id); err != nil {
		return Ref{}, err
	}
	if !ValidVariantName(variant) {
		return Ref{}, ErrBadVariant
	}
	return Ref{ID: id, Variant: variant}, nil
}

// ValidateID reports whether id is acceptable as a Cloudflare image id: a
// UUID or a custom id. It returns one of the package's errors.
func ValidateID(id string) error {
	switch {
	case id == "":
		return ErrEmptyID
	case len(id) > MaxIDBytes:
		return ErrIDTooLong
	case id[0] == '/' || id[len(id)-1] == '/':
		return ErrIDSlashes
	case !utf8.ValidString(id):
		return ErrIDCharacter
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '?' || r == '#' || r == '\\' {
			return ErrIDCharacter
		}
	}
	for seg := range strings.SplitSeq(id, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return ErrIDSegment
		}
	}
	return nil
}

// IsUUID reports whether s is a UUID in its canonical 8-4-4-4-12 hex form,
// the shape of the ids Cloudflare generates.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !isHex(c) {
				return false
			}
		}
	}
	return true
}

// ValidVariantName reports whether s can be a named variant: 1 to 99
// characters from [A-Za-z0-9_-]. Cloudflare names fit this; anything else
// (including flexible-variant options such as "w=400") does not.
func ValidVariantName(s string) bool {
	return len(s) <= 99 && IsURLSafe(s)
}

// IsURLSafe reports whether s is non-empty and only [A-Za-z0-9_-]: the
// alphabet of variant names, signing-key names and account hashes, which
// appear in URLs unescaped.
func IsURLSafe(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// EscapePath returns id as it appears in a delivery URL path: each
// '/'-separated segment percent-encoded, so a '%' in a custom id becomes
// "%25" as Cloudflare requires, while the '/' separators stay literal.
func EscapePath(id string) string {
	if !needsEscape(id) {
		return id
	}
	var b strings.Builder
	b.Grow(len(id) + 16)
	for i, seg := range strings.Split(id, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(url.PathEscape(seg))
	}
	return b.String()
}

func needsEscape(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c == '/' {
			continue
		}
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~') {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// IsAccountID reports whether s has the shape of a Cloudflare account id
// (32 lowercase hex digits), which API URLs need and delivery URLs must not
// be given in place of the account hash.
func IsAccountID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) || 'A' <= s[i] && s[i] <= 'F' {
			return false
		}
	}
	return true
}
