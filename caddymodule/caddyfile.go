package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
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
//	    session          none | caddy_auth
//	    session jwt {
//	        cookie          <name>
//	        header          <name>
//	        secret          <key>
//	        secret_file     <path>
//	        public_key_file <path>
//	        jwks_url        <url>
//	        issuer          <iss>
//	        audience        <aud>
//	        leeway          <duration>
//	        subject_claim   <claim>
//	        cache_size      <entries>
//	    }
//	    session introspect <url> {
//	        cookie         <name>
//	        header         <name>
//	        per_image
//	        subject_header <header>
//	        timeout        <duration>
//	        cache_ttl      <duration>
//	        negative_ttl   <duration>
//	        cache_size     <entries>
//	    }
//	    authorize any | claim <name> <template> | owner <meta_field> | introspect per_image
//	    account_id       <id>
//	    api_token        <token>
//	    api_token_file   <path>
//	    api_url          <url>
//	    metadata_ttl     <duration>
//	    upload_path      <path>
//	    upload_owner_field <meta_field>
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
			h.Prefix, err = caddyargs.One(d)
		case "account_hash":
			h.AccountHash, err = caddyargs.One(d)
		case "signing_key":
			h.SigningKey, err = caddyargs.One(d)
		case "signing_key_file":
			h.SigningKeyFile, err = caddyargs.One(d)
		case "delivery_url":
			h.DeliveryURL, err = caddyargs.One(d)
		case "mode":
			h.Mode, err = caddyargs.One(d)
		case "variants":
			h.Variants, err = caddyargs.Append(d, h.Variants)
		case "public_variants":
			h.PublicVariants, err = caddyargs.Append(d, h.PublicVariants)
		case "window":
			h.Window, err = caddyargs.Duration(d)
		case "min_remaining":
			h.MinRemaining, err = caddyargs.Duration(d)
		case "cache_size":
			h.CacheSize, err = caddyargs.Int(d, 1, "entries")
		case "session":
			h.Session, err = parseSession(d)
		case "authorize":
			h.Authorize, err = parseAuthorize(d, h.Session)
		case "account_id":
			h.AccountID, err = caddyargs.One(d)
		case "api_token":
			h.APIToken, err = caddyargs.One(d)
		case "api_token_file":
			h.APITokenFile, err = caddyargs.One(d)
		case "api_url":
			h.APIURL, err = caddyargs.One(d)
		case "metadata_ttl":
			h.MetadataTTL, err = caddyargs.Duration(d)
		case "upload_path":
			h.UploadPath, err = caddyargs.One(d)
		case "upload_owner_field":
			h.UploadOwnerField, err = caddyargs.One(d)
		default:
			err = d.Errf("unrecognized subdirective %q", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseSession reads `session <method> [<url>] [{ … }]`.
func parseSession(d *caddyfile.Dispenser) (*SessionConfig, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	sc := &SessionConfig{Method: d.Val()}
	switch sc.Method {
	case "introspect":
		if !d.NextArg() {
			return nil, d.Errf("session introspect: the application's URL is required")
		}
		sc.URL = d.Val()
	case "jwt", "none", "caddy_auth":
	default:
		return nil, d.Errf("session: unknown method %q; use jwt, introspect, caddy_auth or none", sc.Method)
	}
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		field := d.Val()
		if !sessionFieldAllowed(sc.Method, field) {
			return nil, d.Errf("session %s: unrecognized subdirective %q", sc.Method, field)
		}
		var err error
		switch field {
		case "cookie":
			var v string
			if v, err = caddyargs.One(d); err == nil {
				sc.Sources = append(sc.Sources, CredentialSource{Cookie: v})
			}
		case "header":
			var v string
			if v, err = caddyargs.One(d); err == nil {
				sc.Sources = append(sc.Sources, CredentialSource{Header: v})
			}
		case "secret":
			sc.Secret, err = caddyargs.One(d)
		case "secret_file":
			sc.SecretFile, err = caddyargs.One(d)
		case "public_key_file":
			sc.PublicKeyFile, err = caddyargs.One(d)
		case "jwks_url":
			sc.JWKSURL, err = caddyargs.One(d)
		case "issuer":
			sc.Issuer, err = caddyargs.One(d)
		case "audience":
			sc.Audience, err = caddyargs.One(d)
		case "leeway":
			sc.Leeway, err = leewayArg(d)
		case "subject_claim":
			sc.SubjectClaim, err = caddyargs.One(d)
		case "per_image":
			sc.PerImage, err = true, caddyargs.None(d)
		case "subject_header":
			sc.SubjectHeader, err = caddyargs.One(d)
		case "timeout":
			sc.Timeout, err = caddyargs.Duration(d)
		case "cache_ttl":
			sc.CacheTTL, err = caddyargs.Duration(d)
		case "negative_ttl":
			sc.NegativeTTL, err = caddyargs.Duration(d)
		case "cache_size":
			sc.CacheSize, err = caddyargs.Int(d, 1, "entries")
		}
		if err != nil {
			return nil, err
		}
	}
	return sc, nil
}

// leewayArg reads a JWT leeway. `leeway 0` means none, which JSON spells
// as a negative value because 0 there means the 30s default.
func leewayArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := caddyargs.One(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	switch {
	case err != nil || dur < 0:
		return 0, d.Errf("leeway: want a duration such as 30s, or 0 for none")
	case dur == 0:
		return -1, nil
	}
	return caddy.Duration(dur), nil
}

// sessionFieldAllowed reports whether a session block's subdirective
// belongs to method, so a misplaced one is an error rather than ignored.
func sessionFieldAllowed(method, field string) bool {
	switch field {
	case "cookie", "header", "cache_size":
		return method == "jwt" || method == "introspect"
	case "secret", "secret_file", "public_key_file", "jwks_url", "issuer", "audience", "leeway", "subject_claim":
		return method == "jwt"
	case "per_image", "subject_header", "timeout", "cache_ttl", "negative_ttl":
		return method == "introspect"
	}
	return false
}

// parseAuthorize reads `authorize <policy> [args…]`. `authorize
// introspect per_image` also turns per_image on in the session block.
func parseAuthorize(d *caddyfile.Dispenser, sc *SessionConfig) (*AuthorizeConfig, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	ac := &AuthorizeConfig{Policy: args[0]}
	switch {
	case args[0] == "any" && len(args) == 1:
	case args[0] == "claim" && len(args) == 3:
		ac.Claim, ac.Template = args[1], args[2]
	case args[0] == "owner" && len(args) == 2:
		ac.Field = args[1]
	case args[0] == "introspect" && len(args) == 2 && args[1] == "per_image":
		if sc == nil || sc.Method != "introspect" {
			return nil, d.Errf("authorize introspect per_image: put it after `session introspect <url>`")
		}
		sc.PerImage = true
	default:
		return nil, d.Errf("authorize: want any, claim <name> <template>, owner <meta_field> or introspect per_image")
	}
	return ac, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
