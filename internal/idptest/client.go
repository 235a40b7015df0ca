package idptest

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// Client is an OAuth 2.0 client registered at the provider. It
// authenticates at the token, revocation and introspection endpoints with
// HTTP Basic (client_secret_basic).
type Client struct {
	// ID is the client_id Hydra assigned.
	ID string
	// Secret is the client_secret.
	Secret string
	// Audience is the audience the client may request tokens for.
	Audience string
	// Scopes are the scopes the client may request.
	Scopes []string
	// RedirectURI is where the authorization-code flow sends the code; it
	// is empty for a client_credentials client.
	RedirectURI string
}

// setBasicAuth authenticates req as c. RFC 6749 §2.3.1 form-encodes the id
// and secret before they are joined.
func (c *Client) setBasicAuth(req *http.Request) {
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
}

// clientRequest is the part of Hydra's OAuth 2.0 client the package sets.
type clientRequest struct {
	Secret                           string   `json:"client_secret"`
	GrantTypes                       []string `json:"grant_types"`
	ResponseTypes                    []string `json:"response_types,omitempty"`
	Scope                            string   `json:"scope"`
	Audience                         []string `json:"audience"`
	TokenEndpointAuthMethod          string   `json:"token_endpoint_auth_method"`
	RedirectURIs                     []string `json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs           []string `json:"post_logout_redirect_uris,omitempty"`
	BackchannelLogoutURI             string   `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool     `json:"backchannel_logout_session_required,omitempty"`
}

// createClient registers req at the provider and returns it as a Client.
func (p *Provider) createClient(t testing.TB, req clientRequest, audience string, scopes []string) Client {
	t.Helper()
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		t.Fatalf("idptest: client secret: %v", err)
	}
	req.Secret = hex.EncodeToString(secret)
	req.TokenEndpointAuthMethod = "client_secret_basic"
	req.Scope = strings.Join(scopes, " ")
	if audience != "" {
		req.Audience = []string{audience}
	} else {
		req.Audience = []string{}
	}
	var created struct {
		ID string `json:"client_id"`
	}
	p.adminJSON(t, http.MethodPost, "/admin/clients", req, &created)
	c := Client{ID: created.ID, Secret: req.Secret, Audience: audience, Scopes: scopes}
	if len(req.RedirectURIs) > 0 {
		c.RedirectURI = req.RedirectURIs[0]
	}
	return c
}

// NewClient registers a client_credentials client that may ask for tokens
// for audience (none when empty) with any of scopes.
func (p *Provider) NewClient(t testing.TB, audience string, scopes ...string) Client {
	t.Helper()
	return p.createClient(t, clientRequest{GrantTypes: []string{"client_credentials"}}, audience, scopes)
}

// Token returns an access token for c (grant client_credentials, so its
// subject is c.ID) for audience and scope (space-separated; either may be
// empty). It is a JWT signed with the provider's keys unless the provider
// runs with OpaqueAccessTokens.
func (p *Provider) Token(t testing.TB, c Client, audience, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if audience != "" {
		form.Set("audience", audience)
	}
	if scope != "" {
		form.Set("scope", scope)
	}
	var tok tokenResponse
	p.postForm(t, p.TokenURL(), &c, form, &tok)
	if tok.AccessToken == "" {
		t.Fatal("idptest: the token endpoint answered no access_token")
	}
	return tok.AccessToken
}

// tokenResponse is the token endpoint's answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	IDToken     string `json:"id_token"`
	ExpiresIn   int64  `json:"expires_in"`
}

// Revoke revokes token at the provider's RFC 7009 endpoint, authenticated
// as c, the client it was issued to. Introspection answers active:false
// for it afterwards.
func (p *Provider) Revoke(t testing.TB, c Client, token string) {
	t.Helper()
	p.postForm(t, p.RevocationURL(), &c, url.Values{"token": {token}}, nil)
}

// Introspection is the provider's RFC 7662 answer about a token. An
// inactive token has only Active, false.
type Introspection struct {
	// Active says whether the token is valid now (not expired, not
	// revoked).
	Active bool `json:"active"`
	// Scope is the granted scopes, space-separated.
	Scope string `json:"scope"`
	// ClientID is the client the token was issued to.
	ClientID string `json:"client_id"`
	// Subject is the user, or the client for client_credentials.
	Subject string `json:"sub"`
	// Audience is the token's audience.
	Audience []string `json:"aud"`
	// Issuer is the provider's issuer.
	Issuer string `json:"iss"`
	// ExpiresAt is the token's exp, in Unix seconds.
	ExpiresAt int64 `json:"exp"`
	// IssuedAt is the token's iat, in Unix seconds.
	IssuedAt int64 `json:"iat"`
	// TokenUse is Hydra's token kind: access_token or refresh_token.
	TokenUse string `json:"token_use"`
	// Ext is the session data the consent put into the access token;
	// for a Session's token it holds "sid".
	Ext map[string]any `json:"ext"`
}

// Expiry returns ExpiresAt as a time.
func (i Introspection) Expiry() time.Time { return time.Unix(i.ExpiresAt, 0) }

// Introspect asks the provider's RFC 7662 endpoint about token, as a
// resource server would (token_type_hint access_token).
func (p *Provider) Introspect(t testing.TB, token string) Introspection {
	t.Helper()
	var in Introspection
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	p.postForm(t, p.IntrospectionURL(), nil, form, &in)
	return in
}
