package fleet

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
)

// macSize is the length of every MAC the fleet writes: HMAC-SHA256.
const macSize = sha256.Size

// minMACKey is the shortest MAC key the constructors accept. The caller
// derives the key from the signing key (as caddymodule does for the
// limiter's subject key), so every replica of a fleet has the same one
// and nobody else does.
const minMACKey = 16

// Domains of the MACs, so that no MAC made for one purpose verifies as
// another.
const (
	domainObject = "imagegate: redis object v2"
	domainPurge  = "imagegate: purge message v2"
	domainFilled = "imagegate: filled notice v2"
)

// Reasons a value or message from Redis was rejected, passed to the
// OnRejected callbacks: a small fixed set, fit for a metric label.
const (
	// RejectMAC: a stored object whose MAC does not verify (written by
	// someone without the key, copied from another key, or cut), or
	// that does not decode.
	RejectMAC = "mac"
	// RejectSize: a stored value longer than the largest object the tier
	// stores, rejected by its length before it was read.
	RejectSize = "size"
	// RejectType: a stored object whose Content-Type is not an image
	// type.
	RejectType = "type"
	// RejectPurge: a purge message whose MAC does not verify, that does
	// not decode, or that is too old (a replay).
	RejectPurge = "purge"
	// RejectFilled: a fill lease's "filled" notice whose MAC does not
	// verify.
	RejectFilled = "filled"
)

// checkMACKey panics unless key is long enough: a tier or a channel
// without a real key would trust whoever can write to Redis.
func checkMACKey(who string, key []byte) {
	if len(key) < minMACKey {
		panic("fleet: " + who + " needs a MAC key of at least 16 bytes")
	}
}

// mac returns HMAC-SHA256 under key of domain and parts, each part
// preceded by its length so that no two lists of parts share a MAC.
func mac(key []byte, domain string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	var n [binary.MaxVarintLen64]byte
	m.Write([]byte(domain))
	for _, p := range parts {
		m.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		m.Write(p)
	}
	return m.Sum(make([]byte, 0, macSize))
}

// validMAC reports whether sum is the MAC of domain and parts, in constant
// time.
func validMAC(key []byte, sum []byte, domain string, parts ...[]byte) bool {
	return hmac.Equal(sum, mac(key, domain, parts...))
}
