package caddymodule

import (
	"crypto/rand"

	"github.com/seed-a64a90cf/imagegate/session"
)

// callerHashes names callers in logs by a keyed hash. The key is random
// per process, so lines correlate across reloads but not across restarts or
// replicas, and a log reader holding a list of user names cannot confirm
// one by hashing it.
type callerHashes struct{ h session.SubjectHasher }

var subjectHashes = func() callerHashes {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	return callerHashes{session.NewSubjectHasher(key)}
}()

// Hash returns sub's keyed hash, or "" for the anonymous caller.
func (c callerHashes) Hash(sub string) string {
	if sub == "" {
		return ""
	}
	return c.h.Hash(sub)
}
