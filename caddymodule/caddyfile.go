package caddymodule

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterDirective("cf_images", parseDirective)
	// After forward_auth, so Caddy's authentication handlers (basic_auth,
	// forward_auth) have run and set {http.auth.user.*}; before
	// reverse_proxy and file_server, which must not see gateway paths.
	httpcaddyfile.RegisterDirectiveOrder("cf_images", httpcaddyfile.After, "forward_auth")
}

// parseDirective reads the directive as Caddy's handler directives are
// read, and also lets a single path matcher `<path>/*` stand for the
// prefix: `cf_images /photos/* { … }` serves /photos/<id>/<variant>
// without also writing `prefix /photos`.
func parseDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	m, err := parseCaddyfile(h)
	if err != nil {
		return nil, err
	}
	if m.Prefix == "" {
		m.Prefix = prefixOfMatcher(matcherSet)
	}
	return h.NewRoute(matcherSet, m), nil
}

func parseCaddyfile(h httpcaddyfile.Helper) (*Handler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// prefixOfMatcher returns "/photos" for a matcher that is exactly the path
// pattern "/photos/*", and "" for anything else.
func prefixOfMatcher(set caddy.ModuleMap) string {
	if len(set) != 1 || set["path"] == nil {
		return ""
	}
	var paths []string
	if json.Unmarshal(set["path"], &paths) != nil || len(paths) != 1 {
		return ""
	}
	p, ok := strings.CutSuffix(paths[0], "/*")
	if !ok || !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "*?[{") {
		return ""
	}
	return p
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
//	    cache_size       <bytes>|<entries>
//	    mode             redirect
//	    mode             proxy {
//	        cache_size  <bytes>      # 512MiB; 0 turns the byte cache off
//	        max_object  <bytes>      # 10MiB
//	        cache_ttl   <duration>   # 24h
//	        timeout     <duration>   # 15s
//	        stale_if_error <duration>|off  # 24h
//	        negative_ttl   <duration>|off  # 30s
//	        fetch_limit    <events> <window>|off  # 300 1m
//	        browser_max_age <duration>    # 0: revalidate every view
//	    }
//	    session          <method> [<args...>] [{ … }]
//	    authorize        <policy> [<args...>]
//	    account_id       <id>
//	    api_token        <token>
//	    api_token_file   <path>
//	    api_url          <url>
//	    upload           <path> {
//	        owner_field  <meta_field>       # owner
//	        limit        <events> <window>|off  # 20 1h
//	    }
//	    redis            <url...>
//	    redis            { url <url>; cluster; sentinel <primary>; … }
//
// The account settings (account_hash, signing_key, delivery_url,
// account_id, api_token, api_url) and redis default to the global
// cf_images block's. The flat forms of configs written before the blocks
// still work: metadata_ttl, metadata_stale and lookup_limit (now in
// `authorize owner { … }`), upload_path, upload_owner_field and
// upload_limit (now `upload`), redis_timeout.
//
//	}
//
// `session` and `authorize` hand their line (and block) to the guest module
// they name, such as `session jwt { … }`, `session introspect <url> { … }`,
// `session caddy_auth`, `session none`, `authorize claim <name> <template>`,
// `authorize owner [<field>]` or `authorize introspect per_image`. A limit
// of 0 turns it off.
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
			h.Mode, h.Proxy, err = modeArgs(d)
		case "variants":
			h.Variants, err = caddyargs.Append(d, h.Variants)
		case "public_variants":
			h.PublicVariants, err = caddyargs.Append(d, h.PublicVariants)
		case "window":
			h.Window, err = caddyargs.Duration(d)
		case "min_remaining":
			h.MinRemaining, err = caddyargs.Duration(d)
		case "cache_size":
			var v string
			if v, err = caddyargs.One(d); err == nil {
				var size URLCacheSize
				if size, err = parseURLCacheSize(v); err != nil {
					err = d.Err(err.Error())
				}
				h.CacheSize = &size
			}
		case "session":
			h.SessionRaw, err = guestModule(d, h.SessionRaw, sessionsNamespace, "method")
		case "authorize":
			h.AuthorizeRaw, err = guestModule(d, h.AuthorizeRaw, authorizersNamespace, "policy")
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
		case "metadata_stale":
			h.MetadataStale, err = caddyargs.Duration(d)
		case "lookup_limit":
			h.LookupLimit, err = rateLimitArgs(d)
		case "upload":
			if h.Upload != nil {
				return d.Errf("upload: given twice; a handler has one")
			}
			h.Upload, err = uploadArgs(d)
		case "upload_path":
			h.UploadPath, err = caddyargs.One(d)
		case "upload_owner_field":
			h.UploadOwnerField, err = caddyargs.One(d)
		case "upload_limit":
			h.UploadLimit, err = rateLimitArgs(d)
		case "redis":
			h.Redis, err = redisArgs(d, h.Redis)
		case "redis_timeout":
			h.RedisTimeout, err = caddyargs.Duration(d)
		default:
			err = d.Errf("unrecognized subdirective %q", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// guestModule hands `<subdirective> <name> …` to the Caddyfile unmarshaler
// of the guest module <namespace>.<name> and returns its JSON with the name
// under inlineKey. A second line for the same subdirective is an error
// rather than silently replacing the first.
func guestModule(d *caddyfile.Dispenser, prev []byte, namespace, inlineKey string) ([]byte, error) {
	field := d.Val()
	if prev != nil {
		return nil, d.Errf("%s: given twice; a handler has one", field)
	}
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	name := d.Val()
	if _, err := caddy.GetModule(namespace + "." + name); err != nil {
		return nil, d.Errf("%s: unknown %s %q; `imagegate list-modules | grep %s` lists them", field, inlineKey, name, namespace)
	}
	unm, err := caddyfile.UnmarshalModule(d, namespace+"."+name)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, inlineKey, name, nil), nil
}

// modeArgs reads `mode redirect` or `mode proxy [{ … }]`. Sizes take
// Caddy's usual forms: 512MiB, 10MB or a byte count.
func modeArgs(d *caddyfile.Dispenser) (string, *ProxyConfig, error) {
	if !d.NextArg() {
		return "", nil, d.ArgErr()
	}
	mode := d.Val()
	if d.NextArg() {
		return "", nil, d.ArgErr()
	}
	var pc *ProxyConfig
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if mode != "proxy" {
			return "", nil, d.Errf("mode %s takes no settings", mode)
		}
		if pc == nil {
			pc = &ProxyConfig{}
		}
		var err error
		switch field := d.Val(); field {
		case "cache_size":
			var n int64
			if n, err = sizeArg(d); err == nil {
				pc.CacheSize = &n
			}
		case "max_object":
			pc.MaxObject, err = sizeArg(d)
			if err == nil && pc.MaxObject == 0 {
				err = d.Errf("max_object: must be positive")
			}
		case "cache_ttl":
			pc.CacheTTL, err = caddyargs.Duration(d)
		case "timeout":
			pc.Timeout, err = caddyargs.Duration(d)
		case "stale_if_error":
			pc.StaleIfError, err = durationOrOff(d)
		case "negative_ttl":
			pc.NegativeTTL, err = durationOrOff(d)
		case "fetch_limit":
			pc.FetchLimit, err = rateLimitArgs(d)
		case "browser_max_age":
			var age caddy.Duration
			if age, err = durationOrZero(d); err == nil {
				pc.BrowserMaxAge = &age
			}
		default:
			err = d.Errf("mode proxy: unrecognized subdirective %q", field)
		}
		if err != nil {
			return "", nil, err
		}
	}
	return mode, pc, nil
}

