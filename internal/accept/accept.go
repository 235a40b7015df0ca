// Package accept reads the Accept header (RFC 9110 §12.5.1) the one way
// imagegate needs it: what quality a header gives to a media type it
// names explicitly. It decides the emulator's output format, the proxy's
// format buckets and the gateway's choice between JSON and a redirect.
//
// The rules, one place for all of them:
//
//   - Only an explicit type/subtype counts. Wildcards (image/*, */*) do
//     not: Cloudflare serves AVIF and WebP only to clients that name them,
//     and a browser loading an image sends */* without wanting JSON.
//   - Types and parameter names match without regard to case; optional
//     whitespace around elements, parameters and '=' is ignored.
//   - The weight is the element's first q parameter, 1 if it has none. A
//     q-value must follow the RFC's grammar ("0", "0.5", "1", "1.000", at
//     most three decimals, never above 1).
//   - An element whose q-value is malformed ("q=high", "q=1.5", "q=-1",
//     "q=") is ignored, as if it were not in the header. It neither
//     accepts nor refuses: the caller's default applies (the original
//     format, a redirect), which every client can use.
//   - A type named more than once gets its lowest weight: a refusal (q=0)
//     is never overridden by another element.
//   - Quoted parameter values are not parsed: a ',' or ';' inside quotes
//     splits there. No browser or HTTP library sends such values in Accept.
//
// Nothing here allocates.
package accept

import "strings"

// MaxQ is the weight of an element without a q parameter (q=1), in the
// thousandths Quality returns.
const MaxQ = 1000

// Quality returns the weight, in thousandths (0 to MaxQ), that the Accept
// field value header gives to the media type typ ("image/avif"), and
// whether header names typ explicitly at all. A type not named has
// weight 0.
func Quality(header, typ string) (q int, named bool) {
	q = MaxQ
	for header != "" {
		var elem string
		elem, header, _ = strings.Cut(header, ",")
		mt, params, _ := strings.Cut(elem, ";")
		if !strings.EqualFold(trimOWS(mt), typ) {
			continue
		}
		w, ok := weight(params)
		if !ok {
			continue // malformed q: the element is ignored
		}
		named = true
		q = min(q, w)
	}
	if !named {
		return 0, false
	}
	return q, true
}

// QualityLines is Quality over every field line of a header, as
// http.Header.Values returns them: the lines are one list (RFC 9110 §5.3),
// so the lowest weight among the lines that name typ wins.
func QualityLines(lines []string, typ string) (q int, named bool) {
	q = MaxQ
	for _, line := range lines {
		if lq, ok := Quality(line, typ); ok {
			q, named = min(q, lq), true
		}
	}
	if !named {
		return 0, false
	}
	return q, true
}

// Accepts reports whether header names typ explicitly with a weight above
// zero.
func Accepts(header, typ string) bool {
	q, named := Quality(header, typ)
	return named && q > 0
}

// AcceptsLines is Accepts over every field line of a header.
func AcceptsLines(lines []string, typ string) bool {
	q, named := QualityLines(lines, typ)
	return named && q > 0
}

// weight reads the first q parameter of an element's parameters (the text
// after its media type's ';'): MaxQ if there is none, ok false if it is
// malformed.
func weight(params string) (q int, ok bool) {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, value, _ := strings.Cut(p, "=")
		if !strings.EqualFold(trimOWS(name), "q") {
			continue
		}
		return parseQ(trimOWS(value))
	}
	return MaxQ, true
}

// parseQ parses a qvalue (RFC 9110 §12.4.2):
//
//	qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
//
// into thousandths.
func parseQ(v string) (int, bool) {
	if v == "" || (v[0] != '0' && v[0] != '1') {
		return 0, false
	}
	q := int(v[0]-'0') * MaxQ
	rest := v[1:]
	if rest == "" {
		return q, true
	}
	if rest[0] != '.' || len(rest) > 4 {
		return 0, false
	}
	scale := 100
	for i := 1; i < len(rest); i++ {
		c := rest[i]
		if c < '0' || c > '9' || (q == MaxQ && c != '0') {
			return 0, false
		}
		q += int(c-'0') * scale
		scale /= 10
	}
	return q, true
}

// trimOWS trims the optional whitespace (spaces and tabs) of HTTP lists.
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}
