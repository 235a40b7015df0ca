package imageproxy

import (
	"strconv"
	"strings"

	acceptpkg "github.com/seed-a64a90cf/imagegate/internal/accept"
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
// The header is read by internal/accept's rules: only an explicit media
// type with a weight above 0 counts, and a malformed q-value makes its
// element count for nothing. BucketOf does not allocate.
func BucketOf(accept string) Format {
	switch {
	case acceptpkg.Accepts(accept, "image/avif"):
		return FormatAVIF
	case acceptpkg.Accepts(accept, "image/webp"):
		return FormatWebP
	}
	return FormatOriginal
}

// trimOWS trims the optional whitespace (spaces and tabs) that may
// surround list elements and parameters in HTTP headers.
func trimOWS(s string) string { return strings.Trim(s, " \t") }

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
