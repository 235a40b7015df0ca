package fleet

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// imagePrefix starts every byte-tier key.
const imagePrefix = "imagegate:v1:img:"

// maxKeyPart is the longest key component kept as written; longer ones are
// hashed so a key stays bounded whatever the image ID or variant.
const maxKeyPart = 64

// imageKey returns the Redis key of k:
//
//	imagegate:v1:img:<account hash>:<id>:<variant>:<format>
//
// A component is kept as written only if it is at most maxKeyPart bytes of
// printable ASCII other than ':' and does not start with '#'; any other is
// written as '#' and its SHA-256 in hex. So distinct Keys never share a
// Redis key (the ':' separators are unambiguous and a hashed component
// never equals a written one), and keys print cleanly in redis-cli.
func imageKey(k imageproxy.Key) string {
	return imagePrefix + keyPart(k.AccountHash) + ":" + keyPart(k.ID) + ":" +
		keyPart(k.Variant) + ":" + formatName(k.Format)
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
		if c := s[i]; c <= ' ' || c > '~' || c == ':' {
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
