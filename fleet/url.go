package fleet

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// tlsMinVersion is the oldest TLS a rediss:// connection accepts.
const tlsMinVersion = tls.VersionTLS12

// parseURLs turns the URLs of Options into client options, and returns
// every problem it finds. One URL names a node (or a Sentinel, or a
// cluster's configuration endpoint):
//
//	redis://[user:password@]host[:port][/db]
//	rediss://... (the same over TLS)
//
// Several URLs are seeds or Sentinels; they must share a scheme, user and
// password.
//
// The URLs carry the password, so an error names a URL by its position
// and says what is wrong with it, never quoting any part of it: a password
// with a stray "/" or "@" can land in any component of a malformed URL.
func parseURLs(urls []string) (*redis.UniversalOptions, []error) {
	if len(urls) == 0 {
		return nil, []error{errors.New("url: at least one redis url is required")}
	}
	var (
		opts  *redis.UniversalOptions
		first int // the position of the URL opts came from
		errs  []error
	)
	for i, raw := range urls {
		n, err := parseURL(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("url %d of %d: %w", i+1, len(urls), err))
			continue
		}
		if opts == nil {
			opts, first = n, i
			continue
		}
		switch {
		case (n.TLSConfig == nil) != (opts.TLSConfig == nil):
			errs = append(errs, fmt.Errorf("url %d of %d: scheme differs from url %d", i+1, len(urls), first+1))
		case n.Username != opts.Username || n.Password != opts.Password:
			errs = append(errs, fmt.Errorf("url %d of %d: user or password differs from url %d", i+1, len(urls), first+1))
		case n.DB != opts.DB:
			errs = append(errs, fmt.Errorf("url %d of %d: database differs from url %d", i+1, len(urls), first+1))
		}
		opts.Addrs = append(opts.Addrs, n.Addrs...)
	}
	return opts, errs
}

// parseURL parses one URL with redis.ParseURL, after checks of its own
// whose errors quote nothing from raw (redis.ParseURL's quote the URL or
// its parts) and which refuse query parameters: they would set timeouts
// and pool sizes behind Options' back.
func parseURL(raw string) (*redis.UniversalOptions, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the URL, and its inner error may quote a part
		// of it (a port or an escape), so neither is passed on.
		return nil, errors.New("malformed url (check the scheme, host, port and the percent-encoding of the password)")
	}
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return nil, errors.New("scheme must be redis:// or rediss://")
	case u.Opaque != "" || u.Hostname() == "":
		return nil, errors.New("missing host")
	case u.RawQuery != "" || u.ForceQuery:
		return nil, errors.New("query parameters are not supported")
	case u.Fragment != "":
		return nil, errors.New("a fragment is not supported")
	}
	if port := u.Port(); port != "" {
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return nil, errors.New("invalid port")
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return nil, errors.New("the path must be a database number, such as /0")
		}
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, errors.New("not a redis url")
	}
	opts := &redis.UniversalOptions{
		Addrs:    []string{o.Addr},
		Username: o.Username,
		Password: o.Password,
		DB:       o.DB,
	}
	if o.TLSConfig != nil {
		// No ServerName: the TLS dial takes each node's own host from its
		// address, which a cluster's nodes and a Sentinel's primary need.
		opts.TLSConfig = &tls.Config{MinVersion: tlsMinVersion}
	}
	return opts, nil
}
