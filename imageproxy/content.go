package imageproxy

import (
	"net/http"
	"strings"
)

// Header values every proxied answer carries (hits and fetches, 200, 206
// and 304). The gateway serves image bytes from its own origin, where its
// session cookie lives: nosniff stops a browser from reading HTML out of
// an image answer, and the policy makes anything a browser would still
// render there (an SVG, a mistyped body) inert: no script, no plugin, no
// request, its own opaque origin. GitHub's raw content and camo do both.
//
// The safety headers' values.
const (
	nosniffValue = "nosniff"
	cspValue     = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
)

// setSafetyHeaders sets X-Content-Type-Options and
// Content-Security-Policy on h. Each answer gets slices of its own (one
// allocation for both): Caddy's deferred header edits write into header
// values in place, so a shared slice would carry one answer's edit into
// every later one.
func setSafetyHeaders(h http.Header) {
	v := [2]string{nosniffValue, cspValue}
	h["X-Content-Type-Options"] = v[0:1:1]
	h["Content-Security-Policy"] = v[1:2:2]
}

// IsImageType reports whether a Content-Type value names an image/*
// media type: "image/" (any case) and a non-empty subtype of token
// characters, before any parameters. It is the only test of what the
// gateway serves: an upstream answer or a Redis value whose type fails it
// is never served, and no type is ever sniffed from the bytes.
func IsImageType(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = trimOWS(mt)
	const prefix = "image/"
	if len(mt) <= len(prefix) || !strings.EqualFold(mt[:len(prefix)], prefix) {
		return false
	}
	for _, c := range []byte(mt[len(prefix):]) {
		if !isTokenChar(c) {
			return false
		}
	}
	return true
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110,
// section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
