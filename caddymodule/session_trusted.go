package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddy.RegisterModule(CaddyAuthSession{})
	caddy.RegisterModule(NoSession{})
}

// CaddyAuthSession trusts an earlier Caddy `authentication` handler
// (basic_auth, forward_auth with copy_headers, caddy-security, …): the
// caller is `{http.auth.user.id}`, and a request without it gets 401.
type CaddyAuthSession struct{}

// CaddyModule returns the Caddy module information.
func (CaddyAuthSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  sessionsNamespace + ".caddy_auth",
		New: func() caddy.Module { return new(CaddyAuthSession) },
	}
}

// Authenticator implements SessionMethod.
func (CaddyAuthSession) Authenticator() session.Authenticator {
	return session.Trusted{User: upstreamUser}
}

// UnmarshalCaddyfile reads `caddy_auth`, which takes no settings.
func (*CaddyAuthSession) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noSettings(d)
}

// upstreamUser reads the user an earlier Caddy authentication handler set.
func upstreamUser(r *http.Request) string {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return ""
	}
	return repl.ReplaceAll("{http.auth.user.id}", "")
}

// NoSession lets every caller in, anonymously: explicit public access,
// logged as a warning at start. It cannot be combined with policies or
// uploads that need to know who the caller is.
type NoSession struct{}

// CaddyModule returns the Caddy module information.
func (NoSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  sessionsNamespace + ".none",
		New: func() caddy.Module { return new(NoSession) },
	}
}

// Provision warns that every image is public.
func (NoSession) Provision(ctx caddy.Context) error {
	ctx.Logger().Warn("session none: every caller can see every image; configure a session method unless these images are meant to be public")
	return nil
}

// Authenticator implements SessionMethod.
func (NoSession) Authenticator() session.Authenticator { return session.None{} }

// Anonymous implements AnonymousSession: none names no caller.
func (NoSession) Anonymous() bool { return true }

// UnmarshalCaddyfile reads `none`, which takes no settings.
func (*NoSession) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return noSettings(d)
}

// noSettings reads a guest module's name and refuses anything after it.
func noSettings(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(0) {
		return d.Errf("%s takes no settings", d.Val())
	}
	return nil
}

// Interface guards
var (
	_ SessionMethod         = (*CaddyAuthSession)(nil)
	_ SessionMethod         = (*NoSession)(nil)
	_ AnonymousSession      = (*NoSession)(nil)
	_ caddy.Provisioner     = (*NoSession)(nil)
	_ caddyfile.Unmarshaler = (*CaddyAuthSession)(nil)
	_ caddyfile.Unmarshaler = (*NoSession)(nil)
)
