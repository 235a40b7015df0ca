package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/cfapi"
)

// apiConfig is what makes two Cloudflare API clients the same one.
type apiConfig struct {
	base, accountID, token string
	maxInFlight            int
}

// apiClients pools the Cloudflare API clients of live configs by account,
// token, API URL and in-flight cap, and keeps them across reloads, so that
// a pause after Cloudflare's 429 outlives a reload, and two sites on one
// account spend one budget.
var apiClients = caddy.NewUsagePool()

type pooledAPIClient struct{ *cfapi.Client }

func (pooledAPIClient) Destruct() error { return nil }

// sharedAPIClient returns the pooled client for cfg and its pool key, which
// the caller releases with apiClients.Delete. The key holds a hash of the
// token, never the token.
func sharedAPIClient(cfg apiConfig) (*cfapi.Client, string, error) {
	sum := sha256.Sum256([]byte(cfg.token))
	key := fmt.Sprintf("%s|%s|%s|%d", cfg.base, cfg.accountID, hex.EncodeToString(sum[:]), cfg.maxInFlight)
	v, _, err := apiClients.LoadOrNew(key, func() (caddy.Destructor, error) {
		return pooledAPIClient{&cfapi.Client{
			BaseURL:       cfg.base,
			AccountID:     cfg.accountID,
			APIToken:      cfg.token,
			MaxConcurrent: cfg.maxInFlight,
			OnRateLimited: metrics.apiRateLimited.Inc,
		}}, nil
	})
	if err != nil {
		return nil, "", err
	}
	return v.(pooledAPIClient).Client, key, nil
}
