package session_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/internal/idptest"
	"github.com/seed-a64a90cf/imagegate/session"
)

// These tests run against Ory Hydra, a real OpenID provider started on
// loopback by internal/idptest (skipped without its binary unless CI is
// set, then failed).

const imgAudience = "https://img.example"

func bearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/img/x/public", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

func TestProviderDiscoveryAndJWTAccessTokens(t *testing.T) {
	p := idptest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The issuer alone: keys from the discovery document's jwks_uri.
	set, err := session.NewDiscoveredJWKS(ctx, p.Issuer(), session.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Err(); err != nil {
		t.Fatalf("discovery against Hydra: %v", err)
	}
	j, err := session.NewJWT(session.JWTConfig{JWKS: set, Issuer: p.Issuer(), Audience: imgAudience})
	if err != nil {
		t.Fatal(err)
	}
	c := p.NewClient(t, imgAudience)
	tok := p.Token(t, c, imgAudience, "")
	id, _, err := j.Authenticate(bearer(tok), session.Image{})
	if err != nil || id.Subject != c.ID {
		t.Fatalf("Hydra's RS256 access token: %+v, %v", id, err)
	}
	if id.TokenID == "" || id.IssuedAt.IsZero() {
		t.Errorf("jti %q, iat %v: want both, for revocations", id.TokenID, id.IssuedAt)
	}
	// A token for another audience is refused.
	other := p.NewClient(t, "https://other.example")
	if _, _, err := j.Authenticate(bearer(p.Token(t, other, "https://other.example", "")), session.Image{}); !errors.Is(err, session.ErrUnauthenticated) {
		t.Fatalf("another audience: %v", err)
	}
	// A revocation at the gateway refuses the cached token.
	rev := session.NewRevocations(session.RevocationsConfig{})
	j2, err := session.NewJWT(session.JWTConfig{JWKS: set, Issuer: p.Issuer(), Audience: imgAudience, Revocations: rev})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := j2.Authenticate(bearer(tok), session.Image{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rev.Revoke(session.RevocationRequest{TokenID: id.TokenID}, session.SourceAdmin); err != nil {
		t.Fatal(err)
	}
	if _, _, err := j2.Authenticate(bearer(tok), session.Image{}); !errors.Is(err, session.ErrRevoked) {
		t.Fatalf("revoked jti: %v", err)
	}
}

func TestProviderIntrospection(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []idptest.Option
	}{{"opaque", []idptest.Option{idptest.OpaqueAccessTokens()}}, {"jwt", nil}} {
		t.Run(mode.name, func(t *testing.T) {
			p := idptest.Start(t, mode.opts...)
			guard := p.GuardedIntrospection(t)
			const cacheTTL = time.Second
			o, err := session.NewOAuth2Introspect(session.OAuth2IntrospectConfig{
				Endpoint:     guard.URL,
				ClientID:     guard.Client.ID,
				ClientSecret: []byte(guard.Client.Secret),
				Audience:     imgAudience,
				Issuer:       p.Issuer(),
				CacheTTL:     cacheTTL,
			})
			if err != nil {
				t.Fatal(err)
			}
			c := p.NewClient(t, imgAudience)
			tok := p.Token(t, c, imgAudience, "")
			id, _, err := o.Authenticate(bearer(tok), session.Image{})
			if err != nil || id.Subject != c.ID {
				t.Fatalf("active token: %+v, %v (guard refused %d)", id, err, guard.Refused())
			}
			if guard.Refused() != 0 || guard.Calls() != 1 {
				t.Fatalf("guard: %d calls, %d refused; want 1 authenticated call", guard.Calls(), guard.Refused())
			}
			if _, ok := id.Claims["exp"].(time.Time); !ok {
				t.Errorf("exp claim %#v, want a time", id.Claims["exp"])
			}
			if _, _, err := o.Authenticate(bearer("not-a-token-hydra-issued"), session.Image{}); !errors.Is(err, session.ErrUnauthenticated) {
				t.Fatalf("unknown token: %v", err)
			}
			// Revoked at the provider: refused within cache_ttl.
			p.Revoke(t, c, tok)
			revoked := time.Now()
			for {
				_, _, err := o.Authenticate(bearer(tok), session.Image{})
				if errors.Is(err, session.ErrUnauthenticated) {
					break
				}
				if err != nil {
					t.Fatalf("after revocation: %v", err)
				}
				if time.Since(revoked) > cacheTTL+500*time.Millisecond {
					t.Fatalf("still accepted %v after revocation at the provider (cache_ttl %v)", time.Since(revoked), cacheTTL)
				}
				time.Sleep(20 * time.Millisecond)
			}
			t.Logf("revoked at Hydra, refused after %v (cache_ttl %v)", time.Since(revoked).Round(time.Millisecond), cacheTTL)
		})
	}
}

func TestProviderBackchannelLogout(t *testing.T) {
	// Hydra signs and POSTs the logout token when the user's session ends;
	// the session's cached access token is refused from then on.
	p := idptest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	set, err := session.NewDiscoveredJWKS(ctx, p.Issuer(), session.JWKSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	rev := session.NewRevocations(session.RevocationsConfig{})
	results := make(chan error, 4)
	var receiver atomic.Pointer[session.BackchannelLogout]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		receiver.Load().ServeHTTP(w, r)
	}))
	defer srv.Close()
	c := p.NewLoginClient(t, srv.URL+"/auth/backchannel-logout", imgAudience)
	b, err := session.NewBackchannelLogout(session.BackchannelLogoutConfig{
		Issuer: p.Issuer(), Audience: c.ID, JWKS: set, Revocations: rev,
		OnResult: func(_ session.Revocation, err error) { results <- err },
	})
	if err != nil {
		t.Fatal(err)
	}
	receiver.Store(b)
	j, err := session.NewJWT(session.JWTConfig{JWKS: set, Issuer: p.Issuer(), Revocations: rev})
	if err != nil {
		t.Fatal(err)
	}
	s := p.Login(t, c, "alice")
	id, _, err := j.Authenticate(bearer(s.AccessToken), session.Image{})
	if err != nil || id.Subject != "alice" || id.SessionID != s.SID {
		t.Fatalf("alice's access token: %+v, %v (want sid %s)", id, err, s.SID)
	}
	p.Logout(t, s)
	select {
	case err := <-results:
		if err != nil {
			t.Fatalf("Hydra's logout token refused: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no logout token from Hydra within 15s")
	}
	if _, _, err := j.Authenticate(bearer(s.AccessToken), session.Image{}); !errors.Is(err, session.ErrRevoked) {
		t.Fatalf("after Hydra's back-channel logout: %v, want ErrRevoked", err)
	}
	if got := rev.List(); len(got) != 1 || got[0].Kind != session.RevokeSession || got[0].Value != s.SID || got[0].Source != session.SourceBackchannel {
		t.Fatalf("recorded %+v", got)
	}
}
