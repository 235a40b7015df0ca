// Package config holds the gateway's typed settings: their defaults, their
// validation, and the loading of secrets. It knows nothing of Caddy; the
// Caddy adapter fills a Gateway, resolves placeholders, and calls Validate.
//
// Validation messages name the setting and the fix, because the people who
// read them are operators looking at a Caddyfile.
package config

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageref"
	"github.com/seed-a64a90cf/imagegate/signer"
)

// Defaults.
const (
	DefaultPrefix       = "/img"
	DefaultDeliveryURL  = "https://imagedelivery.net"
	DefaultWindow       = time.Hour
	DefaultMinRemaining = 5 * time.Minute
	ModeRedirect        = "redirect"
	ModeProxy           = "proxy"
)

// Gateway is the gateway's resolved configuration: every secret is already
// loaded and every placeholder replaced.
type Gateway struct {
	Prefix         string
	AccountHash    string
	SigningKey     []byte
	DeliveryURL    string
	Variants       []string
	PublicVariants []string
	Window         signer.Window
	Mode           string

	// Unresolved names the settings whose placeholders or files failed to
	// resolve. Their own errors were reported already, so Validate does
	// not also call them missing or malformed.
	Unresolved map[string]bool
}

// SetDefaults fills every unset field with its default.
func (g *Gateway) SetDefaults() {
	if g.Prefix == "" {
		g.Prefix = DefaultPrefix
	}
	if g.DeliveryURL == "" {
		g.DeliveryURL = DefaultDeliveryURL
	}
	if g.Window.Size == 0 {
		g.Window.Size = DefaultWindow
	}
	if g.Window.MinRemaining == 0 {
		g.Window.MinRemaining = DefaultMinRemaining
	}
	if g.Mode == "" {
		g.Mode = ModeRedirect
	}
	// "/" stays "/": images are then served at /<id>/<variant>.
	if len(g.Prefix) > 1 {
		g.Prefix = strings.TrimSuffix(g.Prefix, "/")
	}
	g.DeliveryURL = strings.TrimSuffix(g.DeliveryURL, "/")
}

// Validate reports every problem in g at once, one per line.
func (g *Gateway) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if g.Prefix == "" || g.Prefix[0] != '/' || strings.ContainsAny(g.Prefix, "?#%") {
		add("prefix: must be a path starting with '/', such as /img")
	}
	if err := validateAccountHash(g.AccountHash); err != nil && !g.Unresolved["account_hash"] {
		errs = append(errs, err)
	}
	if len(g.SigningKey) == 0 && !g.Unresolved["signing_key"] && !g.Unresolved["signing_key_file"] {
		add("signing_key: missing; set signing_key {env.CF_IMAGES_KEY} or signing_key_file <path> (Images > Keys in the Cloudflare dashboard)")
	}
	if err := validateDeliveryURL(g.DeliveryURL); err != nil && !g.Unresolved["delivery_url"] {
		errs = append(errs, err)
	}
	errs = append(errs, validateVariants(g.Variants, g.PublicVariants)...)
	if err := g.Window.Validate(); err != nil {
		errs = append(errs, err)
	}
	if g.Mode != ModeRedirect && g.Mode != ModeProxy {
		add("mode: %q is not supported; use redirect or proxy", g.Mode)
	}
	return errors.Join(errs...)
}

// Warnings returns settings that are valid but risky, for the startup log.
func (g *Gateway) Warnings() []string {
	var w []string
	if g.Window.Size > 24*time.Hour {
		w = append(w, "window is over 24h: a leaked URL stays valid that long")
	}
	return w
}

func validateAccountHash(h string) error {
	switch {
	case h == "":
		return errors.New("account_hash: missing; copy the account hash from Images > Overview in the Cloudflare dashboard (it looks like ZWd9g1K7eljCn_KDTu_MWA)")
	case imageref.IsAccountID(h):
		return errors.New("account_hash: this is a 32-hex account id; delivery URLs need the account hash from Images > Overview (it looks like ZWd9g1K7eljCn_KDTu_MWA)")
	case !imageref.IsURLSafe(h):
		return errors.New("account_hash: may contain only letters, digits, '-' and '_'")
	}
	return nil
}

func validateDeliveryURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("delivery_url: must be an absolute http(s) URL with no query, such as https://imagedelivery.net")
	}
	return nil
}

func validateVariants(signed, public []string) []error {
	var errs []error
	if len(signed)+len(public) == 0 {
		errs = append(errs, errors.New("variants: none configured; list the variants to serve, such as: variants public thumbnail"))
	}
	seen := map[string]string{}
	for _, list := range []struct {
		field string
		names []string
	}{{"variants", signed}, {"public_variants", public}} {
		for _, v := range list.names {
			if !imageref.ValidVariantName(v) {
				errs = append(errs, fmt.Errorf("%s: %q is not a named variant (letters, digits, '-' and '_'; flexible variants cannot be signed)", list.field, v))
				continue
			}
			if prev, dup := seen[v]; dup {
				errs = append(errs, fmt.Errorf("%s: %q is already listed in %s", list.field, v, prev))
			}
			seen[v] = list.field
		}
	}
	return errs
}
