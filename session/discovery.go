package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// discoveryPath is where an OpenID provider publishes its metadata,
// appended to the issuer (OpenID Connect Discovery 1.0 §4).
const discoveryPath = "/.well-known/openid-configuration"

// DiscoveryURL returns the address of issuer's discovery document: the
// issuer without a trailing "/", then discoveryPath (§4.1).
func DiscoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + discoveryPath
}

// providerMetadata is the part of a discovery document the gateway uses.
type providerMetadata struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// discoverLocked finds the set's URL from the issuer's discovery document
// if it has not been found yet. Once found it is kept for the life of the
// set: the JWKS refresh rules then apply to it.
func (k *JWKS) discoverLocked(ctx context.Context) error {
	if k.url != "" {
		return nil
	}
	body, err := k.get(ctx, DiscoveryURL(k.issuer))
	if err != nil {
		return fmt.Errorf("discovering the issuer's keys: %w", err)
	}
	var m providerMetadata
	if err := json.Unmarshal(body, &m); err != nil {
		return errors.New("discovering the issuer's keys: the discovery document is not JSON")
	}
	// §4.3: a document naming another issuer must not be used, or one
	// provider could vouch for another's tokens.
	if m.Issuer != k.issuer {
		return fmt.Errorf("discovering the issuer's keys: the discovery document names issuer %q, not %q", m.Issuer, k.issuer)
	}
	if !absoluteHTTP(m.JWKSURI) {
		return errors.New("discovering the issuer's keys: the discovery document has no absolute http(s) jwks_uri")
	}
	k.url = m.JWKSURI
	return nil
}
