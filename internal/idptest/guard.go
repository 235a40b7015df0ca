package idptest

import (
	"crypto/subtle"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
)

// IntrospectionGuard is a loopback proxy in front of the provider's
// introspection endpoint that lets through only requests authenticated
// with HTTP Basic as Client, as the proxy or network boundary Hydra
// expects in front of its admin API would. It lets a test see that the
// caller authenticates, and count how often it asks.
type IntrospectionGuard struct {
	// URL is the guarded RFC 7662 endpoint.
	URL string
	// Client is the only client it lets through.
	Client Client

	calls   atomic.Int64
	refused atomic.Int64
}

// Calls returns how many authenticated introspection requests the guard
// passed on to the provider.
func (g *IntrospectionGuard) Calls() int { return int(g.calls.Load()) }

// Refused returns how many requests it refused with 401.
func (g *IntrospectionGuard) Refused() int { return int(g.refused.Load()) }

// GuardedIntrospection starts an IntrospectionGuard for t, with a new
// client registered at the provider, and stops it when t ends.
func (p *Provider) GuardedIntrospection(t testing.TB) *IntrospectionGuard {
	t.Helper()
	g := &IntrospectionGuard{Client: p.NewClient(t, "")}
	target, err := url.Parse(p.IntrospectionURL())
	if err != nil {
		t.Fatalf("idptest: %v", err)
	}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.Out.URL = target
		r.Out.Host = target.Host
		r.Out.Header.Del("Authorization")
	}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.authenticated(r) {
			g.refused.Add(1)
			w.Header().Set("WWW-Authenticate", `Basic realm="introspection"`)
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		g.calls.Add(1)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL + "/oauth2/introspect"
	return g
}

// authenticated reports whether r carries g.Client's credentials, decoded
// as RFC 6749 §2.3.1 says.
func (g *IntrospectionGuard) authenticated(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		return false
	}
	id, err1 := url.QueryUnescape(id)
	secret, err2 := url.QueryUnescape(secret)
	if err1 != nil || err2 != nil {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(id), []byte(g.Client.ID)) == 1 &&
		subtle.ConstantTimeCompare([]byte(secret), []byte(g.Client.Secret)) == 1
}
