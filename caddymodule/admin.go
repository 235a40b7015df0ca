package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

func init() {
	caddy.RegisterModule(AdminPurge{})
}

// AdminPurge adds `POST /cf_images/purge` to Caddy's admin API. The body
// `{"id": "<image id>"}` (optionally with `"variant"`) drops the image's
// cached bytes from every proxy-mode handler of this process, memory and
// Redis tiers alike, and, with `redis` configured, from every replica's
// memory tier through Redis Pub/Sub. It answers `{"dropped": N}`, the
// entries dropped here. Call it after deleting or replacing an image in
// Cloudflare; without it the bytes live until `cache_ttl`.
type AdminPurge struct{}

// CaddyModule returns the Caddy module information.
func (AdminPurge) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.cf_images",
		New: func() caddy.Module { return new(AdminPurge) },
	}
}

// Provision registers the metrics the running config uses into the new
// config's registry. Caddy provisions admin routes with each new config
// before its apps, and keeps serving /metrics from that config's registry
// if the config is then rejected: without this, a rejected reload would
// blank every imagegate series until the next good one.
func (AdminPurge) Provision(ctx caddy.Context) error {
	return registerMetricsInUse(ctx.GetMetricsRegistry())
}

// Routes implements caddy.AdminRouter.
func (a AdminPurge) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/cf_images/purge", Handler: caddy.AdminHandlerFunc(a.purge)}}
}

// maxPurgeBody bounds a purge request's body.
const maxPurgeBody = 4 << 10

func (AdminPurge) purge(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed; use POST")}
	}
	var req struct {
		ID      string `json:"id"`
		Variant string `json:"variant"`
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`want a JSON body {"id": "<image id>", "variant": "<optional>"}`)}
	}
	if err := imageref.ValidateID(req.ID); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("id: %v", err)}
	}
	if req.Variant != "" && !imageref.ValidVariantName(req.Variant) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("variant: not a variant name")}
	}
	if dec.More() || dec.Decode(&struct{}{}) != io.EOF {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("want one JSON object, and nothing after it")}
	}
	app := liveApp.Load()
	if app == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("no running config has a cf_images handler")}
	}
	n, err := app.purge(r.Context(), req.ID, req.Variant)
	if errors.Is(err, errNoSuchVariant) {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("variant: %v", err)}
	}
	if err != nil {
		// Dropped here, but the other replicas may not have heard: say so,
		// so the caller can retry.
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: fmt.Errorf("dropped %d entries here, but could not tell the other replicas: %v", n, err)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(struct {
		Dropped int `json:"dropped"`
	}{n})
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminPurge)(nil)
	_ caddy.Provisioner = (*AdminPurge)(nil)
)
