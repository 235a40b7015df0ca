package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// newImageID returns a random version 4 UUID, the shape of the ids
// Cloudflare generates.
func newImageID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// reservedIDs are the API path words under images/v1/ that a custom id
// would shadow. Cloudflare does not document them; the emulator refuses
// them so that every id it accepts can be addressed through the API.
var reservedIDs = map[string]bool{
	"stats": true, "keys": true, "variants": true, "config": true, "batch_token": true,
}

// validateCustomID enforces Cloudflare's custom id rules (≤1024 bytes of
// UTF-8, no leading or trailing '/', not a UUID) plus the strict readings
// the gateway shares through package imageref (no empty, "." or ".."
// segment, no control character, '?', '#' or '\'), and refuses ids that
// would shadow an API route.
func validateCustomID(id string) *codedError {
	bad := func(msg string) *codedError { return errf(http.StatusBadRequest, codeBadRequest, msg) }
	if err := imageref.ValidateID(id); err != nil {
		return bad("Custom id is invalid: " + err.Error())
	}
	if imageref.IsUUID(id) {
		return bad("Custom id must not be a UUID")
	}
	segs := strings.Split(id, "/")
	if reservedIDs[segs[0]] || segs[len(segs)-1] == "blob" {
		return bad("Custom id collides with an API route")
	}
	return nil
}

// escapeID renders an image id as it appears in a URL path: each segment
// percent-escaped (a literal '%' becomes %25), the '/' separators kept.
func escapeID(id string) string { return imageref.EscapePath(id) }

// unescapeID is the inverse of escapeID for a raw (escaped) path fragment.
// An escaped '/' (%2F) is refused: it would make two wire paths name one id.
func unescapeID(raw string) (string, bool) {
	if raw == "" || strings.Contains(strings.ToLower(raw), "%2f") {
		return "", false
	}
	id, err := url.PathUnescape(raw)
	if err != nil {
		return "", false
	}
	return id, true
}