// sizeArg reads one size in bytes: 512MiB, 10MB, 1048576.
func sizeArg(d *caddyfile.Dispenser) (int64, error) {
	field := d.Val()
	v, err := caddyargs.One(d)
	if err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n > math.MaxInt64 {
		return 0, d.Errf("%s: want a size such as 512MiB, 10MB or a byte count", field)
	}
	return int64(n), nil
}

// rateLimitArgs reads `<events> <window>`; `off` or `0` alone turns the
// limit off.
func rateLimitArgs(d *caddyfile.Dispenser) (*RateLimit, error) {
	field := d.Val()
	args := d.RemainingArgs()
	bad := d.Errf("%s: want <events> <window>, such as 120 1m, or off", field)
	if len(args) == 1 && (args[0] == "off" || args[0] == "0") {
		return &RateLimit{}, nil
	}
	if len(args) != 2 {
		return nil, bad
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n <= 0 {
		return nil, bad
	}
	w, err := caddy.ParseDuration(args[1])
	if err != nil || w <= 0 {
		return nil, bad
	}
	return &RateLimit{Events: n, Window: caddy.Duration(w)}, nil
}

// durationOrOff reads a duration, or `off` (or `0`), which is stored as a
// negative duration: in JSON, an unset duration takes its default.
func durationOrOff(d *caddyfile.Dispenser) (caddy.Duration, error) {
	field := d.Val()
	v, err := caddyargs.One(d)
	if err != nil {
		return 0, err
	}
	if v == "off" || v == "0" {
		return -1, nil
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s: want a duration such as 1h, or off", field)
	}
	return caddy.Duration(dur), nil
}

// durationOrZero reads a duration that may be 0.
func durationOrZero(d *caddyfile.Dispenser) (caddy.Duration, error) {
	field := d.Val()
	v, err := caddyargs.One(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur < 0 {
		return 0, d.Errf("%s: want a duration such as 0, 30s or 1h", field)
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
