package caddymodule

import (
	"crypto/rand"

	"github.com/seed-a64a90cf/imagegate/session"
)

// subjectHashes names callers in logs by a keyed hash ("" for the anonymous
// caller). The key is random per process, so lines correlate across
// reloads but not across restarts or replicas, and a log reader holding a
// list of user names cannot confirm one by hashing it.
var subjectHashes = session.NewSubjectHasher([]byte(rand.Text())) // 128 random bits
