package session

import (
	"net/http"
	"net/textproto"
	"strings"
)

// maxCookies is net/http's default limit on the cookies of one request
// (Go 1.23+): past it, Request.Cookie finds none at all.
const maxCookies = 3000

// cookieValue returns the value of the first well-formed cookie named name
// in h's Cookie header lines, and whether there is one. It is what
// (*http.Request).Cookie(name) returns, without building a *http.Cookie for
// every cookie the browser sends (two allocations and a parse of each, on
// every request): the same rules, walked in place. A line and each
// "name=value" pair are trimmed of ASCII spaces, the name must be a token,
// one pair of enclosing double quotes is stripped from the value, and a
// value with a byte net/http refuses (a control, '"', ';', '\\', non-ASCII)
// skips that cookie, not the search. Like net/http by default, a request
// with more than 3,000 cookies has none (the GODEBUG httpcookiemaxnum
// override is not read). The result is a substring of the header.
//
// name must be a valid cookie name (validCookieName): net/http finds no
// cookie by an invalid name, so NewJWT refuses one, once, rather than this
// checking it on every request.
func cookieValue(h http.Header, name string) (string, bool) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return "", false
	}
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > maxCookies {
		return "", false
	}
	for _, line := range lines {
		line = textproto.TrimString(line)
		var part string
		for len(line) > 0 {
			part, line, _ = strings.Cut(line, ";")
			part = textproto.TrimString(part)
			k, v, _ := strings.Cut(part, "=")
			if textproto.TrimString(k) != name {
				continue
			}
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if validCookieValue(v) {
				return v, true
			}
		}
	}
	return "", false
}

// validCookieValue reports whether every byte of v is one net/http accepts
// in a cookie value.
func validCookieValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return false
		}
	}
	return true
}

// validCookieName reports whether name can name a cookie at all (an HTTP
// token), by net/http's own check.
func validCookieName(name string) bool {
	return (&http.Cookie{Name: name}).Valid() == nil
}
