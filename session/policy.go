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

// Claim allows a caller whose JWT claim contains a value matching a
// template built from the requested image.
//
// The claim must be a string or an array of strings. The template is text
// in which {id} is replaced by the image id and {variant} by the variant
// name; no other {…} is allowed. A value matches when it equals the
// expanded template. A template ending in * is a prefix rule: a value
// matches when it starts with the expanded text before the *. Examples:
//
//	claim images {id}            "images": ["5f0e…c1", "9a2b…77"]
//	claim scopes img:{id}        "scopes": "img:5f0e…c1 profile" is NOT split; use an array
//	claim scopes img:{id}:*      "scopes": ["img:5f0e…c1:thumbnail"]  (any value with that prefix)
//	claim variants {variant}     "variants": ["thumbnail"]
//	claim folders users/alice/*  "folders": ["users/alice/2024"]  (a static grant)
//
// Callers without claims (introspection, caddy_auth, none) never match.
type Claim struct {
	name   string
	parts  []string // literal text and placeholders, in order
	prefix bool
}

// NewClaim compiles a claim policy.
func NewClaim(name, template string) (*Claim, error) {
	if name == "" {
		return nil, errors.New("claim policy: empty claim name")
	}
	c := &Claim{name: name}
	if rest, ok := strings.CutSuffix(template, "*"); ok {
		c.prefix, template = true, rest
	}
	if template == "" && !c.prefix {
		return nil, errors.New("claim policy: empty template")
	}
	if strings.Contains(template, "*") {
		return nil, errors.New("claim policy: * is allowed only at the end of the template")
	}
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

func (c *Claim) match(v, want string) bool {
	if c.prefix {
		return strings.HasPrefix(v, want)
	}
	return v == want
}

// Allow reports ErrForbidden unless the claim has a matching value.
func (c *Claim) Allow(_ context.Context, id Identity, img Image) error {
	want := c.expand(img)
	switch v := id.Claims[c.name].(type) {
	case string:
		if c.match(v, want) {
			return nil
		}
	case []string:
		for _, s := range v {
			if c.match(s, want) {
				return nil
			}
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && c.match(s, want) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: claim %q does not grant this image", ErrForbidden, c.name)
}
