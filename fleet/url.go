package fleet

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// defaultPort is Redis's registered port, used when a URL names none.
const defaultPort = "6379"

// ParseURLs turns Redis URLs into client options. One URL names a single
// node:
//
//	redis://[user:password@]host[:port][/db]
//	rediss://... (the same over TLS)
//
// Several URLs are the seed nodes of a Redis Cluster; they must share a
// scheme, user and password, and name no database (a cluster has only 0).
//
// The URLs carry the password, so an error names a URL by its position
// and says what is wrong with it, never quoting any part of it: a password
// with a stray "/" or "@" can land in any component of a malformed URL.
func ParseURLs(urls []string) (*redis.UniversalOptions, error) {
	if len(urls) == 0 {
		return nil, errors.New("fleet: no redis url")
	}
	var opts *redis.UniversalOptions
	for i, raw := range urls {
		n, err := parseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("fleet: redis url %d of %d: %w", i+1, len(urls), err)
		}
		if opts == nil {
			opts = n
			continue
		}
		switch {
		case (n.TLSConfig == nil) != (opts.TLSConfig == nil):
			return nil, fmt.Errorf("fleet: redis url %d of %d: scheme differs from url 1", i+1, len(urls))
		case n.Username != opts.Username || n.Password != opts.Password:
			return nil, fmt.Errorf("fleet: redis url %d of %d: user or password differs from url 1", i+1, len(urls))
		}
		opts.Addrs = append(opts.Addrs, n.Addrs...)
	}
	if len(opts.Addrs) > 1 && opts.DB != 0 {
		return nil, errors.New("fleet: redis urls: a cluster has only database 0; remove the database from the urls")
	}
	return opts, nil
}

// parseURL parses one URL. Its errors quote nothing from raw.
func parseURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, and its inner error may quote a part
		// of it (a port or an escape), so neither is passed on.
		return nil, errors.New("malformed url (check the scheme, host, port and the percent-encoding of the password)")
	}
	opts := &redis.UniversalOptions{}
	switch u.Scheme {
	case "redis":
	case "rediss":
		// No ServerName: the TLS dial takes each node's own host from its
		// address, which a cluster's seeds need.
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	default:
		return nil, errors.New("scheme must be redis:// or rediss://")
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, errors.New("missing host")
	}
	port := u.Port()
	if port == "" {
		port = defaultPort
	} else if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return nil, errors.New("invalid port")
	}
	opts.Addrs = []string{net.JoinHostPort(u.Hostname(), port)}

	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return nil, errors.New("the path must be a database number, such as /0")
		}
		opts.DB = n
	}
	if u.RawQuery != "" || u.ForceQuery {
		return nil, errors.New("query parameters are not supported")
	}
	if u.Fragment != "" {
		return nil, errors.New("a fragment is not supported")
	}
	return opts, nil
}
