package imageproxy

import (
	"strconv"
	"strings"
)

// Canonical Accept values sent upstream, one per bucket. Each names
// exactly the formats its bucket allows, so Cloudflare's choice depends
// only on the bucket and every client in a bucket gets the same bytes.
// They are Chromium's image Accept header with the formats the bucket
// excludes left out; BucketOf maps each back to its own bucket.
const (
	acceptAVIF     = "image/avif,image/webp,image/*,*/*;q=0.8"
	acceptWebP     = "image/webp,image/*,*/*;q=0.8"
	acceptOriginal = "image/*,*/*;q=0.8"
)

// BucketOf reduces an Accept header to the format Cloudflare would
// deliver for it: AVIF when image/avif is accepted, else WebP when
// image/webp is, else the original format
// (https://developers.cloudflare.com/images/manage-images/serve-images/serve-uploaded-images/).
// Only an explicit media type counts: image/* and */* do not, because
// Cloudflare serves AVIF and WebP only to clients that name them.
// A media type with q=0 is refused, whatever else the header says.
// Matching ignores case and whitespace. BucketOf does not allocate.
func BucketOf(accept string) Format {
	var avif, webp, noAVIF, noWebP bool
	for accept != "" {
		elem := accept
		if i := strings.IndexByte(accept, ','); i >= 0 {
			elem, accept = accept[:i], accept[i+1:]
		} else {
			accept = ""
		}
		typ, params := elem, ""
		if i := strings.IndexByte(elem, ';'); i >= 0 {
			typ, params = elem[:i], elem[i+1:]
		}
		typ = trimOWS(typ)
		if len(typ) != len("image/avif") { // nor of "image/webp": most types stop here
			continue
		}
		switch {
		case strings.EqualFold(typ, "image/avif"):
			refused := qZero(params)
			avif, noAVIF = avif || !refused, noAVIF || refused
		case strings.EqualFold(typ, "image/webp"):
			refused := qZero(params)
			webp, noWebP = webp || !refused, noWebP || refused
		}
	}
	switch {
	case avif && !noAVIF:
		return FormatAVIF
	case webp && !noWebP:
		return FormatWebP
	}
	return FormatOriginal
}

// trimOWS trims the optional whitespace (spaces and tabs) that may
// surround list elements and parameters in HTTP headers.
func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// qZero reports whether a media range's parameters (the text after its
// first ';') carry q=0, q=0.0, q=0.00 or q=0.000. A malformed q is not
// treated as a refusal: the client named the type, so it likely wants it.
func qZero(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(trimOWS(name), "q") {
			continue
		}
		value = trimOWS(value)
		if value == "" || value[0] != '0' {
			return false
		}
		rest := value[1:]
		if rest == "" {
			return true
		}
		if rest[0] != '.' {
			return false
		}
		return strings.Trim(rest[1:], "0") == ""
	}
	return false
}

// Accept returns the Accept header sent upstream for the bucket, a
// constant: image/avif, image/webp, image/*, and */* at q=0.8 for AVIF;
// the same without image/avif for WebP; only image/* and */* for the
// original format. BucketOf(f.Accept()) == f for every bucket.
func (f Format) Accept() string {
	switch f {
	case FormatAVIF:
		return acceptAVIF
	case FormatWebP:
		return acceptWebP
	}
	return acceptOriginal
}

// String returns "avif", "webp" or "original", the bucket's name in
// metrics and logs.
func (f Format) String() string {
	switch f {
	case FormatOriginal:
		return "original"
	case FormatWebP:
		return "webp"
	case FormatAVIF:
		return "avif"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}
