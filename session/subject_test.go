package session

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestSubjectHasher(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	h := NewSubjectHasher(key)
	a := h.Hash("alice")
	if len(a) != 12 || strings.Trim(a, "0123456789abcdef") != "" {
		t.Fatalf("Hash(alice) = %q, want 12 hex digits", a)
	}
	if a != h.Hash("alice") || a == h.Hash("bob") || strings.Contains(a, "alice") {
		t.Fatalf("Hash(alice) = %q, Hash(bob) = %q", a, h.Hash("bob"))
	}
	// HMAC-SHA256(key, "alice"), computed independently.
	if a != "433deb45467e" {
		t.Fatalf("Hash(alice) = %q", a)
	}
	// A log reader who hashes a guess without the key cannot match it.
	plain := sha256.Sum256([]byte("alice"))
	if a == hex.EncodeToString(plain[:6]) {
		t.Fatal("hash is the unkeyed SHA-256 of the subject")
	}
	// Another key (another process) gives another name.
	if other := NewSubjectHasher([]byte("another key of thirty-two bytes!")).Hash("alice"); other == a {
		t.Fatalf("two keys give the same hash %q", a)
	}
	// The hasher keeps its own copy of the key.
	key[0] ^= 0xff
	if h.Hash("alice") != a {
		t.Fatal("changing the caller's key slice changed the hasher")
	}
	// The anonymous caller and a keyless hasher log nothing.
	if h.Hash("") != "" || (SubjectHasher{}).Hash("alice") != "" || NewSubjectHasher(nil).Hash("alice") != "" {
		t.Fatal("empty subject or keyless hasher produced a hash")
	}
}
