package caddymodule

import (
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/config"
)

// resolver replaces global placeholders ({env.X}, {file.X}) in settings at
// provision time and collects every failure, so one start reports all of
// them. Its errors name the setting, never a secret's value.
type resolver struct {
	repl *caddy.Replacer
	errs []error
}

func newResolver() *resolver { return &resolver{repl: caddy.NewReplacer()} }

// value resolves the placeholders in a setting that is not secret; "" stays
// "".
func (r *resolver) value(field, v string) string {
	if v == "" {
		return ""
	}
	out, err := r.repl.ReplaceOrErr(v, true, true)
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s: %v", field, err))
		return ""
	}
	return out
}

// secret loads a secret given either inline (literal or placeholder) or as
// <field>_file. Exactly one of them must be set. A failure never quotes the
// value: a literal secret may contain braces that look like a placeholder.
func (r *resolver) secret(field, inline, file string) []byte {
	switch {
	case inline != "" && file != "":
		r.errs = append(r.errs, fmt.Errorf("%s: set either %s or %s_file, not both", field, field, field))
	case file != "":
		b, err := config.ReadSecretFile(field+"_file", r.value(field+"_file", file))
		if err != nil {
			r.errs = append(r.errs, err)
		}
		return b
	case inline != "":
		out, err := r.repl.ReplaceOrErr(inline, true, true)
		if err != nil || out == "" {
			r.errs = append(r.errs, fmt.Errorf("%s: a placeholder in it is unknown or empty (the value is not shown); use {env.NAME} with NAME set, or %s_file", field, field))
			return nil
		}
		return []byte(out)
	}
	return nil
}

func (r *resolver) err() error { return errors.Join(r.errs...) }

// isPlaceholder reports whether a configured value holds a runtime
// placeholder such as {env.CF_IMAGES_KEY} or {file./run/secrets/key}, which
// Caddy keeps unresolved in its adapted JSON. A value without one is a
// literal secret.
func isPlaceholder(s string) bool {
	i := strings.IndexByte(s, '{')
	return i >= 0 && strings.IndexByte(s[i:], '}') > 0
}
