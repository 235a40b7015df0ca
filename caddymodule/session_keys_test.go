package caddymodule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// es256Token signs a token for sub with key, naming kid in its header.
func es256Token(t *testing.T, key *ecdsa.PrivateKey, kid, sub string) string {
	t.Helper()
	tok, err := jwt.NewBuilder().Subject(sub).Expiration(time.Now().Add(time.Hour)).Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAsymmetricKeysFromCaddyConfig wires public_key_file and jwks_url
// through Provision: tokens signed by the right key get a URL, tokens from
// another key get 401.
func TestAsymmetricKeysFromCaddyConfig(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(t.TempDir(), "idp.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}

	pub, err := jwk.Import(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	_ = pub.Set(jwk.KeyIDKey, "k1")
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	doc, _ := json.Marshal(set)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	defer jwks.Close()

	for name, sc := range map[string]json.RawMessage{
		"public_key_file": sessionJSON("jwt", &JWTSession{PublicKeyFile: pemFile}),
		"jwks_url":        sessionJSON("jwt", &JWTSession{JWKSURL: jwks.URL}),
	} {
		h := newTestHandler(t, func(h *Handler) { h.SessionRaw = sc })
		for who, tc := range map[string]struct {
			tok  string
			want int
		}{
			"right key": {es256Token(t, key, "k1", "alice"), 302},
			"other key": {es256Token(t, other, "k1", "mallory"), 401},
		} {
			if w, _ := serve(t, h, "GET", "/img/abc/public", map[string]string{"Authorization": "Bearer " + tc.tok}); w.Code != tc.want {
				t.Errorf("%s, %s: status %d, want %d", name, who, w.Code, tc.want)
			}
		}
		if err := h.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
}
