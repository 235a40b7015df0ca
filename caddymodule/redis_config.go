package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/caddyserver/caddy/v2"
)

// RedisConfig is the Redis a fleet of gateways shares: proxy mode's second
// byte-cache tier, fleet-wide lookup and upload limits, and purges that
// reach every replica. Redis never decides an answer: while it fails, the
// gateway serves from memory and upstream and limits per replica.
//
// In JSON it is an object, or, as configs written before the object form
// did, a list of URLs.
type RedisConfig struct {
	// URLs are Redis URLs (`redis://` or, with TLS, `rediss://`, with an
	// ACL user and password in the userinfo and the database in the path).
	// One URL is a single node (or, with Cluster, a cluster's configuration
	// endpoint); several are a cluster's seeds, or, with Sentinel, the
	// Sentinels. Placeholders such as `{env.REDIS_PASSWORD}` are resolved at
	// provision time, and URLs are never logged with their password.
	URLs []string `json:"urls,omitempty"`

	// Cluster makes a single URL a cluster's configuration endpoint (as
	// managed Redis offers), so that the client follows the cluster's slot
	// map instead of failing with MOVED.
	Cluster bool `json:"cluster,omitempty"`

	// Sentinel names the primary that the Sentinels at URLs watch; the
	// client follows its failovers.
	Sentinel string `json:"sentinel,omitempty"`

	// SentinelPassword is the Sentinels' own password, if they have one.
	SentinelPassword string `json:"sentinel_password,omitempty"`

	// TLSCAFile is a PEM file of the CA that signed the servers'
	// certificates, for `rediss://` URLs with a private CA. Default: the
	// system's roots.
	TLSCAFile string `json:"tls_ca_file,omitempty"`

	// KeyPrefix starts every key and Pub/Sub channel the gateway uses, so
	// that an ACL user limited to it (`~imagegate:* &imagegate:*`) can run
	// the fleet. Default: `imagegate:`.
	KeyPrefix string `json:"key_prefix,omitempty"`

	// Timeout bounds every Redis operation. Default: 100ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
}

// UnmarshalJSON reads the object form, or the list of URLs that configs
// written before the object form carry.
func (c *RedisConfig) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '[' {
		*c = RedisConfig{}
		return json.Unmarshal(b, &c.URLs)
	}
	type plain RedisConfig // without this method
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode((*plain)(c))
}

// validate reports the problems of a block that names no URL. The rest
// (cluster or Sentinel, TLS, the prefix) is checked by the fleet package,
// once placeholders are resolved.
func (c *RedisConfig) validate() error {
	if len(c.URLs) == 0 {
		return errors.New("redis: url: at least one is required")
	}
	return nil
}
