package caddymodule_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/seed-a64a90cf/imagegate/caddymodule"
	"github.com/seed-a64a90cf/imagegate/session"
)

// A third party's guest modules, registered from outside the package as a
// plugin built in with xcaddy would be: a session method that implements
// every capability interface, each switchable from its JSON, and a policy
// that decides from image metadata. A plugin registers in init; these are
// registered when the test first needs them instead, because this file is
// linked into the package's test binary and TestGuestModules lists exactly
// the built-in modules of each namespace.
var registerExtModules = sync.OnceFunc(func() {
	caddy.RegisterModule(extSession{})
	caddy.RegisterModule(extMetadataPolicy{})
})

// extSession names the caller from X-Test-User, with the grants of
// X-Test-Grant as its `images` claim, and reports a cached decision when
// X-Test-Cached is 1. Once asked to decide per image, it refuses the image
// named `secret`.
type extSession struct {
	IsAnonymous bool `json:"anonymous,omitempty"`
	NoClaims    bool `json:"no_claims,omitempty"`
	NoCache     bool `json:"no_cache,omitempty"`

	perImage bool
}

// decidePerImageCalls counts DecidePerImage calls across every instance.
var decidePerImageCalls atomic.Int64

func (extSession) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cf_images.sessions.testext",
		New: func() caddy.Module { return new(extSession) },
	}
}

func (m *extSession) Authenticator() session.Authenticator { return extAuthenticator{m} }
func (m *extSession) BearsClaims() bool                    { return !m.NoClaims }
func (m *extSession) Anonymous() bool                      { return m.IsAnonymous }
func (m *extSession) CachesDecisions() bool                { return !m.NoCache }
func (m *extSession) DecidePerImage() error {
	decidePerImageCalls.Add(1)
	m.perImage = true
	return nil
}

type extAuthenticator struct{ m *extSession }

func (a extAuthenticator) Authenticate(r *http.Request, img session.Image) (session.Identity, session.Outcome, error) {
	user := r.Header.Get("X-Test-User")
	if user == "" {
		return session.Identity{}, session.Outcome{}, fmt.Errorf("%w: no X-Test-User", session.ErrUnauthenticated)
	}
	o := session.Outcome{CacheHit: r.Header.Get("X-Test-Cached") == "1"}
	if a.m.perImage && img.ID == "secret" {
		return session.Identity{}, o, fmt.Errorf("%w: not this image", session.ErrForbidden)
	}
	return session.Identity{Subject: user, Claims: map[string]any{"images": r.Header.Get("X-Test-Grant")}}, o, nil
}

func (extAuthenticator) Challenge() string { return "" }
func (extAuthenticator) Vary() []string    { return []string{"X-Test-User"} }

// extMetadataPolicy allows every caller, and says it reads the metadata
// field Field, as `authorize owner` does.
type extMetadataPolicy struct {
	Field string `json:"field,omitempty"`
}

func (extMetadataPolicy) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.cf_images.authorizers.testext_meta",
		New: func() caddy.Module { return new(extMetadataPolicy) },
	}
}

func (p *extMetadataPolicy) Policy(caddymodule.AuthorizerEnv) (session.Policy, error) {
	return session.Any{}, nil
}
func (p *extMetadataPolicy) OwnerField() string { return p.Field }

// Interface guards: the session takes part in every capability.
var (
	_ caddymodule.SessionMethod    = (*extSession)(nil)
	_ caddymodule.ClaimBearer      = (*extSession)(nil)
	_ caddymodule.AnonymousSession = (*extSession)(nil)
	_ caddymodule.DecisionCacher   = (*extSession)(nil)
	_ caddymodule.PerImageSession  = (*extSession)(nil)
	_ caddymodule.Authorizer       = (*extMetadataPolicy)(nil)
	_ caddymodule.MetadataPolicy   = (*extMetadataPolicy)(nil)
)

// routeHandler holds a handler as a route does in Caddy's config.
type routeHandler struct {
	HandlerRaw json.RawMessage `caddy:"namespace=http.handlers inline_key=handler"`
}

