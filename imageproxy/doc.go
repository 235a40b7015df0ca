// Package imageproxy serves private image bodies from a byte cache in
// front of Cloudflare's image delivery, the core of imagegate's proxy
// mode.
//
// The caller authenticates and authorizes every request before calling
// Proxy.Serve, and hands it a signed delivery URL for the image. This
// package never sees a user: bodies are cached under a Key of account
// hash, image id, variant and format bucket, never under a user, a token
// or a signature, so every authorized caller shares one copy and a
// signing-key rotation keeps the cache.
//
// The format bucket (BucketOf) is what Cloudflare would deliver for the
// client's Accept header: AVIF, WebP or the original format. The upstream
// request carries the bucket's canonical Accept (Format.Accept), so
// clients with different but equivalent Accept headers share one copy.
//
// Tiers (Tier) are looked up in order, memory first (Memory, a
// byte-bounded LRU), then a shared one such as Redis; a hit in a later
// tier fills the earlier ones. On a miss, one upstream fetch per key runs
// at a time, and every request for the key that arrives meanwhile is
// answered from it. With FillLeases, processes that share a tier fetch
// each object once between them: one takes the key's lease and fetches,
// the others wait for it in the shared tier, bounded by the lease time. The fetch reads upstream on a goroutine of its own,
// under a context detached from any client and bounded by
// Config.Timeout, so a client that leaves mid-body does not waste a
// delivery the next request would pay for again. Bodies over
// Config.MaxObject are never stored: they stream through to one client
// with constant memory. With no tiers at all (the cache turned off),
// every request streams its own fetch, as a reverse proxy would.
//
// An object is fresh for Config.TTL. Past it, it is refetched; tiers keep
// it for Config.StaleIfError more, and it is served stale only when the
// refetch fails with a 5xx, a timeout or a connection error, never after
// a 404 or 403. Upstream 404s may be remembered (Config.NegativeTTL).
//
// Only image types are served (IsImageType): an upstream 200 of any other
// type, or none, is an error, and no type is ever sniffed. Every answer
// carries X-Content-Type-Options: nosniff and a Content-Security-Policy
// that sandboxes it, since it comes from the gateway's own origin. A
// Range of more than MaxRanges ranges, or of overlapping ones, is ignored
// (a 200 with the whole object).
//
// Header hygiene works both ways. Upstream gets a GET with only Accept and
// User-Agent: no cookie, credential, forwarding header or referrer of the
// client's. The client gets only Content-Type, Content-Length, ETag and
// Last-Modified of upstream's headers, never Set-Cookie, Location,
// Cloudflare's own headers or anything else.
//
// Upstream faults are returned as *UpstreamError before anything is
// written, so the caller can answer with no-store; they are never cached,
// and their text never holds the signed URL.
package imageproxy
