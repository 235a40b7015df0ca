package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/seed-a64a90cf/imagegate/imageref"
	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI adds imagegate's routes to Caddy's admin API: purges and
// revocations.
//
// `POST /cf_images/purge`: the body
// `{"id": "<image id>"}` (optionally with `"variant"`) drops the image's
// cached bytes from every proxy-mode handler of this process, memory and
// Redis tiers alike, and, with `redis` configured, from every replica's
// memory tier through Redis Pub/Sub. It answers `{"dropped": N}`, the
// entries dropped here. Call it after deleting or replacing an image in
// Cloudflare; without it the bytes live until `cache_ttl`.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.cf_images",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision registers the metrics the running config uses into the new
// config's registry. Caddy provisions admin routes with each new config
// before its apps, and keeps serving /metrics from that config's registry
// if the config is then rejected: without this, a rejected reload would
// blank every imagegate series until the next good one.
func (AdminAPI) Provision(ctx caddy.Context) error {
	return registerMetricsInUse(ctx.GetMetricsRegistry())
}

// Routes implements caddy.AdminRouter.
func (a AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/cf_images/purge", Handler: caddy.AdminHandlerFunc(a.purge)},
		{Pattern: "/cf_images/revoke", Handler: caddy.AdminHandlerFunc(a.revoke)},
		{Pattern: "/cf_images/revocations", Handler: caddy.AdminHandlerFunc(a.revocations)},
	}
}

// maxPurgeBody bounds a purge request's body.
const maxPurgeBody = 4 << 10

func (AdminAPI) purge(w http.ResponseWriter, r *http.Request) error {
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

// revoke records a revocation: `{"sub": "alice"}` refuses every session
// of alice issued before now, `{"sid": "…"}` one session (the token's sid
// claim), `{"jti": "…"}` one token. It answers 200 with what it recorded.
// With Redis in the global cf_images block, every replica refuses the
// caller within a second, and a replica that reconnects loads the set;
// without it, the revocation holds on this replica only.
func (AdminAPI) revoke(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed; use POST")}
	}
	var req session.RevocationRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.Decode(&struct{}{}) != io.EOF {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`want one JSON object: {"sub": "…"}, {"sid": "…"} or {"jti": "…"}`)}
	}
	set := liveRevocations()
	if set == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("no running config has a cf_images handler")}
	}
	recorded, err := set.Revoke(req, "admin")
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(struct {
		Revoked []session.Revocation `json:"revoked"`
	}{recorded})
}

// revocations lists the revocations in force: `GET /cf_images/revocations`.
func (AdminAPI) revocations(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed; use GET")}
	}
	set := liveRevocations()
	if set == nil {
		return caddy.APIError{HTTPStatus: http.StatusServiceUnavailable, Err: errors.New("no running config has a cf_images handler")}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	list := set.List()
	if list == nil {
		list = []session.Revocation{}
	}
	return json.NewEncoder(w).Encode(struct {
		Revocations []session.Revocation `json:"revocations"`
	}{list})
}

// liveRevocations is the running config's revocation set, or nil.
func liveRevocations() *session.Revocations {
	if app := liveApp.Load(); app != nil {
		return app.Revocations()
	}
	return nil
}

// Interface guards
var (
	_ caddy.AdminRouter = (*AdminAPI)(nil)
	_ caddy.Provisioner = (*AdminAPI)(nil)
)
