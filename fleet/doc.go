// Package fleet lets several imagegate gateways share state through Redis:
// a second byte-cache tier behind each replica's memory tier (ByteTier), a
// rate limiter whose budget is counted once for the whole fleet (Limiter),
// and a purge fan-out so one replica's purge reaches every replica's memory
// tier (Purger).
//
// Redis is never a dependency of an answer. Every call carries a short
// deadline (Options.Timeout), and a circuit breaker stops calling Redis for a
// cool-down after consecutive failures, so a slow or absent Redis costs at
// most one deadline per call and then microseconds. While Redis is
// unavailable the byte tier answers misses and drops writes, the limiter
// counts locally per replica, and purges reach only the local replica (see
// Purger for the bound on stale entries). Opening a Client does not contact
// Redis, so a gateway starts without it.
//
// Authorization never depends on Redis: nothing stored there decides who may
// see an image. Keys hold only an account hash, an image ID, a variant name
// and an output-format bucket; limiter keys hold a hash of the subject, never
// the subject itself; no user, session, token or signed URL is stored.
//
// The byte tier does store image bodies, and those are private images: an
// attacker who can read Redis can read them. Protect Redis as you would the
// images themselves: a password (or an ACL user limited to the keys
// "imagegate:*" and the purge channel), TLS (rediss://) when the network is
// not private, and a private network.
//
// Every key starts with "imagegate:v1:"; a change to a key or value layout
// changes the version so a new gateway never misreads an old entry.
package fleet
