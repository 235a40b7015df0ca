package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// imageVersion names the layout of byte-tier keys and values; a change to
// either changes it, so a new gateway never misreads an old entry. v2 put
// the image in a hash tag.
const imageVersion = "v2"

// maxKeyPart is the longest key component kept as written; longer ones are
// hashed so a key stays bounded whatever the image ID or variant.
const maxKeyPart = 64

// imageKey returns the Redis key of k:
//
//	<prefix>v2:img:{<account hash>:<id>}:<variant>:<format>
//
// The braces are a Redis Cluster hash tag: only "<account hash>:<id>"
// picks the slot, so every key of one image (each variant, each format,
// and any other key made with objectTag) lands in one slot, where a
// multi-key command or script on them cannot fail with CROSSSLOT.
//
// A component is kept as written only if it is at most maxKeyPart bytes of
// printable ASCII other than ':', '{' and '}' and does not start with '#';
// any other is written as '#' and its SHA-256 in hex. So distinct Keys
// never share a Redis key (the ':' separators are unambiguous and a hashed
// component never equals a written one), no ID can move the hash tag, and
// keys print cleanly in redis-cli.
func (c *Client) imageKey(k imageproxy.Key) string {
	return c.Key(imageVersion, "img", objectTag(k.AccountHash, k.ID), keyPart(k.Variant), formatName(k.Format))
}

// objectTag returns "{<account hash>:<id>}", the hash tag of every key
// that belongs to one image.
func objectTag(accountHash, id string) string {
	return "{" + keyPart(accountHash) + ":" + keyPart(id) + "}"
}

func keyPart(s string) string {
	if len(s) <= maxKeyPart && plainKeyPart(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "#" + hex.EncodeToString(sum[:])
}

func plainKeyPart(s string) bool {
	if len(s) > 0 && s[0] == '#' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == ':' || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

func formatName(f imageproxy.Format) string {
	switch f {
	case imageproxy.FormatOriginal:
		return "orig"
	case imageproxy.FormatWebP:
		return "webp"
	case imageproxy.FormatAVIF:
		return "avif"
	}
	return "f" + strconv.Itoa(int(f))
}
