package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("cf_images", parseCaddyfile)
	// After forward_auth, so Caddy's authentication handlers (basic_auth,
	// forward_auth) have run and set {http.auth.user.*}; before
	// reverse_proxy and file_server, which must not see gateway paths.
	httpcaddyfile.RegisterDirectiveOrder("cf_images", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	cf_images [<matcher>] {
//	    prefix           <path>
//	    account_hash     <hash>
//	    signing_key      <key>
//	    signing_key_file <path>
//	    delivery_url     <url>
//	    variants         <name...>
//	    public_variants  <name...>
//	    window           <duration>
//	    min_remaining    <duration>
//	    cache_size       <entries>
//	    mode             redirect
//	    session          none
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		field := d.Val()
		var err error
		switch field {
		case "prefix":
			h.Prefix, err = oneArg(d)
		case "account_hash":
			h.AccountHash, err = oneArg(d)
		case "signing_key":
			h.SigningKey, err = oneArg(d)
		case "signing_key_file":
			h.SigningKeyFile, err = oneArg(d)
		case "delivery_url":
			h.DeliveryURL, err = oneArg(d)
		case "mode":
			h.Mode, err = oneArg(d)
		case "variants":
			h.Variants, err = manyArgs(d, h.Variants)
		case "public_variants":
			h.PublicVariants, err = manyArgs(d, h.PublicVariants)
		case "window":
			h.Window, err = durationArg(d)
		case "min_remaining":
			h.MinRemaining, err = durationArg(d)
		case "cache_size":
			var v string
			if v, err = oneArg(d); err == nil {
				if h.CacheSize, err = strconv.Atoi(v); err != nil || h.CacheSize < 1 {
					err = d.Errf("cache_size: want a positive number of entries")
				}
			}
		case "session":
			var method string
			if method, err = oneArg(d); err == nil {
				h.Session = &SessionConfig{Method: method}
			}
		default:
			err = d.Errf("unrecognized subdirective %q", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// oneArg reads exactly one argument of the current subdirective.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.Args(&v) || d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// manyArgs appends one or more arguments to list, so a subdirective may be
// repeated.
func manyArgs(d *caddyfile.Dispenser, list []string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return list, d.ArgErr()
	}
	return append(list, args...), nil
}

// durationArg reads one duration, accepting Caddy's units including d.
func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("%s: %v", d.Val(), err)
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
