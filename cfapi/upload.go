package cfapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"time"
)

// maxMetadataBytes is Cloudflare's limit on an image's metadata JSON.
const maxMetadataBytes = 1024

// DirectUploadRequest describes a one-time upload URL to create.
type DirectUploadRequest struct {
	// Metadata is stored with the image (e.g. {"owner": "<subject>"}) and
	// never shown to viewers. At most 1024 bytes as JSON.
	Metadata map[string]any
	// Expiry is when the upload URL stops working; Cloudflare accepts
	// now+2m to now+6h. Zero leaves Cloudflare's default (now+30m).
	Expiry time.Time
	// Creator is an internal user id stored with the image.
	Creator string
}

// DirectUpload creates a one-time upload URL and returns the new image's id
// and the URL the client posts the file to. The image always requires
// signed URLs: Cloudflare's default is public, which would bypass the
// gateway. No custom id is sent, since private images cannot have one.
func (c *Client) DirectUpload(ctx context.Context, r DirectUploadRequest) (id, uploadURL string, err error) {
	const op = "direct upload"
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fields := [][2]string{{"requireSignedURLs", "true"}}
	if len(r.Metadata) > 0 {
		meta, err := json.Marshal(r.Metadata)
		if err != nil {
			return "", "", fmt.Errorf("cloudflare images: %s: encoding metadata: %w", op, err)
		}
		if len(meta) > maxMetadataBytes {
			return "", "", fmt.Errorf("cloudflare images: %s: metadata is %d bytes, limit %d", op, len(meta), maxMetadataBytes)
		}
		fields = append(fields, [2]string{"metadata", string(meta)})
	}
	if !r.Expiry.IsZero() {
		fields = append(fields, [2]string{"expiry", r.Expiry.UTC().Format(time.RFC3339)})
	}
	if r.Creator != "" {
		fields = append(fields, [2]string{"creator", r.Creator})
	}
	for _, f := range fields {
		if err := w.WriteField(f[0], f[1]); err != nil {
			return "", "", fmt.Errorf("cloudflare images: %s: %w", op, err)
		}
	}
	if err := w.Close(); err != nil {
		return "", "", fmt.Errorf("cloudflare images: %s: %w", op, err)
	}
	req, err := c.newRequest(ctx, http.MethodPost, "images/v2/direct_upload", &body)
	if err != nil {
		return "", "", fmt.Errorf("cloudflare images: %s: %w", op, err)
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	var res struct {
		ID        string `json:"id"`
		UploadURL string `json:"uploadURL"`
	}
	if err := c.do(req, op, &res); err != nil {
		return "", "", err
	}
	if res.ID == "" || res.UploadURL == "" {
		return "", "", errors.New("cloudflare images: direct upload: response lacks id or uploadURL")
	}
	return res.ID, res.UploadURL, nil
}
