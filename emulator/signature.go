package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// verifySignature checks a signed delivery URL the way Cloudflare documents
// it: the query must carry exactly one exp (Unix seconds, in the future) and
// exactly one sig, the lowercase hex HMAC-SHA256 of
//
//	escapedPath + "?" + the query as sent, without its sig parameter
//
// keyed with the UTF-8 bytes of a signing key. Every key is tried, each with
// a constant-time comparison, so a rotation's old and new keys both verify.
// It returns the verified exp.
func verifySignature(escapedPath, rawQuery string, keys []Key, now time.Time) (exp int64, ok bool) {
	var kept []string
	var sig, expRaw string
	var nSig, nExp int
	for _, p := range strings.Split(rawQuery, "&") {
		k, v, _ := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			return 0, false
		}
		switch name {
		case "sig":
			nSig++
			sig = v
			continue
		case "exp":
			nExp++
			expRaw = v
		}
		kept = append(kept, p)
	}
	if nSig != 1 || nExp != 1 {
		return 0, false
	}
	exp, ok = parseExp(expRaw)
	if !ok || exp <= now.Unix() {
		return 0, false
	}
	if len(sig) != sha256.Size*2 || strings.ToLower(sig) != sig {
		return 0, false
	}
	want, err := hex.DecodeString(sig)
	if err != nil {
		return 0, false
	}
	msg := []byte(escapedPath + "?" + strings.Join(kept, "&"))
	valid := false
	for _, k := range keys {
		mac := hmac.New(sha256.New, []byte(k.Value))
		mac.Write(msg)
		if hmac.Equal(mac.Sum(nil), want) {
			valid = true
		}
	}
	if !valid {
		return 0, false
	}
	return exp, true
}

// parseExp accepts only plain decimal digits: no sign, no spaces.
func parseExp(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}
