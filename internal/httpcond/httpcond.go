// Package httpcond evaluates HTTP conditional request headers for the
// handlers that answer with their own ETags instead of http.ServeContent.
package httpcond

import "strings"

// NoneMatch reports whether an If-None-Match header value names etag (or
// is "*"), so a 304 answers it. Comparison is weak, as RFC 9110 §13.1.2
// prescribes for If-None-Match: W/ prefixes are ignored.
func NoneMatch(header, etag string) bool {
	for header != "" {
		var tag string
		tag, header, _ = strings.Cut(header, ",")
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == etag || tag == "*" {
			return true
		}
	}
	return false
}
