// Package provision holds what imagegate's Caddy modules share while they
// are provisioned: resolving placeholders and secrets into settings, and
// registering process-wide metric collectors into a config's registry.
package provision

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/seed-a64a90cf/imagegate/config"
)

// Resolver replaces global placeholders ({env.X}, {file.X}) in settings at
// provision time and collects every failure, so one start reports all of
// them. Its errors name the setting, never a secret's value.
type Resolver struct {
	repl   *caddy.Replacer
	errs   []error
	failed map[string]bool
}

// NewResolver returns a Resolver of the global placeholders.
func NewResolver() *Resolver { return &Resolver{repl: caddy.NewReplacer(), failed: map[string]bool{}} }

// fail records an error about field.
func (r *Resolver) fail(field string, err error) {
	r.failed[field] = true
	r.errs = append(r.errs, err)
}

// Failed returns the settings that failed to resolve, so validation can
// leave them out instead of calling them missing.
func (r *Resolver) Failed() map[string]bool { return r.failed }

// Value resolves the placeholders in a setting that is not secret; "" stays
// "".
func (r *Resolver) Value(field, v string) string {
	if v == "" {
		return ""
	}
	out, err := r.repl.ReplaceOrErr(v, true, true)
	if err != nil {
		r.fail(field, fmt.Errorf("%s: %v", field, err))
		return ""
	}
	return out
}

// Secret loads a secret given either inline (literal or placeholder) or as
// <field>_file. Exactly one of them must be set. A failure never quotes the
// value: a literal secret may contain braces that look like a placeholder.
func (r *Resolver) Secret(field, inline, file string) []byte {
	switch {
	case inline != "" && file != "":
		r.fail(field, fmt.Errorf("%s: set either %s or %s_file, not both", field, field, field))
	case file != "":
		path := r.Value(field+"_file", file)
		if path == "" {
			return nil // reported by Value
		}
		b, err := config.ReadSecretFile(field+"_file", path)
		if err != nil {
			r.fail(field, err)
		}
		return b
	case inline != "":
		out, err := r.repl.ReplaceOrErr(inline, true, true)
		if err != nil || out == "" {
			r.fail(field, fmt.Errorf("%s: %s", field, unresolvedHint(inline)))
			return nil
		}
		return []byte(out)
	}
	return nil
}

// unresolvedHint says why a secret did not resolve without quoting it:
// the {env.NAME} placeholders in it whose variable is empty or unset, by
// name, or, for anything else (a literal secret may contain braces), only
// that a placeholder failed. It names no setting, since not every secret
// has a _file form.
func unresolvedHint(inline string) string {
	var empty []string
	for rest := inline; ; {
		i := strings.Index(rest, "{env.")
		if i < 0 {
			break
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			break
		}
		if ph := rest[i : i+end+1]; os.Getenv(ph[len("{env."):len(ph)-1]) == "" {
			empty = append(empty, ph+" is empty")
		}
		rest = rest[i+end+1:]
	}
	if len(empty) == 0 {
		return "a placeholder in it is unknown or empty (the value is not shown)"
	}
	return strings.Join(empty, ", ")
}

// Err returns every failure so far, joined, or nil.
func (r *Resolver) Err() error { return errors.Join(r.errs...) }

// IsPlaceholder reports whether a configured value holds a runtime
// placeholder such as {env.CF_IMAGES_KEY} or {file./run/secrets/key}, which
// Caddy keeps unresolved in its adapted JSON. A value without one is a
// literal secret.
func IsPlaceholder(s string) bool {
	i := strings.IndexByte(s, '{')
	return i >= 0 && strings.IndexByte(s[i:], '}') > 0
}

// Register adds process-wide collectors to reg, accepting those already
// there: Caddy makes a registry per config load, and a module may appear
// twice in one config. A nil registry (a bare caddy.Context in tests)
// registers nothing.
func Register(reg *prometheus.Registry, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); !ok {
				return err
			}
		}
	}
	return nil
}
