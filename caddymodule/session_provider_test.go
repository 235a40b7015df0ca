package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/internal/idptest"
)

// Against Ory Hydra on loopback (internal/idptest): what an operator
// configures, through the handler.

func TestProviderThroughCaddy(t *testing.T) {
	const aud = "https://img.example"
	p := idptest.Start(t, idptest.OpaqueAccessTokens())
	guard := p.GuardedIntrospection(t)
	t.Setenv("TEST_HYDRA_SECRET", guard.Client.Secret)
	// session jwt with the issuer alone would see only opaque tokens here,
	// so it gets its own provider issuing JWTs.
	pj := idptest.Start(t)
	jwtHandler := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Issuer: pj.Issuer(), Audience: aud})
	})
	introspectHandler := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("oauth2_introspect", &OAuth2IntrospectSession{
			Endpoint: guard.URL, ClientID: guard.Client.ID, ClientSecret: "{env.TEST_HYDRA_SECRET}",
			Audience: aud, Issuer: p.Issuer(), CacheTTL: caddy.Duration(time.Second),
		})
	})
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

	jwtTok := pj.Token(t, pj.NewClient(t, aud), aud, "")
	if w, _ := serve(t, jwtHandler, "GET", "/img/abc/public", bearer(jwtTok)); w.Code != 302 {
		t.Fatalf("session jwt, issuer alone, Hydra's JWT: %d, want 302", w.Code)
	}
	c := p.NewClient(t, aud)
	tok := p.Token(t, c, aud, "")
	if w, _ := serve(t, introspectHandler, "GET", "/img/abc/public", bearer(tok)); w.Code != 302 {
		t.Fatalf("session oauth2_introspect, Hydra's opaque token: %d, want 302", w.Code)
	}
	p.Revoke(t, c, tok)
	revoked := time.Now()
	for {
		w, _ := serve(t, introspectHandler, "GET", "/img/abc/public", bearer(tok))
		if w.Code == 401 {
			break
		}
		if w.Code != 302 || time.Since(revoked) > 1500*time.Millisecond {
			t.Fatalf("%v after revocation at Hydra: %d (cache_ttl 1s)", time.Since(revoked), w.Code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
