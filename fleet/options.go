package fleet

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults for the zero fields of Options.
const (
	DefaultTimeout          = 100 * time.Millisecond
	DefaultFailureThreshold = 5
	DefaultCoolDown         = 5 * time.Second
	// DefaultKeyPrefix starts every key and channel unless
	// Options.KeyPrefix says otherwise.
	DefaultKeyPrefix = "imagegate:"
)

// maxKeyPrefix bounds Options.KeyPrefix, which is part of every key.
const maxKeyPrefix = 64

// Options configures a Client. Validate names each setting in its errors
// by the name in brackets, the same as the `redis` block of the
// gateway's configuration.
type Options struct {
	// URLs name the Redis to use [url], as redis://[user:password@]host[:port][/db]
	// or rediss:// for TLS. One URL is a single node; several are the
	// seed nodes of a Redis Cluster; with SentinelMaster set they are
	// Sentinels. Several URLs must share a scheme, user and password. The
	// user and password are those of the data nodes (an ACL user needs the
	// rules of GatewayACL); a cluster has only database 0.
	URLs []string
	// Cluster makes a single URL a Redis Cluster [cluster]: the
	// configuration endpoint of a managed cluster, which answers MOVED to
	// a client that takes it for a single node. Several URLs are a
	// cluster without it.
	Cluster bool
	// SentinelMaster, if set, makes the URLs Sentinels and names the
	// primary they watch [sentinel]. The client asks a Sentinel for the
	// primary and follows a failover without being reopened.
	SentinelMaster string
	// SentinelPassword authenticates to the Sentinels (their
	// requirepass) [sentinel_password]; the URLs' password authenticates
	// to the primary.
	SentinelPassword string
	// TLSCAFile is a PEM file of the CA certificates that rediss://
	// servers are verified against [tls_ca_file], for a Redis whose
	// certificate a private CA signed. Empty, the system's roots are used.
	TLSCAFile string
	// KeyPrefix starts every key and Pub/Sub channel the client is asked
	// for (Client.Key, Client.Channel) [key_prefix]; default
	// DefaultKeyPrefix. An ACL user restricted to "~<prefix>*
	// &<prefix>*" can then run the fleet. It must be printable ASCII
	// without spaces or braces (braces would upset the hash tags that keep
	// an image's keys in one cluster slot), at most 64 bytes.
	KeyPrefix string
	// Timeout bounds every call, including connecting [timeout] (default
	// DefaultTimeout).
	Timeout time.Duration
	// FailureThreshold is how many consecutive failed calls open the
	// circuit breaker (default DefaultFailureThreshold).
	FailureThreshold int
	// CoolDown is how long the open breaker refuses calls before it lets
	// one probe through (default DefaultCoolDown).
	CoolDown time.Duration
	// OnStateChange, if set, is called once per change of Up, in order,
	// with the new state. It must not block.
	OnStateChange func(up bool)
	// OnOp, if set, is called after every call with its operation (one of
	// the Op constants), its duration and its error: nil (a miss is not an
	// error), ErrUnavailable, ErrDropped, or the Redis or deadline error.
	// It must not block.
	OnOp func(op string, d time.Duration, err error)
}

// Validate reports every problem with o at once (errors.Join), each
// naming its setting. It reads TLSCAFile. No error quotes a password or
// any part of a URL.
func (o Options) Validate() error {
	_, err := o.redisOptions()
	return err
}

// withDefaults returns o with its zero fields set to the defaults.
func (o Options) withDefaults() Options {
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FailureThreshold <= 0 {
		o.FailureThreshold = DefaultFailureThreshold
	}
	if o.CoolDown <= 0 {
		o.CoolDown = DefaultCoolDown
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	return o
}

// redisOptions validates o and returns the go-redis options it makes;
// redis.NewUniversalClient picks the client from them: a failover client
// when MasterName is set, a cluster client for several addresses or
// IsClusterMode, else a single-node client.
func (o Options) redisOptions() (*redis.UniversalOptions, error) {
	o = o.withDefaults()
	ro, errs := parseURLs(o.URLs)
	sentinel := o.SentinelMaster != ""
	if o.Cluster && sentinel {
		errs = append(errs, errors.New("cluster and sentinel: choose one (sentinel names a primary; a cluster has many)"))
	}
	if o.SentinelPassword != "" && !sentinel {
		errs = append(errs, errors.New("sentinel_password: has no effect without sentinel"))
	}
	if strings.ContainsFunc(o.SentinelMaster, func(r rune) bool { return r <= ' ' || r > '~' }) {
		errs = append(errs, errors.New("sentinel: the primary's name must be printable ASCII without spaces"))
	}
	if ro != nil && !sentinel && (o.Cluster || len(ro.Addrs) > 1) && ro.DB != 0 {
		errs = append(errs, errors.New("url: a cluster has only database 0; remove the database from the urls"))
	}
	if err := checkKeyPrefix(o.KeyPrefix); err != nil {
		errs = append(errs, err)
	}
	if o.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must be positive"))
	}
	var pool *x509.CertPool
	if o.TLSCAFile != "" {
		var err error
		if pool, err = loadCAFile(o.TLSCAFile); err != nil {
			errs = append(errs, err)
		}
		if ro != nil && ro.TLSConfig == nil {
			errs = append(errs, errors.New("tls_ca_file: has no effect on redis:// urls; use rediss://"))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	ro.IsClusterMode = o.Cluster
	if sentinel {
		ro.MasterName = o.SentinelMaster
		ro.SentinelPassword = o.SentinelPassword
	}
	if ro.TLSConfig != nil {
		ro.TLSConfig.RootCAs = pool // nil: the system's roots
	}
	ro.ClientName = "imagegate"
	// The per-call context deadline is the budget; every socket, dial and
	// pool wait honors it, and a dial is tried once rather than retried
	// with backoffs longer than the budget.
	ro.ContextTimeoutEnabled = true
	ro.DialTimeout = o.Timeout
	ro.ReadTimeout = o.Timeout
	ro.WriteTimeout = o.Timeout
	ro.PoolTimeout = o.Timeout
	ro.DialerRetries = 1
	// No command retries either: a retry against a dead Redis only spends
	// the rest of the budget; the breaker decides when to try again. (A
	// cluster client still follows MOVED and ASK redirections, which are
	// not retries.)
	ro.MaxRetries = -1
	return ro, nil
}

// checkKeyPrefix reports what is wrong with a key prefix, if anything.
func checkKeyPrefix(p string) error {
	switch {
	case len(p) > maxKeyPrefix:
		return fmt.Errorf("key_prefix: longer than %d bytes", maxKeyPrefix)
	case strings.ContainsAny(p, "{}"):
		return errors.New("key_prefix: must not contain { or }, which would change the cluster hash slot of keys")
	case strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r > '~' }):
		return errors.New("key_prefix: must be printable ASCII without spaces")
	}
	return nil
}

// loadCAFile reads a PEM file of CA certificates.
func loadCAFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls_ca_file: no PEM certificate in %s", path)
	}
	return pool, nil
}