// extHandler loads a cf_images handler from JSON (the common settings
// plus extra fields) as Caddy loads a route's handler, and returns it with
// the metrics registry of its config.
func extHandler(t *testing.T, extra string) (*caddymodule.Handler, func() []*dto.MetricFamily, error) {
	t.Helper()
	registerExtModules()
	base, err := caddy.ProvisionContext(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := caddy.NewContext(base)
	t.Cleanup(cancel)
	raw := `{"handler": "cf_images", "account_hash": "AccHash_x1", "signing_key": "ext-test-key",
		"variants": ["public"], ` + extra + `}`
	v, err := ctx.LoadModule(&routeHandler{HandlerRaw: json.RawMessage(raw)}, "HandlerRaw")
	if err != nil {
		return nil, nil, err
	}
	gather := func() []*dto.MetricFamily {
		mfs, err := ctx.GetMetricsRegistry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		return mfs
	}
	return v.(*caddymodule.Handler), gather, nil
}

// extServe sends one GET through h and returns the status Caddy would
// answer.
func extServe(t *testing.T, h *caddymodule.Handler, target string, hdr map[string]string) int {
	t.Helper()
	r := httptest.NewRequest("GET", target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	caddyhttp.NewTestReplacer(r)
	w := httptest.NewRecorder()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
	if err != nil {
		var he caddyhttp.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("ServeHTTP: %v", err)
		}
		return he.StatusCode
	}
	return w.Code
}

// counter reads a counter of the testext method, 0 when absent.
func counter(mfs []*dto.MetricFamily, name string) float64 {
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && l.GetValue() == "testext" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// apiAccount is a Cloudflare account on a closed loopback port: settings
// that must resolve, for a client that is never called.
const apiAccount = `"account_id": "0123456789abcdef0123456789abcdef", "api_token": "ext-token",
	"api_url": "http://127.0.0.1:1/client/v4"`

// TestExternalGuestCapabilities: a session method and a policy from
// outside the package take part in every capability, exactly as the
// built-in ones do.
func TestExternalGuestCapabilities(t *testing.T) {
	const ext = `"session": {"method": "testext"}`
	alice := map[string]string{"X-Test-User": "alice", "X-Test-Grant": "img:mine"}

	t.Run("ClaimBearer: authorize claim accepts it and decides by its claims", func(t *testing.T) {
		h, _, err := extHandler(t, ext+`, "authorize": {"policy": "claim", "claim": "images", "template": "img:{id}"}`)
		if err != nil {
			t.Fatalf("authorize claim refused a session that bears claims: %v", err)
		}
		if got := extServe(t, h, "/img/mine/public", alice); got != 302 {
			t.Errorf("granted image: %d, want 302", got)
		}
		if got := extServe(t, h, "/img/theirs/public", alice); got != 403 {
			t.Errorf("image not granted: %d, want 403", got)
		}
		_, _, err = extHandler(t, `"session": {"method": "testext", "no_claims": true}, "authorize": {"policy": "claim", "claim": "images", "template": "img:{id}"}`)
		if err == nil || !strings.Contains(err.Error(), "claims") {
			t.Errorf("authorize claim with a session that bears no claims: %v, want a refusal", err)
		}
	})

	t.Run("PerImageSession: authorize introspect per_image calls DecidePerImage once", func(t *testing.T) {
		before := decidePerImageCalls.Load()
		h, _, err := extHandler(t, ext+`, "authorize": {"policy": "introspect"}`)
		if err != nil {
			t.Fatalf("authorize introspect refused a per-image session: %v", err)
		}
		if n := decidePerImageCalls.Load() - before; n != 1 {
			t.Fatalf("DecidePerImage called %d times, want 1", n)
		}
		if got := extServe(t, h, "/img/secret/public", alice); got != 403 {
			t.Errorf("the session's per-image refusal: %d, want 403", got)
		}
		if got := extServe(t, h, "/img/other/public", alice); got != 302 {
			t.Errorf("another image: %d, want 302", got)
		}
		before = decidePerImageCalls.Load()
		if _, _, err := extHandler(t, ext); err != nil {
			t.Fatal(err)
		}
		if n := decidePerImageCalls.Load() - before; n != 0 {
			t.Errorf("DecidePerImage called %d times without authorize introspect", n)
		}
	})

	t.Run("DecisionCacher: the decision-cache metrics count its hits and misses", func(t *testing.T) {
		for _, tc := range []struct {
			session      string
			hits, misses float64
			what         string
		}{
			{ext, 1, 1, "a caching method"},
			{`"session": {"method": "testext", "no_cache": true}`, 1, 0, "a method that caches nothing"},
		} {
			h, gather, err := extHandler(t, tc.session)
			if err != nil {
				t.Fatal(err)
			}
			mfs := gather()
			hits0, misses0 := counter(mfs, "imagegate_decision_cache_hits_total"), counter(mfs, "imagegate_decision_cache_misses_total")
			extServe(t, h, "/img/a/public", alice)
			extServe(t, h, "/img/a/public", map[string]string{"X-Test-User": "alice", "X-Test-Cached": "1"})
			mfs = gather()
			hits, misses := counter(mfs, "imagegate_decision_cache_hits_total")-hits0, counter(mfs, "imagegate_decision_cache_misses_total")-misses0
			if hits != tc.hits || misses != tc.misses {
				t.Errorf("%s: %v hits and %v misses counted, want %v and %v", tc.what, hits, misses, tc.hits, tc.misses)
			}
		}
	})

	t.Run("AnonymousSession: uploads and authorize owner refuse an anonymous method", func(t *testing.T) {
		anon := `"session": {"method": "testext", "anonymous": true}, ` + apiAccount
		for _, tc := range []struct{ name, extra, says string }{
			{"uploads", `, "upload": {"path": "/img/upload"}`, "upload"},
			{"owner", `, "authorize": {"policy": "owner"}`, "owner"},
		} {
			_, _, err := extHandler(t, anon+tc.extra)
			if err == nil || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "names the caller") {
				t.Errorf("%s with an anonymous session: %v, want a refusal", tc.name, err)
			}
			if _, _, err := extHandler(t, ext+", "+apiAccount+tc.extra); err != nil {
				t.Errorf("%s with a session that names the caller: %v", tc.name, err)
			}
		}
	})

	t.Run("MetadataPolicy: uploads must stamp the field the policy reads", func(t *testing.T) {
		_, _, err := extHandler(t, ext+", "+apiAccount+`, "authorize": {"policy": "testext_meta", "field": "uploader"},
			"upload": {"path": "/img/upload"}`)
		if err == nil || !strings.Contains(err.Error(), "testext_meta") || !strings.Contains(err.Error(), `"owner"`) {
			t.Errorf("a metadata policy reading another field than uploads stamp: %v, want a refusal naming both", err)
		}
		if _, _, err := extHandler(t, ext+", "+apiAccount+`, "authorize": {"policy": "testext_meta", "field": "uploader"},
			"upload": {"path": "/img/upload", "owner_field": "uploader"}`); err != nil {
			t.Errorf("the same field on both: %v", err)
		}
		// Owner settings written flat on the handler apply to a metadata
		// policy, so they are not refused as having no effect.
		if _, _, err := extHandler(t, ext+`, "authorize": {"policy": "testext_meta", "field": "owner"}, "metadata_ttl": 60000000000`); err != nil {
			t.Errorf("metadata_ttl with a metadata policy: %v", err)
		}
	})
}
