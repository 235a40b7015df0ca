package caddymodule

import (
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
)

func init() {
	httpcaddyfile.RegisterGlobalOption(appName, parseAppOption)
}

// parseAppOption reads the `cf_images` global option into the app:
//
//	{
//	    cf_images {
//	        account_id        <id>
//	        api_token         <token>
//	        api_token_file    <path>
//	        api_url           <url>
//	        api_max_in_flight <n>
//	        account_hash      <hash>
//	        signing_key       <key>
//	        signing_key_file  <path>
//	        delivery_url      <url>
//	        redis             <url...>
//	        redis {
//	            url               <url>        # repeatable
//	            cluster
//	            sentinel          <primary>
//	            sentinel_password <password>
//	            tls_ca_file       <path>
//	            key_prefix        <prefix>
//	            timeout           <duration>
//	        }
//	        redis_timeout     <duration>
//	    }
//	}
func parseAppOption(d *caddyfile.Dispenser, _ any) (any, error) {
	a := new(App)
	d.Next() // the option's name
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	var timeout string
	for d.NextBlock(0) {
		var err error
		switch field := d.Val(); field {
		case "account_id":
			a.AccountID, err = caddyargs.One(d)
		case "api_token":
			a.APIToken, err = caddyargs.One(d)
		case "api_token_file":
			a.APITokenFile, err = caddyargs.One(d)
		case "api_url":
			a.APIURL, err = caddyargs.One(d)
		case "api_max_in_flight":
			a.APIMaxInFlight, err = caddyargs.Int(d, 1, "calls")
		case "account_hash":
			a.AccountHash, err = caddyargs.One(d)
		case "signing_key":
			a.SigningKey, err = caddyargs.One(d)
		case "signing_key_file":
			a.SigningKeyFile, err = caddyargs.One(d)
		case "delivery_url":
			a.DeliveryURL, err = caddyargs.One(d)
		case "redis":
			a.Redis, err = redisArgs(d, a.Redis)
		case "redis_timeout":
			timeout, err = caddyargs.One(d)
		default:
			err = d.Errf("cf_images: unrecognized global setting %q", field)
		}
		if err != nil {
			return nil, err
		}
	}
	if timeout != "" {
		if a.Redis == nil {
			return nil, d.Errf("redis_timeout: has no effect without redis")
		}
		if err := a.Redis.Timeout.UnmarshalJSON([]byte(`"` + timeout + `"`)); err != nil {
			return nil, d.Errf("redis_timeout: want a duration such as 100ms")
		}
	}
	return httpcaddyfile.App{Name: appName, Value: caddyconfig.JSON(a, nil)}, nil
}

// redisArgs reads `redis <url...>` or a `redis { … }` block, for the app
// and the handler alike.
func redisArgs(d *caddyfile.Dispenser, prev *RedisConfig) (*RedisConfig, error) {
	if prev != nil {
		return nil, d.Errf("redis: given twice; name every URL in one redis line or block")
	}
	c := &RedisConfig{URLs: d.RemainingArgs()}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch field := d.Val(); field {
		case "url":
			c.URLs, err = caddyargs.Append(d, c.URLs)
		case "cluster":
			err = caddyargs.None(d)
			c.Cluster = true
		case "sentinel":
			c.Sentinel, err = caddyargs.One(d)
		case "sentinel_password":
			c.SentinelPassword, err = caddyargs.One(d)
		case "tls_ca_file":
			c.TLSCAFile, err = caddyargs.One(d)
		case "key_prefix":
			c.KeyPrefix, err = caddyargs.One(d)
		case "timeout":
			c.Timeout, err = caddyargs.Duration(d)
		default:
			err = d.Errf("redis: unrecognized setting %q", field)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(c.URLs) == 0 {
		return nil, d.Errf("redis: want at least one URL: redis <url...>, or url lines in a redis block")
	}
	return c, nil
}
