package idptest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
)

// Session is a user's login at the provider, made by Login: the browser's
// cookies at the provider and the tokens the relying party got.
type Session struct {
	// Subject is the user, the sub of the tokens.
	Subject string
	// SID is the provider's login session id: the sid claim of the ID
	// token, of the JWT access token, and of the logout token Hydra sends
	// when the session ends.
	SID string
	// IDToken is the OpenID Connect ID token.
	IDToken string
	// AccessToken is the user's access token (a JWT unless the provider
	// runs with OpaqueAccessTokens).
	AccessToken string

	client  Client
	browser *http.Client
}

// NewLoginClient registers a relying party that logs users in with the
// authorization-code flow and may ask for audience and scopes (openid is
// added). When backchannelLogoutURI is not empty, Hydra POSTs a logout
// token there when a session the client took part in ends (see Logout),
// with the sid (backchannel_logout_session_required).
func (p *Provider) NewLoginClient(t testing.TB, backchannelLogoutURI, audience string, scopes ...string) Client {
	t.Helper()
	req := clientRequest{
		GrantTypes:             []string{"authorization_code"},
		ResponseTypes:          []string{"code"},
		RedirectURIs:           []string{nowhere + "/callback"},
		PostLogoutRedirectURIs: []string{nowhere + "/logged-out"},
	}
	if backchannelLogoutURI != "" {
		req.BackchannelLogoutURI = backchannelLogoutURI
		req.BackchannelLogoutSessionRequired = true
	}
	return p.createClient(t, req, audience, append([]string{"openid"}, scopes...))
}

// Login logs subject in at the provider through c, a client from
// NewLoginClient, and returns the session: it plays the browser through
// the authorization-code flow, accepts the login (remembered, so the
// session can be logged out later) and the consent (every requested scope
// and audience) at the admin API, and exchanges the code for tokens.
func (p *Provider) Login(t testing.TB, c Client, subject string) *Session {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("idptest: cookie jar: %v", err)
	}
	s := &Session{Subject: subject, client: c, browser: &http.Client{
		Jar:           jar,
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}

	q := url.Values{
		"client_id":     {c.ID},
		"response_type": {"code"},
		"scope":         {strings.Join(c.Scopes, " ")},
		"redirect_uri":  {c.RedirectURI},
		"state":         {randomString(t)},
		"nonce":         {randomString(t)},
	}
	if c.Audience != "" {
		q.Set("audience", c.Audience)
	}
	loc := p.browse(t, s, p.public+"/oauth2/auth?"+q.Encode())
	challenge := challengeAt(t, loc, "/login", "login_challenge")

	var next redirect
	p.adminJSON(t, http.MethodPut, queryPath("/admin/oauth2/auth/requests/login/accept", "login_challenge", challenge),
		map[string]any{"subject": subject, "remember": true, "remember_for": 0}, &next)
	loc = p.browse(t, s, next.To)
	challenge = challengeAt(t, loc, "/consent", "consent_challenge")

	var consent struct {
		Scopes         []string `json:"requested_scope"`
		Audience       []string `json:"requested_access_token_audience"`
		LoginSessionID string   `json:"login_session_id"`
	}
	p.adminJSON(t, http.MethodGet, queryPath("/admin/oauth2/auth/requests/consent", "consent_challenge", challenge), nil, &consent)
	s.SID = consent.LoginSessionID
	p.adminJSON(t, http.MethodPut, queryPath("/admin/oauth2/auth/requests/consent/accept", "consent_challenge", challenge),
		map[string]any{
			"grant_scope":                 consent.Scopes,
			"grant_access_token_audience": consent.Audience,
			"session": map[string]any{
				"access_token": map[string]any{"sid": consent.LoginSessionID},
			},
		}, &next)
	loc = p.browse(t, s, next.To)
	code := challengeAt(t, loc, "/callback", "code")

	var tok tokenResponse
	p.postForm(t, p.TokenURL(), &c, url.Values{
		"grant_type":   {"authorization_code"},
		"code":         {code},
		"redirect_uri": {c.RedirectURI},
	}, &tok)
	if tok.AccessToken == "" || tok.IDToken == "" {
		t.Fatal("idptest: the code exchange answered no access_token or id_token")
	}
	s.AccessToken, s.IDToken = tok.AccessToken, tok.IDToken
	return s
}

// Logout ends s the way a relying party's "log out" button does
// (RP-initiated logout with the ID token as hint): the browser goes to the
// provider's end-session endpoint, the logout is accepted at the admin
// API, and the browser follows the provider's redirect. Hydra then POSTs a
// logout token for s.SID, signed with its ID-token key, to the
// backchannel_logout_uri of every client that took part in the session.
// It sends it asynchronously, maybe after Logout returns, and retries
// twice on a connection error or a 5xx.
func (p *Provider) Logout(t testing.TB, s *Session) {
	t.Helper()
	q := url.Values{
		"id_token_hint":            {s.IDToken},
		"post_logout_redirect_uri": {nowhere + "/logged-out"},
		"state":                    {randomString(t)},
	}
	loc := p.browse(t, s, p.public+"/oauth2/sessions/logout?"+q.Encode())
	challenge := challengeAt(t, loc, "/logout", "logout_challenge")
	var next redirect
	p.adminJSON(t, http.MethodPut, queryPath("/admin/oauth2/auth/requests/logout/accept", "logout_challenge", challenge), nil, &next)
	loc = p.browse(t, s, next.To)
	if loc.Path != "/logged-out" {
		t.Fatalf("idptest: logout ended at %s, not at the post-logout redirect", loc.Redacted())
	}
}

// EndLoginSession ends the login session sid from the provider's admin
// API, as an operator would; Hydra then sends the same back-channel
// logout tokens as Logout does.
func (p *Provider) EndLoginSession(t testing.TB, sid string) {
	t.Helper()
	p.adminJSON(t, http.MethodDelete, queryPath("/admin/oauth2/auth/sessions/login", "sid", sid), nil, nil)
}

// redirect is the admin API's answer to accepting a challenge.
type redirect struct {
	To string `json:"redirect_to"`
}

// browse GETs u with s's browser and follows the provider's redirects
// until one leads away from the provider; it returns that location.
func (p *Provider) browse(t testing.TB, s *Session, u string) *url.URL {
	t.Helper()
	for hops := 0; hops < 10; hops++ {
		ctx, cancel := requestContext()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			cancel()
			t.Fatalf("idptest: %v", err)
		}
		resp, err := s.browser.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("idptest: GET %s: %v", req.URL.Path, err)
		}
		loc, locErr := resp.Location()
		resp.Body.Close()
		cancel()
		if resp.StatusCode/100 != 3 || locErr != nil {
			t.Fatalf("idptest: GET %s answered %s, not a redirect", req.URL.Path, resp.Status)
		}
		if loc.Scheme+"://"+loc.Host != p.public {
			return loc
		}
		u = loc.String()
	}
	t.Fatal("idptest: more than 10 redirects at the provider")
	return nil
}

// challengeAt fails t unless loc is the screen at path, and returns its
// query parameter name.
func challengeAt(t testing.TB, loc *url.URL, path, name string) string {
	t.Helper()
	v := loc.Query().Get(name)
	if loc.Path != path || v == "" {
		// The location may carry an error from the provider; it names no
		// secret, the flow has not produced one.
		t.Fatalf("idptest: expected a redirect to %s with %s, got %s", path, name, loc.Redacted())
	}
	return v
}

// randomString returns 32 random hex characters, for state and nonce.
func randomString(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("idptest: %v", err)
	}
	return hex.EncodeToString(b)
}
