package caddymodule

import (
	"slices"
	"strconv"
	"sync/atomic"
)

// headerSlab hands out the header value slices of one response from one
// allocation. Caddy's header directive, when deferred (`header >Location
// search replace`), edits response values in place (hdr[field][i] = …),
// so a response must never hold a slice it shares with a cache or with
// another response: the edit would land in the signed-URL cache and
// compound on every later answer. The strings themselves are immutable and
// shared freely. Each slice is capped at its length, so an append
// (hdr.Add) reallocates rather than writing into the next one.
type headerSlab struct {
	buf [6]string
	n   int
}

// one returns a fresh one-element slice holding v.
func (s *headerSlab) one(v string) []string {
	if s.n == len(s.buf) {
		return []string{v}
	}
	s.buf[s.n] = v
	s.n++
	return s.buf[s.n-1 : s.n : s.n]
}

// copy returns a fresh slice holding vs's values.
func (s *headerSlab) copy(vs []string) []string {
	if s.n+len(vs) > len(s.buf) {
		return slices.Clone(vs)
	}
	start := s.n
	s.n += copy(s.buf[s.n:], vs)
	return s.buf[start:s.n:s.n]
}

// privateMaxAge returns "private, max-age=<seconds>". Every response of
// the same second with the same freshness asks for the same text, so the
// last text of each of a few thousand ages is kept (direct-mapped by age;
// a collision only rebuilds one): no allocation on the hot path. The texts
// are immutable, so sharing them between handlers and requests is safe.
func privateMaxAge(seconds int64) string {
	slot := &maxAgeTexts[uint64(seconds)%uint64(len(maxAgeTexts))]
	if t := slot.Load(); t != nil && t.seconds == seconds {
		return t.text
	}
	t := &maxAgeText{seconds: seconds, text: "private, max-age=" + strconv.FormatInt(seconds, 10)}
	slot.Store(t)
	return t.text
}

type maxAgeText struct {
	seconds int64
	text    string
}

// maxAgeTexts memoizes privateMaxAge. 4,096 slots cover a window of over
// an hour without a collision.
var maxAgeTexts [4096]atomic.Pointer[maxAgeText]
