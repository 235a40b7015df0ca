package imageproxy

import (
	"context"
	"time"
)

// Format is the output-format bucket a client's Accept header falls into.
// Cloudflare picks AVIF, else WebP, else the original format from the
// request's Accept header; the bucket is part of the cache key so that two
// browsers with different but equivalent Accept headers share one copy.
type Format uint8

// The three buckets.
const (
	FormatOriginal Format = iota
	FormatWebP
	FormatAVIF
)

// Key names one cached image body: never a user, a token or a signature,
// so every authorized caller shares it and a signing-key rotation keeps it.
type Key struct {
	AccountHash string
	ID          string
	Variant     string
	Format      Format
}

// Object is one cached image body and the upstream headers kept with it.
// No field is modified after the object is stored.
type Object struct {
	Body         []byte
	ContentType  string // an image type (IsImageType)
	ETag         string // strong, quoted: upstream's, or a hash of Body
	LastModified time.Time
	// FreshUntil is when the object stops being fresh: Config.TTL after
	// it was fetched. Past it, tiers keep it for Config.StaleIfError,
	// and the proxy refetches it and serves it only when the refetch
	// fails. Zero means fresh for as long as a tier keeps it.
	FreshUntil time.Time
}

// Tier is one level of the byte cache: memory first, then a shared tier
// such as Redis. A tier that fails answers a miss; it never fails a
// request.
type Tier interface {
	// Name is the tier's metric label, e.g. "memory" or "redis".
	Name() string
	// Get returns the object stored under k, or false.
	Get(ctx context.Context, k Key) (*Object, bool)
	// Set stores obj under k for ttl. It may return before the write is
	// done (a shared tier writes in the background).
	Set(ctx context.Context, k Key, obj *Object, ttl time.Duration)
	// Delete removes the given keys and returns how many were present.
	Delete(ctx context.Context, keys ...Key) int
}

// Formats lists every bucket, for callers that must name all of an image's
// keys (a purge).
var Formats = [...]Format{FormatOriginal, FormatWebP, FormatAVIF}
