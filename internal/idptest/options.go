package idptest

import "time"

// An Option changes how Start configures the provider.
type Option func(*settings)

// settings is what the options decide; defaults are in defaultSettings.
type settings struct {
	accessTokenStrategy string        // "jwt" or "opaque"
	accessTokenTTL      time.Duration // Hydra's ttl.access_token
	idTokenTTL          time.Duration // Hydra's ttl.id_token
}

func defaultSettings() settings {
	return settings{accessTokenStrategy: "jwt", accessTokenTTL: time.Hour, idTokenTTL: time.Hour}
}

// OpaqueAccessTokens makes the provider issue opaque access tokens, which
// only introspection can check, instead of JWTs signed with its keys.
func OpaqueAccessTokens() Option {
	return func(s *settings) { s.accessTokenStrategy = "opaque" }
}

// AccessTokenLifetime sets how long access tokens are valid (an hour by
// default). Hydra counts whole seconds.
func AccessTokenLifetime(d time.Duration) Option {
	return func(s *settings) { s.accessTokenTTL = d }
}

// IDTokenLifetime sets how long ID tokens are valid (an hour by default).
func IDTokenLifetime(d time.Duration) Option {
	return func(s *settings) { s.idTokenTTL = d }
}
