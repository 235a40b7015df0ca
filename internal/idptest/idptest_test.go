package idptest_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/seed-a64a90cf/imagegate/internal/idptest"
)

const audience = "https://img.example"

// TestClientCredentialsJWT walks the path a resource server sees: discovery,
// a JWT access token verified against the JWKS, introspection, revocation.
func TestClientCredentialsJWT(t *testing.T) {
	p := idptest.Start(t, idptest.AccessTokenLifetime(10*time.Minute))

	var d struct {
		Issuer                string `json:"issuer"`
		JWKSURI               string `json:"jwks_uri"`
		RevocationEndpoint    string `json:"revocation_endpoint"`
		EndSessionEndpoint    string `json:"end_session_endpoint"`
		BackchannelLogout     bool   `json:"backchannel_logout_supported"`
		BackchannelLogoutSess bool   `json:"backchannel_logout_session_supported"`
	}
	getJSON(t, p.DiscoveryURL(), &d)
	if d.Issuer != p.Issuer() || !strings.HasPrefix(p.Issuer(), "http://127.0.0.1:") {
		t.Fatalf("discovery issuer %q, Issuer() %q", d.Issuer, p.Issuer())
	}
	if d.JWKSURI != p.JWKSURL() || d.RevocationEndpoint != p.RevocationURL() {
		t.Errorf("discovery jwks_uri %q revocation_endpoint %q; the provider says %q %q", d.JWKSURI, d.RevocationEndpoint, p.JWKSURL(), p.RevocationURL())
	}
	if !d.BackchannelLogout || !d.BackchannelLogoutSess {
		t.Errorf("discovery does not announce back-channel logout with sid: %+v", d)
	}

	c := p.NewClient(t, audience, "images:read", "images:write")
	tok := p.Token(t, c, audience, "images:read")

	claims := verifyJWT(t, p, tok, jwt.WithAudience(audience))
	t.Logf("Hydra's JWT access token: header %s, claims %v", jwtHeader(t, tok), keys(claims))
	if claims["sub"] != c.ID || claims["client_id"] != c.ID {
		t.Errorf("sub %v client_id %v, want the client %s", claims["sub"], claims["client_id"], c.ID)
	}
	// Hydra lists the granted scopes in "scp" (strategies.jwt.scope_claim
	// defaults to "list"), not in a space-separated "scope".
	if scp, _ := claims["scp"].([]any); !slices.Equal(scp, []any{"images:read"}) {
		t.Errorf("scp %v, want [images:read]", claims["scp"])
	}
	// Hydra rounds iat and exp separately, so they may be a second short.
	if ttl := claims["exp"].(float64) - claims["iat"].(float64); ttl < 599 || ttl > 600 {
		t.Errorf("exp-iat = %vs, want the configured 600s", ttl)
	}

	in := p.Introspect(t, tok)
	if !in.Active || in.ClientID != c.ID || in.Subject != c.ID || in.Scope != "images:read" ||
		!slices.Contains(in.Audience, audience) || in.Issuer != p.Issuer() || in.TokenUse != "access_token" {
		t.Fatalf("introspection before revocation: %+v", in)
	}
	if until := time.Until(in.Expiry()); until <= 9*time.Minute || until > 10*time.Minute {
		t.Errorf("introspected exp is %v away, want about 10m", until)
	}

	p.Revoke(t, c, tok)
	if in := p.Introspect(t, tok); in.Active || in.Subject != "" {
		t.Fatalf("introspection after revocation: %+v, want only active:false", in)
	}
}

// TestOpaqueTokensAndGuardedIntrospection: opaque tokens are checked only
// by introspection, and the guard lets through only its client.
func TestOpaqueTokensAndGuardedIntrospection(t *testing.T) {
	p := idptest.Start(t, idptest.OpaqueAccessTokens())
	c := p.NewClient(t, audience, "images:read")
	tok := p.Token(t, c, audience, "images:read")
	if strings.Count(tok, ".") == 2 {
		if _, err := jws.Parse([]byte(tok)); err == nil {
			t.Fatalf("an opaque token parses as a JWS: %s…", tok[:10])
		}
	}

	g := p.GuardedIntrospection(t)
	form := url.Values{"token": {tok}, "token_type_hint": {"access_token"}}
	if code, _ := postForm(t, g.URL, "", "", form); code != http.StatusUnauthorized {
		t.Errorf("guard without credentials answered %d, want 401", code)
	}
	if code, _ := postForm(t, g.URL, g.Client.ID, "wrong", form); code != http.StatusUnauthorized {
		t.Errorf("guard with a wrong secret answered %d, want 401", code)
	}
	code, body := postForm(t, g.URL, g.Client.ID, g.Client.Secret, form)
	var in idptest.Introspection
	if err := json.Unmarshal(body, &in); code != http.StatusOK || err != nil || !in.Active || in.Subject != c.ID {
		t.Fatalf("guarded introspection answered %d %s", code, body)
	}
	if g.Calls() != 1 || g.Refused() != 2 {
		t.Errorf("guard counted %d calls and %d refusals, want 1 and 2", g.Calls(), g.Refused())
	}

	p.Revoke(t, c, tok)
	if in := p.Introspect(t, tok); in.Active {
		t.Fatalf("revoked opaque token still active: %+v", in)
	}
}

