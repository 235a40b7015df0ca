package caddymodule

import (
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/provision"
	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddy.RegisterModule(IntrospectSession{})
}

// IntrospectSession asks the application that owns the session (a Django
// `sessionid`, a Rails or Express cookie) whether the caller is logged in,
// forwarding only the listed cookies and headers. 2xx allows, with the
// caller named by `subject_header`; 401 and 403 deny; anything else or a
// timeout answers 503. Answers are cached under a hash of exactly what was
// forwarded.
type IntrospectSession struct {
	// URL is the application's endpoint that judges a session. Required.
	// Placeholders such as `{env.AUTH_URL}` are resolved at provision time.
	URL string `json:"url,omitempty"`

	// Sources lists the cookies and headers forwarded to the application.
	// A request carrying none of them is refused with 401 without a call.
	Sources []CredentialSource `json:"sources,omitempty"`

	// PerImage forwards `X-Image-Id` and `X-Image-Variant` so the
	// application decides per image; answers are then cached per image.
	// `authorize introspect per_image` turns it on.
	PerImage bool `json:"per_image,omitempty"`

	// SubjectHeader is the response header naming the caller.
	// Default: `X-User-Id`.
	SubjectHeader string `json:"subject_header,omitempty"`

	// Timeout bounds one call to the application. Default: 2s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// CacheTTL is how long an allowing answer is reused. The
	// application's `Cache-Control: max-age`/`no-store` overrides it.
	// Default: 30s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`

	// NegativeTTL is how long a 401/403 answer is reused. Default: 5s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`

	// CacheSize bounds the decision cache (entries). Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	url  string // URL, resolved
	auth *session.Introspect
}

// CaddyModule returns the Caddy module information.
func (IntrospectSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  sessionsNamespace + ".introspect",
		New: func() caddy.Module { return new(IntrospectSession) },
	}
}

// Provision resolves the URL and builds the client.
func (m *IntrospectSession) Provision(caddy.Context) error {
	r := provision.NewResolver()
	m.url = r.Value("url", m.URL)
	if err := r.Err(); err != nil {
		return err
	}
	return m.build()
}

func (m *IntrospectSession) build() error {
	cfg := session.IntrospectConfig{
		URL:           m.url,
		PerImage:      m.PerImage,
		SubjectHeader: m.SubjectHeader,
		Timeout:       time.Duration(m.Timeout),
		CacheTTL:      time.Duration(m.CacheTTL),
		NegativeTTL:   time.Duration(m.NegativeTTL),
		CacheSize:     m.CacheSize,
	}
	for _, s := range m.Sources {
		if s.Cookie != "" {
			cfg.Cookies = append(cfg.Cookies, s.Cookie)
		}
		if s.Header != "" {
			cfg.Headers = append(cfg.Headers, s.Header)
		}
	}
	auth, err := session.NewIntrospect(cfg)
	if err != nil {
		return err
	}
	m.auth = auth
	return nil
}

// DecidePerImage implements PerImageSession: the application decides per
// image, told the image in X-Image-Id and X-Image-Variant.
func (m *IntrospectSession) DecidePerImage() error {
	if m.PerImage {
		return nil
	}
	m.PerImage = true
	return m.build()
}

// Authenticator implements SessionMethod.
func (m *IntrospectSession) Authenticator() session.Authenticator { return m.auth }

// CachesDecisions reports that answers are cached, for the decision-cache
// metrics.
func (m *IntrospectSession) CachesDecisions() bool { return true }

// UnmarshalCaddyfile reads the tokens after `session`. Syntax:
//
//	introspect <url> {
//	    cookie         <name>
//	    header         <name>
//	    per_image
//	    subject_header <header>
//	    timeout        <duration>
//	    cache_ttl      <duration>
//	    negative_ttl   <duration>
//	    cache_size     <entries>
//	}
func (m *IntrospectSession) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the method name
	if !d.NextArg() {
		return d.Errf("the application's URL is required: session introspect <url>")
	}
	m.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		var err error
		switch field := d.Val(); field {
		case "cookie", "header":
			m.Sources, err = appendSource(d, m.Sources)
		case "per_image":
			m.PerImage, err = true, caddyargs.None(d)
		case "subject_header":
			m.SubjectHeader, err = caddyargs.One(d)
		case "timeout":
			m.Timeout, err = caddyargs.Duration(d)
		case "cache_ttl":
			m.CacheTTL, err = caddyargs.Duration(d)
		case "negative_ttl":
			m.NegativeTTL, err = caddyargs.Duration(d)
		case "cache_size":
			m.CacheSize, err = caddyargs.Int(d, 1, "entries")
		default:
			err = d.Errf("unrecognized subdirective %q", field)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ SessionMethod         = (*IntrospectSession)(nil)
	_ PerImageSession       = (*IntrospectSession)(nil)
	_ DecisionCacher        = (*IntrospectSession)(nil)
	_ caddy.Provisioner     = (*IntrospectSession)(nil)
	_ caddyfile.Unmarshaler = (*IntrospectSession)(nil)
)
