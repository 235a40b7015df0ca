package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// newImageID returns a random version 4 UUID, the shape of the ids
// Cloudflare generates.
func newImageID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// isUUID reports whether s has the 8-4-4-4-12 hex shape of a UUID, in
// either case. Cloudflare refuses custom ids of that shape so that they
// never collide with generated ones.
func isUUID(s string) bool {
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
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// reservedIDs are the API path words under images/v1/ that a custom id
// would shadow. Cloudflare does not document them; the emulator refuses
// them so that every id it accepts can be addressed through the API.
var reservedIDs = map[string]bool{
	"stats": true, "keys": true, "variants": true, "config": true, "batch_token": true,
}

// validateCustomID enforces Cloudflare's custom id rules (≤1024 bytes of
// UTF-8, no leading or trailing '/', not a UUID) plus the emulator's strict
// readings: no empty, "." or ".." segment, no control characters, no '?' or
// '#' (they cannot survive a URL path), nothing that shadows an API route.
func validateCustomID(id string) *codedError {
	bad := func(msg string) *codedError { return errf(http.StatusBadRequest, codeBadRequest, msg) }
	switch {
	case id == "":
		return bad("Custom id must not be empty")
	case len(id) > MaxCustomIDBytes:
		return bad("Custom id must not exceed 1024 bytes")
	case !utf8.ValidString(id):
		return bad("Custom id must be valid UTF-8")
	case strings.HasPrefix(id, "/") || strings.HasSuffix(id, "/"):
		return bad("Custom id must not begin or end with a slash")
	case isUUID(id):
		return bad("Custom id must not be a UUID")
	case strings.ContainsAny(id, "?#\\"):
		return bad("Custom id contains a character that cannot appear in a URL path")
	}
	for _, r := range id {
		if r < 0x20 || r == 0x7f {
			return bad("Custom id must not contain control characters")
		}
	}
	segs := strings.Split(id, "/")
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return bad("Custom id must not contain an empty, '.' or '..' path segment")
		}
	}
	if reservedIDs[segs[0]] || segs[len(segs)-1] == "blob" {
		return bad("Custom id collides with an API route")
	}
	return nil
}

// escapeID renders an image id as it appears in a URL path: each segment
// percent-escaped (a literal '%' becomes %25), the '/' separators kept.
func escapeID(id string) string {
	segs := strings.Split(id, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// unescapeID is the inverse of escapeID for a raw (escaped) path fragment.
// An escaped '/' (%2F) is refused: it would make two wire paths name one id.
func unescapeID(raw string) (string, bool) {
	if raw == "" || strings.Contains(strings.ToLower(raw), "%2f") {
		return "", false
	}
	id, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	return id, true
}
