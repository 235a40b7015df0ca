// Package fleet lets several imagegate gateways share state through Redis:
// a second byte-cache tier behind each replica's memory tier (ByteTier), a
// rate limiter whose budget is counted once for the whole fleet (Limiter),
// a purge fan-out so one replica's purge reaches every replica's memory
// tier (Purger), fill leases so the fleet fetches each object once
// (Leases), and the revocation set every replica refuses callers by
// (RevocationStore).
//
// # The Redis that ops run
//
// Options take the Redis as it is deployed, through go-redis's own clients:
// a single node; a Redis Cluster through its seeds, or through one
// configuration endpoint (Options.Cluster, as managed clusters offer); a
// primary watched by Sentinels (Options.SentinelMaster), whose failovers
// the client follows without being reopened; any of them over TLS
// (rediss://), trusting a private CA if need be (Options.TLSCAFile); and
// an ACL user named in the URL. Every key and Pub/Sub channel starts with
// Options.KeyPrefix ("imagegate:" by default), so a user created with
//
//	ACL SETUSER gw on >password ~imagegate:* &imagegate:* +@all -@admin -@dangerous
//
// can run the fleet and touch nothing else. On a cluster, every command
// names one key, or keys in one slot: an image's keys carry a hash tag,
// "{<account hash>:<id>}", so every variant and format of one image (and
// any other key of that image) lands in one slot.
//
// # Redis is never a dependency of an answer
//
// Every call carries a short deadline (Options.Timeout), and a circuit
// breaker stops calling Redis for a cool-down after consecutive failures,
// so a slow or absent Redis costs at most one deadline per call and then
// microseconds. While Redis is unavailable (down, or between a primary's
// death and the Sentinel's failover) the byte tier answers misses and drops
// writes, the limiter counts locally per replica from what the caller
// already spent through that replica (see Limiter for the bound), and
// purges reach only the local replica (see Purger for the bound on stale
// entries). Opening a Client does not contact Redis, so a gateway starts
// without it.
//
// # Redis holds data, not trust
//
// Anyone who can write to the Redis could put bytes under a predictable
// key. So every stored object and every purge and "filled" message carries
// an HMAC-SHA256 under a key the caller derives from the signing key, which
// Redis never sees; a value whose length (checked inside Redis, before it
// is sent), MAC or image type fails is a miss: deleted, reported to
// OnRejected, never served. Leases save fetches and are never needed for a
// correct answer: a holder that dies costs its waiters one lease time.
//
// # What Redis holds
//
// Authorization never depends on Redis: nothing stored there admits a
// caller. Image keys hold only an account hash, an image ID, a variant name
// and an output-format bucket; limiter keys hold a keyed hash of the
// subject, never the subject itself; no token or signed URL is stored. The
// revocation set holds revoked subjects, session ids and token ids as they
// are: they can only refuse callers, so a Redis an attacker writes to can
// lock users out, never let anyone in.
//
// The byte tier does store image bodies, and those are private images: an
// attacker who can read Redis can read them. Protect Redis as you would the
// images themselves: an ACL user limited to the key prefix, TLS (rediss://)
// when the network is not private, and a private network.
//
// Keys are "<prefix><version>:<kind>:…"; a change to a key or value layout
// changes its version so a new gateway never misreads an old entry.
package fleet
