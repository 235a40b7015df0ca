// Package caddyargs reads the arguments of one Caddyfile subdirective, the
// same way for both of imagegate's directives. Every function expects the
// dispenser on the subdirective's name and consumes the rest of its line;
// errors carry the Caddyfile position and name the subdirective.
package caddyargs

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// One reads exactly one argument.
func One(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.Args(&v) || d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// Append appends one or more arguments to list, so that a subdirective may
// be repeated.
func Append(d *caddyfile.Dispenser, list []string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return list, d.ArgErr()
	}
	return append(list, args...), nil
}

// None checks that a flag subdirective has no argument.
func None(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// Duration reads one positive duration in Caddy's syntax (which adds d for
// days).
func Duration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	field := d.Val()
	v, err := One(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: want a positive duration such as 30s, 5m or 1h", field)
	}
	return caddy.Duration(dur), nil
}

// Int reads one integer of at least min; unit names it in the error.
func Int(d *caddyfile.Dispenser, min int, unit string) (int, error) {
	field := d.Val()
	v, err := One(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min {
		return 0, d.Errf("%s: want a whole number of %s, at least %d", field, unit, min)
	}
	return n, nil
}
