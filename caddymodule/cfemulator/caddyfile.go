package cfemulator

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("cf_images_emulator", parseCaddyfile)
	// The emulator is a terminal handler that answers every request, like
	// reverse_proxy; ordered just before it, it runs after handle, route
	// and respond blocks, so a site can still answer some paths itself.
	httpcaddyfile.RegisterDirectiveOrder("cf_images_emulator", httpcaddyfile.Before, "reverse_proxy")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler. Syntax:
//
//	cf_images_emulator [<matcher>] {
//		account_id   <32 hex digits>
//		account_hash <hash>
//		api_token    <token>
//		signing_key  <key>
//		storage      <directory>|memory
//		base_url     <url>
//		browser_ttl  <duration>
//		flexible_variants
//		listen_public
//		api_rate_limit <requests> <window>|off
//		api_rate_block <duration>
//		variant <name> {
//			fit    scale-down|contain|cover|crop|pad
//			width  <pixels>
//			height <pixels>
//			never_require_signed_urls
//		}
//	}
//
// Every setting is optional; see Handler for the defaults.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch d.Val() {
		case "account_id":
			h.AccountID, err = caddyargs.One(d)
		case "account_hash":
			h.AccountHash, err = caddyargs.One(d)
		case "api_token":
			h.APIToken, err = caddyargs.One(d)
		case "signing_key":
			h.SigningKey, err = caddyargs.One(d)
		case "storage":
			h.Storage, err = caddyargs.One(d)
		case "base_url":
			h.BaseURL, err = caddyargs.One(d)
		case "browser_ttl":
			h.BrowserTTL, err = caddyargs.Duration(d)
		case "flexible_variants":
			h.FlexibleVariants, err = true, caddyargs.None(d)
		case "listen_public":
			h.ListenPublic, err = true, caddyargs.None(d)
		case "api_rate_limit":
			h.APIRateLimit, err = parseRateLimit(d)
		case "api_rate_block":
			h.APIRateBlock, err = caddyargs.Duration(d)
		case "variant":
			err = h.parseVariant(d)
		default:
			err = d.Errf("unrecognized subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseRateLimit reads `api_rate_limit <requests> <window>` or
// `api_rate_limit off`.
func parseRateLimit(d *caddyfile.Dispenser) (*APIRateLimit, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &APIRateLimit{Off: true}, nil
	case len(args) != 2:
		return nil, d.Errf("api_rate_limit: want <requests> <window> (such as 1200 5m) or off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return nil, d.Errf("api_rate_limit: want a whole number of requests, at least 1")
	}
	w, err := caddy.ParseDuration(args[1])
	if err != nil || w <= 0 {
		return nil, d.Errf("api_rate_limit: want a positive window such as 5m")
	}
	return &APIRateLimit{Requests: n, Window: caddy.Duration(w)}, nil
}

// parseVariant reads `variant <name> { … }`. Values are range-checked when
// the emulator is provisioned; here only their shape is.
func (h *Handler) parseVariant(d *caddyfile.Dispenser) error {
	name, err := caddyargs.One(d)
	if err != nil {
		return err
	}
	if _, dup := h.Variants[name]; dup {
		return d.Errf("variant %q is defined twice", name)
	}
	v := new(Variant)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "fit":
			v.Fit, err = caddyargs.One(d)
		case "width":
			v.Width, err = caddyargs.Int(d, 1, "pixels")
		case "height":
			v.Height, err = caddyargs.Int(d, 1, "pixels")
		case "never_require_signed_urls":
			v.NeverRequireSignedURLs, err = true, caddyargs.None(d)
		default:
			err = d.Errf("unrecognized variant subdirective %q", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if h.Variants == nil {
		h.Variants = map[string]*Variant{}
	}
	h.Variants[name] = v
	return nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
