package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Any lets every authenticated caller see every image.
type Any struct{}

// Allow always allows.
func (Any) Allow(context.Context, Identity, Image) error { return nil }

// Claim allows a caller whose JWT claim holds a grant covering a value
// built from the requested image.
//
// The claim must be a string or an array of strings; each string is one
// grant (a space-separated string is one grant, not several). The template
// is text in which {id} is replaced by the image id and {variant} by the
// variant name; no other {…} is allowed, and neither is * (see below).
// Expanding the template for the request gives the wanted value, and a
// grant covers it when:
//
//   - the grant does not end in *, and equals the wanted value exactly; or
//   - the grant ends in *, and the wanted value starts with the grant's
//     text before the *. This is a folder-style grant: "users/alice/*"
//     covers "users/alice/photo-123" and "users/alice/x/y", but not
//     "users/alice" itself (the folder is not inside itself), "users" or
//     "users/bob/1". A grant of "*" alone covers every value, so it grants
//     every image: issue it only to callers that may see everything.
//
// Only a trailing * is special; elsewhere it is an ordinary character. An
// empty grant covers nothing. The wildcard belongs to the grant, which the
// identity provider signed, never to the template: a prefix taken from the
// request would let a caller choose an image id that is a prefix of a
// value they hold. NewClaim therefore refuses a template containing *.
// Examples:
//
//	claim images {id}        "images": ["5f0e…c1", "9a2b…77"]
//	claim scopes img:{id}    "scopes": ["img:5f0e…c1", "img:users/alice/*"]
//	claim variants {variant} "variants": ["thumbnail"]
//	claim folders {id}       "folders": ["users/alice/*"]  (custom ids as paths)
//
// Callers without claims (introspection, caddy_auth, none) never match.
type Claim struct {
	name  string
	parts []string // literal text and placeholders, in order
}

// NewClaim compiles a claim policy for the claim name and the template.
func NewClaim(name, template string) (*Claim, error) {
	if name == "" {
		return nil, errors.New("claim policy: empty claim name")
	}
	if template == "" {
		return nil, errors.New("claim policy: empty template")
	}
	if strings.Contains(template, "*") {
		return nil, errors.New(`claim policy: * in the template; a wildcard belongs in the granted claim value (e.g. "users/alice/*"), not in the template`)
	}
	c := &Claim{name: name}
	for template != "" {
		open := strings.IndexByte(template, '{')
		if open < 0 {
			c.parts = append(c.parts, template)
			break
		}
		if open > 0 {
			c.parts = append(c.parts, template[:open])
		}
		end := strings.IndexByte(template[open:], '}')
		if end < 0 {
			return nil, errors.New("claim policy: unclosed { in template")
		}
		ph := template[open : open+end+1]
		if ph != "{id}" && ph != "{variant}" {
			return nil, fmt.Errorf("claim policy: unknown placeholder %s (use {id} or {variant})", ph)
		}
		c.parts = append(c.parts, ph)
		template = template[open+end+1:]
	}
	return c, nil
}

// expand fills the template for img.
func (c *Claim) expand(img Image) string {
	if len(c.parts) == 1 { // the common "{id}"
		switch c.parts[0] {
		case "{id}":
			return img.ID
		case "{variant}":
			return img.Variant
		}
	}
	var b strings.Builder
	for _, p := range c.parts {
		switch p {
		case "{id}":
			b.WriteString(img.ID)
		case "{variant}":
			b.WriteString(img.Variant)
		default:
			b.WriteString(p)
		}
	}
	return b.String()
}

// covers reports whether grant covers the wanted value: see [Claim].
func covers(grant, want string) bool {
	if folder, ok := strings.CutSuffix(grant, "*"); ok {
		return strings.HasPrefix(want, folder)
	}
	return grant != "" && grant == want
}

// Allow reports ErrForbidden unless the claim has a matching value.
func (c *Claim) Allow(_ context.Context, id Identity, img Image) error {
	want := c.expand(img)
	switch v := id.Claims[c.name].(type) {
	case string:
		if covers(v, want) {
			return nil
		}
	case []string:
		for _, s := range v {
			if covers(s, want) {
				return nil
			}
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && covers(s, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: claim %q does not grant this image", ErrForbidden, c.name)
}
