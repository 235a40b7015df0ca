package cfemulator

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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
		switch d.Val() {
		case "account_id", "account_hash", "api_token", "signing_key", "storage", "base_url":
			name := d.Val()
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			switch name {
			case "account_id":
				h.AccountID = v
			case "account_hash":
				h.AccountHash = v
			case "api_token":
				h.APIToken = v
			case "signing_key":
				h.SigningKey = v
			case "storage":
				h.Storage = v
			case "base_url":
				h.BaseURL = v
			}
		case "browser_ttl":
			var v string
			if !d.Args(&v) || d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return d.Errf("browser_ttl: a positive duration is required")
			}
			h.BrowserTTL = caddy.Duration(dur)
		case "flexible_variants":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.FlexibleVariants = true
		case "listen_public":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.ListenPublic = true
		case "variant":
			var name string
			if !d.Args(&name) || d.NextArg() {
				return d.ArgErr()
			}
			if _, dup := h.Variants[name]; dup {
				return d.Errf("variant %q is defined twice", name)
			}
			v, err := parseVariant(d)
			if err != nil {
				return err
			}
			if h.Variants == nil {
				h.Variants = map[string]*Variant{}
			}
			h.Variants[name] = v
		default:
			return d.Errf("unrecognized subdirective %q", d.Val())
		}
	}
	return nil
}

// parseVariant reads a variant block. Values are range-checked when the
// emulator is provisioned; here only their shape is.
func parseVariant(d *caddyfile.Dispenser) (*Variant, error) {
	v := new(Variant)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "fit":
			if !d.Args(&v.Fit) || d.NextArg() {
				return nil, d.ArgErr()
			}
		case "width", "height":
			name := d.Val()
			var s string
			if !d.Args(&s) || d.NextArg() {
				return nil, d.ArgErr()
			}
			n, err := strconv.Atoi(s)
			if err != nil {
				return nil, d.Errf("%s: an integer number of pixels is required", name)
			}
			if name == "width" {
				v.Width = n
			} else {
				v.Height = n
			}
		case "never_require_signed_urls":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			v.NeverRequireSignedURLs = true
		default:
			return nil, d.Errf("unrecognized variant subdirective %q", d.Val())
		}
	}
	return v, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
