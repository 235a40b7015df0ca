package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/session"
)

// uploader issues one-time direct-upload URLs to authenticated callers.
type uploader struct {
	path       string
	ownerField string
	api        *cfapi.Client
	results    map[string]prometheus.Counter
}

// Upload results: the `result` label of imagegate_upload_urls_total.
var uploadResults = []string{"issued", "unauthenticated", "unavailable", "upstream_error", "method_not_allowed"}

func (h *Handler) newUploader(r *resolver) (*uploader, error) {
	if h.UploadPath == "" {
		if h.UploadOwnerField != "" {
			return nil, errors.New("upload_owner_field: has no effect without upload_path")
		}
		return nil, nil
	}
	if h.UploadPath[0] != '/' {
		return nil, errors.New("upload_path: must be a path starting with '/'")
	}
	if h.Session.Method == "none" {
		return nil, errors.New("upload_path: uploads need a session method that names the caller, not none")
	}
	api, err := h.apiClient(r)
	if err != nil {
		return nil, errors.New("upload_path: " + err.Error())
	}
	u := &uploader{path: h.UploadPath, ownerField: h.UploadOwnerField, api: api, results: map[string]prometheus.Counter{}}
	if u.ownerField == "" {
		u.ownerField = "owner"
	}
	for _, res := range uploadResults {
		u.results[res] = metrics.uploadURLs.WithLabelValues(res)
	}
	return u, nil
}

// serve answers a request to the upload path. The image gets metadata
// naming the caller and requires signed URLs, so only the gateway can show
// it, and `authorize owner` shows it to its uploader.
func (u *uploader) serve(w http.ResponseWriter, r *http.Request, h *Handler) error {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = []string{"POST"}
		u.results["method_not_allowed"].Inc()
		return h.fail(w, r, otherVariant, outcomeMethodNotAllowed, http.StatusMethodNotAllowed, "method not allowed")
	}
	caller, _, err := h.gate.auth.Authenticate(r, session.Image{})
	switch {
	case err == nil && caller.Subject == "":
		u.results["unauthenticated"].Inc()
		return h.deny(w, r, otherVariant, outcomeUnauthenticated, "", errors.New("the session names no subject"))
	case errors.Is(err, session.ErrUnauthenticated):
		u.results["unauthenticated"].Inc()
		return h.deny(w, r, otherVariant, outcomeUnauthenticated, "", err)
	case err != nil:
		u.results["unavailable"].Inc()
		return h.deny(w, r, otherVariant, outcomeUnavailable, "", err)
	}
	id, uploadURL, err := u.api.DirectUpload(r.Context(), cfapi.DirectUploadRequest{
		Metadata: map[string]any{u.ownerField: caller.Subject},
		Creator:  caller.Subject,
	})
	if err != nil {
		u.results["upstream_error"].Inc()
		// The API error may describe the account; log it, answer briefly.
		h.logger.Warn("direct upload failed", zap.Error(err), zap.String("subject", subjectHash(caller.Subject)))
		return h.fail(w, r, otherVariant, outcomeUpstreamError, http.StatusBadGateway, "the image service did not issue an upload URL")
	}
	u.results["issued"].Inc()
	body, _ := json.Marshal(struct {
		ID        string `json:"id"`
		UploadURL string `json:"uploadURL"`
	}{id, uploadURL})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	h.logger.Info("upload URL issued", zap.String("subject", subjectHash(caller.Subject)), zap.String("image_id", id))
	return nil
}
