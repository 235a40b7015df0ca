// Package signer makes Cloudflare Images signed delivery URLs, and makes them
// stable: the URL for an (image, variant) pair is a pure function of the
// signing key and a time window, so every request, user and replica inside a
// window gets byte-identical URLs and browsers can cache the image. A Signer
// keeps the URLs it made in an LRU cache bounded in bytes of heap
// (Config.MaxBytes), so long custom ids cannot grow it past its budget.
//
// Signing follows Cloudflare's documented algorithm: the string to sign is the
// URL path, '?', and the query including exp but not sig; sig is the
// lowercase hex HMAC-SHA256 of it, keyed with the key string's UTF-8 bytes
// (never base64-decoded), appended last.
package signer
