package caddymodule

import (
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/seed-a64a90cf/imagegate/session"
)

// RevocationsHolder is implemented by an app that owns the revocation set
// its sessions consult: the `cf_images` app, which shares it with the
// fleet through Redis and serves the admin revocation routes.
type RevocationsHolder interface {
	Revocations() *session.Revocations
}

// processRevocations is the revocation set of a process whose config has
// no app holding one: per replica, and kept across config reloads so a
// reload does not forget who was logged out.
var processRevocations = sync.OnceValue(func() *session.Revocations {
	return session.NewRevocations(session.RevocationsConfig{})
})

// sessionRevocations returns the revocation set the sessions of ctx's
// config consult: the `cf_images` app's if it holds one, else the
// process's.
func sessionRevocations(ctx caddy.Context) *session.Revocations {
	if app, err := ctx.AppIfConfigured(appName); err == nil {
		if h, ok := app.(RevocationsHolder); ok {
			if set := h.Revocations(); set != nil {
				return set
			}
		}
	}
	return processRevocations()
}

// LogoutReceiver is implemented by session methods that accept OpenID
// Connect Back-Channel Logout requests: the handler passes a request for
// Path to Handler instead of serving an image.
type LogoutReceiver interface {
	// LogoutRoute returns the site path logout tokens are POSTed to and
	// the handler that validates and records them, or "" and nil when
	// back-channel logout is not configured.
	LogoutRoute() (path string, h http.Handler)
}

// logoutResultLogger logs each back-channel logout request's outcome
// without the token: what was recorded, or why the token was refused.
func logoutResultLogger(logger *zap.Logger) func(session.Revocation, error) {
	return func(rev session.Revocation, err error) {
		if err != nil {
			logger.Info("back-channel logout refused", zap.Error(err))
			return
		}
		logger.Info("back-channel logout", zap.String("revoked", string(rev.Kind)))
	}
}

// discoveryLogger logs an identity provider's outage once, and its
// recovery once.
func discoveryLogger(logger *zap.Logger, what string) func(error) {
	return func(err error) {
		if err != nil {
			logger.Warn(what+" unavailable: sessions answer 503 until it loads; retrying with backoff", zap.Error(err))
			return
		}
		logger.Info(what + " loaded")
	}
}
