package session

import (
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// MintHS256 returns a development token for sub signed with secret, issued
// at now and expiring ttl later, carrying claims as extra string claims.
// It is meant for the "imagegate cf-images-token" command and tests, not for
// production identity providers.
func MintHS256(secret []byte, sub string, ttl time.Duration, claims map[string]string, now time.Time) (string, error) {
	if len(secret) < minHMACSecret {
		return "", fmt.Errorf("minting token: secret is %d bytes, need at least %d", len(secret), minHMACSecret)
	}
	if sub == "" {
		return "", errors.New("minting token: empty subject")
	}
	if ttl <= 0 {
		return "", errors.New("minting token: ttl must be positive")
	}
	t := jwt.New()
	for k, v := range claims {
		if err := t.Set(k, v); err != nil {
			return "", fmt.Errorf("minting token: claim %q: %v", k, err)
		}
	}
	// Set the registered claims last so --claim cannot override them.
	for k, v := range map[string]any{
		jwt.SubjectKey:    sub,
		jwt.IssuedAtKey:   now,
		jwt.ExpirationKey: now.Add(ttl),
	} {
		if err := t.Set(k, v); err != nil {
			return "", fmt.Errorf("minting token: claim %q: %v", k, err)
		}
	}
	signed, err := jwt.Sign(t, jwt.WithKey(jwa.HS256(), secret))
	if err != nil {
		return "", fmt.Errorf("minting token: %v", err)
	}
	return string(signed), nil
}
