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
package idptest
