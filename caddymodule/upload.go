package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/limit"
	"github.com/seed-a64a90cf/imagegate/session"
)

// uploader issues one-time direct-upload URLs to authenticated callers.
type uploader struct {
	path       string
	ownerField string
	api        *cfapi.Client
	limiter    limit.Limiter
	results    map[string]prometheus.Counter
}

// Upload results: the `result` label of imagegate_upload_urls_total. A
// refused session verdict counts under the verdict's name.
var uploadResults = []string{"issued", "unauthenticated", "forbidden", "unavailable", "limited", "upstream_error", "method_not_allowed"}

var (
	allowPOST       = []string{"POST"}
	errUploadFailed = errors.New("the image service did not issue an upload URL")
	errUploadLimit  = errors.New("upload limit reached")
)

// provisionUploads turns uploads on when upload_path is set.
func (h *Handler) provisionUploads() error {
	path := h.uploadPath()
	if path == "" {
		return nil
	}
	if h.Upload != nil && (h.UploadPath != "" || h.UploadOwnerField != "" || h.UploadLimit != nil) {
		return errors.New("upload: give the upload settings once, in the upload block; the flat upload_* settings are its older form")
	}
	if path[0] != '/' {
		return errors.New("upload_path: must be a path starting with '/'")
	}
	if !namesCaller(h.method) {
		return errors.New("upload_path: uploads need a session method that names the caller, not none")
	}
	api, err := h.apiClient()
	if err != nil {
		return fmt.Errorf("upload_path: %w", err)
	}
	u := &uploader{
		path:       path,
		ownerField: h.uploadOwnerField(),
		api:        api,
		limiter:    h.limiter("upload", h.uploadLimit()),
		results:    map[string]prometheus.Counter{},
	}
	for _, res := range uploadResults {
		u.results[res] = metrics.uploadURLs.WithLabelValues(res)
	}
	h.uploads = u
	return nil
}

// serve answers a request to the upload path. The image gets metadata
// naming the caller and requires signed URLs, so only the gateway can show
// it, and `authorize owner` shows it to its uploader. The session verdict
// comes from the same gate as the image path's, so the same caller gets the
// same status on both.
func (u *uploader) serve(w http.ResponseWriter, r *http.Request, h *Handler) error {
	if r.Method != http.MethodPost {
		w.Header()["Allow"] = allowPOST
		u.results["method_not_allowed"].Inc()
		return refusal(w, r, outcomeMethodNotAllowed, errMethod)
	}
	start := time.Now()
	d := h.gate.Upload(r)
	h.checks.observe(d, time.Since(start))
	if d.Verdict != session.Allowed {
		u.results[d.Verdict.String()].Inc()
		out, err := h.denial(w, d)
		return refusal(w, r, out, err)
	}
	caller := d.Identity.Subject
	if res := u.limiter.Allow(r.Context(), caller); !res.Allowed {
		u.results["limited"].Inc()
		w.Header()["Retry-After"] = []string{retryAfter(res.RetryAfter)}
		return refusal(w, r, outcomeLimited, errUploadLimit)
	}
	id, uploadURL, err := u.api.DirectUpload(r.Context(), cfapi.DirectUploadRequest{
		Metadata: map[string]any{u.ownerField: caller},
		Creator:  caller,
	})
	if rl, ok := errors.AsType[*cfapi.RateLimitError](err); ok {
		// Cloudflare asked us to wait: so must the caller.
		u.results["unavailable"].Inc()
		w.Header()["Retry-After"] = []string{retryAfter(rl.RetryAfter)}
		return refusal(w, r, outcomeUnavailable, err)
	}
	if err != nil {
		u.results["upstream_error"].Inc()
		// The API error may describe the account; log it, answer briefly.
		h.logger.Warn("direct upload failed", zap.Error(err), zap.String("subject", subjectHashes.Hash(caller)))
		return refusal(w, r, outcomeUpstreamError, errUploadFailed)
	}
	u.results["issued"].Inc()
	body, _ := json.Marshal(struct {
		ID        string `json:"id"`
		UploadURL string `json:"uploadURL"`
	}{id, uploadURL})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	h.logger.Info("upload URL issued", zap.String("subject", subjectHashes.Hash(caller)), zap.String("image_id", id))
	return nil
}
