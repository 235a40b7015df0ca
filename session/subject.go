package session

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// SubjectHasher names callers in logs without recording who they are.
//
// A hash is HMAC-SHA256 of the subject under the hasher's key, cut to 12 hex
// digits. Because it is keyed, a log reader holding a list of candidate
// subjects (emails, user ids) cannot hash them and confirm a guess; an
// unkeyed hash would let them. With a per-process random key, hashes
// correlate the requests of one caller within one process's lifetime
// (across configuration reloads, when the hasher outlives them) but not
// across restarts or between replicas.
//
// A SubjectHasher is safe for concurrent use. The zero value has no key
// and hashes every subject to "", so that forgetting the key loses
// correlation rather than privacy.
type SubjectHasher struct {
	key []byte
}

// NewSubjectHasher returns a hasher keyed with a copy of key, which should
// be at least 32 bytes from crypto/rand.
func NewSubjectHasher(key []byte) SubjectHasher {
	return SubjectHasher{key: append([]byte(nil), key...)}
}

// Hash returns the 12-hex-digit name of sub, or "" when sub is empty (the
// anonymous caller) or the hasher has no key.
func (h SubjectHasher) Hash(sub string) string {
	if sub == "" || len(h.key) == 0 {
		return ""
	}
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(sub))
	var sum [sha256.Size]byte
	return hex.EncodeToString(m.Sum(sum[:0])[:6])
}
