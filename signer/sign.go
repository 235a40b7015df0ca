package signer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
)

// Sign returns the lowercase hex HMAC-SHA256 of path + "?exp=" + exp keyed
// with key, which is what Cloudflare expects in the sig parameter. path is the
// URL path as it appears on the wire (a '%' in an id is "%25").
func Sign(key []byte, path string, exp int64) string {
	mac := hmac.New(sha256.New, key)
	var buf [20]byte
	mac.Write([]byte(path))
	mac.Write([]byte("?exp="))
	mac.Write(strconv.AppendInt(buf[:0], exp, 10))
	return hex.EncodeToString(mac.Sum(nil))
}

// Fingerprint returns a short, non-reversible name for a signing key, safe to
// log and to use as a metric label: the first 12 hex digits of
// SHA-256("imagegate key id" || key). The domain prefix keeps it from being a
// plain hash of the key that could be matched against other systems.
func Fingerprint(key []byte) string {
	h := sha256.New()
	h.Write([]byte("imagegate key id\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:6])
}
