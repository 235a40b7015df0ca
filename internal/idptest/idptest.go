// Package idptest runs a real OpenID provider, Ory Hydra, for tests: on
// free loopback ports, with an in-memory database and a temporary
// directory, stopped when the test ends. It is not a stand-in written
// here: discovery, JWKS, JWT and opaque access tokens, RFC 7662
// introspection, RFC 7009 revocation, the authorization-code login flow
// and OpenID Connect Back-Channel Logout are Hydra's own.
//
// The binary is built once, outside the repository, by build-provider.sh
// (see BuildCommand); Start finds it with BinaryPath. Without it, Start
// skips the test, unless the environment variable CI is set, in which case
// it fails it: CI must not skip silently.
//
// The login and consent screens Hydra redirects a browser to are not
// served by anyone: Login plays the browser with a cookie jar, stops at
// each redirect to them, and accepts the challenge through Hydra's admin
// API, as a login application that accepts every user would.
//
// What Hydra v2.3.0 issues, as the tests here check or log it:
//   - JWT access tokens: RS256, typ JWT, a kid in the JWKS; claims iss,
//     sub, aud (a list), client_id, exp, iat, nbf, jti, scp (the scopes as
//     a list, not a space-separated "scope"), ext; a Session's token also
//     has sid.
//   - Logout tokens: RS256 with the ID-token key, typ JWT (not
//     logout+jwt); claims iss, aud (the relying party's client_id, as a
//     list), iat, jti, events and sid, with no exp and no sub, although
//     OpenID Connect Back-Channel Logout 1.0 §2.4 requires exp. They are
//     POSTed asynchronously, retried twice on a connection error or a 5xx;
//     any other answer but 200 or 204 is only logged.
//   - Introspection (on the admin API, which authenticates no caller)
//     answers active:false, and nothing else, once a token is revoked.
package idptest
