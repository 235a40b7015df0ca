package signer

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
)

// URL is a delivery URL ready to hand out. It is immutable and shared by
// every caller that asks for the same image and variant inside one window.
type URL struct {
	// String is the full URL.
	String string
	// Expires is exp for a signed URL. For an unsigned (public) URL it is
	// the end of the window it was made in, the time a client may cache it.
	Expires time.Time
	// FreshUntil is when the URL stops being handed out: Expires minus the
	// window's MinRemaining.
	FreshUntil time.Time
	// Signed reports whether the URL carries exp and sig.
	Signed bool
	// Location is String as a header value, prebuilt so that serving a
	// cached URL allocates nothing. Callers must not modify it.
	Location []string
	// ETag is a strong entity tag of the JSON answer (see JSON), as a
	// header value, so a client that already holds this URL can revalidate
	// instead of refetching. Callers must not modify it.
	ETag []string
}

// JSON returns the answer a client that asked for the URL itself receives:
// {"url":…,"expires":…,"expires_at":…}. It is built on each call rather than
// kept with the cached URL: most clients follow the 302 and never ask for
// it, and keeping it would double the cache's cost per entry.
func (u *URL) JSON() []byte {
	b := make([]byte, 0, len(u.String)+80)
	b = append(b, `{"url":`...)
	b = appendJSONString(b, u.String)
	b = append(b, `,"expires":`...)
	b = strconv.AppendInt(b, u.Expires.Unix(), 10)
	b = append(b, `,"expires_at":"`...)
	b = u.Expires.UTC().AppendFormat(b, time.RFC3339)
	return append(b, `"}`...)
}

// appendJSONString appends s as a JSON string. A delivery URL is printable
// ASCII without '"' or '\\' (ids are percent-encoded), so it is copied as
// it is; anything else goes through encoding/json, with HTML escaping off
// so that "&" reads as "&", not "\u0026".
func appendJSONString(b []byte, s string) []byte {
	plain := true
	for i := 0; i < len(s) && plain; i++ {
		c := s[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\'
	}
	if plain {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}