// TestBackchannelLogout: a user logs in through a relying party with a
// backchannel_logout_uri; logging out makes Hydra POST a logout token,
// signed with its keys, naming the session.
func TestBackchannelLogout(t *testing.T) {
	p := idptest.Start(t)
	tokens := make(chan string, 4)
	rp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.ParseForm() == nil {
			tokens <- r.PostForm.Get("logout_token")
		}
		w.Header().Set("Cache-Control", "no-store")
	}))
	t.Cleanup(rp.Close)

	c := p.NewLoginClient(t, rp.URL+"/backchannel-logout", audience, "images:read")
	s := p.Login(t, c, "alice")
	if s.SID == "" {
		t.Fatal("Login returned no sid")
	}
	id := verifyJWT(t, p, s.IDToken, jwt.WithAudience(c.ID))
	if id["sub"] != "alice" || id["sid"] != s.SID {
		t.Errorf("ID token sub %v sid %v, want alice %s", id["sub"], id["sid"], s.SID)
	}
	at := verifyJWT(t, p, s.AccessToken, jwt.WithAudience(audience))
	t.Logf("a user's JWT access token: claims %v, aud %v", keys(at), at["aud"])
	if at["sub"] != "alice" || at["sid"] != s.SID {
		t.Errorf("access token sub %v sid %v, want alice %s", at["sub"], at["sid"], s.SID)
	}

	p.Logout(t, s)
	lt := waitLogoutToken(t, p, tokens)
	logout := verifyJWT(t, p, lt, jwt.WithAudience(c.ID))
	events, _ := logout["events"].(map[string]any)
	if _, ok := events["http://schemas.openid.net/event/backchannel-logout"]; !ok || logout["sid"] != s.SID {
		t.Errorf("logout token events %v sid %v, want the back-channel logout event and %s", logout["events"], logout["sid"], s.SID)
	}
	if _, ok := logout["nonce"]; ok {
		t.Error("logout token carries a nonce")
	}
	t.Logf("Hydra's logout token: header %s, claims %v", jwtHeader(t, lt), keys(logout))

	// An operator ending a session from the admin API sends one too.
	s2 := p.Login(t, c, "bob")
	p.EndLoginSession(t, s2.SID)
	if got := verifyJWT(t, p, waitLogoutToken(t, p, tokens), jwt.WithAudience(c.ID)); got["sid"] != s2.SID {
		t.Errorf("admin logout token sid %v, want %s", got["sid"], s2.SID)
	}
}

// waitLogoutToken waits a bounded time for the relying party to receive a
// logout token.
func waitLogoutToken(t *testing.T, p *idptest.Provider, tokens <-chan string) string {
	t.Helper()
	select {
	case lt := <-tokens:
		return lt
	case <-time.After(15 * time.Second):
		t.Fatalf("no logout token within 15s; hydra's output:\n%s", p.Output())
		return ""
	}
}

// verifyJWT verifies tok's signature against the provider's JWKS and its
// iss, exp and the given options, and returns its claims.
func verifyJWT(t *testing.T, p *idptest.Provider, tok string, opts ...jwt.ParseOption) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	set, err := jwk.Fetch(ctx, p.JWKSURL())
	if err != nil {
		t.Fatalf("fetch JWKS: %v", err)
	}
	opts = append(opts, jwt.WithKeySet(set), jwt.WithIssuer(p.Issuer()), jwt.WithValidate(true))
	if _, err := jwt.Parse([]byte(tok), opts...); err != nil {
		t.Fatalf("the token does not verify against the provider's JWKS: %v", err)
	}
	msg, err := jws.Parse([]byte(tok))
	if err != nil {
		t.Fatal(err)
	}
	if alg, _ := msg.Signatures()[0].ProtectedHeaders().Algorithm(); alg.String() != "RS256" {
		t.Errorf("alg %v, want RS256", alg)
	}
	var claims map[string]any
	if err := json.Unmarshal(msg.Payload(), &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

// jwtHeader returns tok's decoded JOSE header.
func jwtHeader(t *testing.T, tok string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.SplitN(tok, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// keys returns m's keys, sorted.
func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// getJSON GETs u and decodes its JSON answer into out.
func getJSON(t *testing.T, u string, out any) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
}

// postForm POSTs form to u, with HTTP Basic when id is not empty, and
// returns the status and body.
func postForm(t *testing.T, u, id, secret string, form url.Values) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}
