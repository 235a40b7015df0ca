package caddymodule

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/config"
)

// resolver replaces global placeholders ({env.X}, {file.X}) in settings at
// provision time and collects every failure, so one start reports all of
// them. Its errors name the setting and the placeholder, never a value.
type resolver struct {
	repl *caddy.Replacer
	errs []error
}

// value resolves the placeholders in a setting; "" stays "".
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
// <field>_file. Exactly one of them must be set.
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
		if v := r.value(field, inline); v != "" {
			return []byte(v)
		}
	}
	return nil
}

func (r *resolver) err() error { return errors.Join(r.errs...) }
