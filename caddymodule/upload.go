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
	verdicts   [session.Limited + 1]prometheus.Counter // refusals, by verdict
	issued     prometheus.Counter
	failed     prometheus.Counter // the API refused or failed
	badMethod  prometheus.Counter
}

var (
	allowPOST       = "POST"
	errUploadFailed = errors.New("the image service did not issue an upload URL")
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
		issued:     metrics.uploadURLs.WithLabelValues("issued"),
		failed:     metrics.uploadURLs.WithLabelValues("upstream_error"),
		badMethod:  metrics.uploadURLs.WithLabelValues("method_not_allowed"),
	}
	// The result label of a refusal is its verdict's name.
	for v := session.Unauthenticated; v <= session.Limited; v++ {
		u.verdicts[v] = metrics.uploadURLs.WithLabelValues(v.String())
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
		w.Header()["Allow"] = []string{allowPOST}
		u.badMethod.Inc()
		return refusal(w, r, outcomeMethodNotAllowed, errMethod)
	}
	start := time.Now()
	d := h.gate.Upload(r)
	h.checks.observe(d, time.Since(start))
	if d.Verdict == session.Allowed {
		// Checks after the gate decide by the gate's rules: over the
		// caller's limit is Limited, the API's rate limit Unavailable, each
		// with its Retry-After.
		if res := u.limiter.Allow(r.Context(), d.Identity.Subject); !res.Allowed {
			d = session.Decide(d.Identity, &session.LimitedError{RetryAfter: res.RetryAfter})
		}
	}
	var id, uploadURL string
	if d.Verdict == session.Allowed {
		var err error
		id, uploadURL, err = u.api.DirectUpload(r.Context(), cfapi.DirectUploadRequest{
			Metadata: map[string]any{u.ownerField: d.Identity.Subject},
			Creator:  d.Identity.Subject,
		})
		switch {
		case errors.Is(err, cfapi.ErrRateLimited):
			d = session.Decide(d.Identity, err)
		case err != nil:
			u.failed.Inc()
			// The API error may describe the account; log it, answer briefly.
			h.warnDependency("cloudflare_api", "direct upload failed", err)
			return refusal(w, r, outcomeUpstreamError, errUploadFailed)
		}
	}
	if d.Verdict != session.Allowed {
		u.verdicts[d.Verdict].Inc()
		out, err := h.denial(w, d)
		return refusal(w, r, out, err)
	}
	caller := d.Identity.Subject
	u.issued.Inc()
	body, _ := json.Marshal(struct {
		ID        string `json:"id"`
		UploadURL string `json:"uploadURL"`
	}{id, uploadURL})
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	hdr["Cache-Control"] = []string{noStore}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	h.logger.Info("upload URL issued", zap.String("subject", subjectHashes.Hash(caller)), zap.String("image_id", id))
	return nil
}
