package caddymodule

import (
	"cmp"
	"errors"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/seed-a64a90cf/imagegate/caddymodule/internal/caddyargs"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// UploadConfig turns on uploads: an authenticated POST to Path answers
// `{"id","uploadURL"}` with a one-time Cloudflare direct-upload URL for a
// private image (requireSignedURLs is always sent) whose metadata names the
// caller. It needs the Cloudflare account (account_id and api_token, on the
// handler or the app) and a session method that names callers.
type UploadConfig struct {
	// Path is the exact path uploads are asked at, such as `/img/upload`.
	Path string `json:"path,omitempty"`

	// OwnerField is the metadata field stamped with the uploader's subject;
	// `authorize owner` must read the same field. Default: `owner`.
	OwnerField string `json:"owner_field,omitempty"`

	// Limit bounds the upload URLs issued per caller. Over it the answer is
	// 429 with Retry-After. Default: 20 per hour; `off` or `0` (JSON: `{}`)
	// turns it off.
	Limit *RateLimit `json:"limit,omitempty"`
}

// validate checks the block written in JSON.
func (u *UploadConfig) validate() error {
	if u == nil {
		return nil
	}
	var errs []error
	if u.Path == "" || u.Path[0] != '/' {
		errs = append(errs, errors.New("upload: path: must be a path starting with '/'"))
	}
	return errors.Join(append(errs, u.Limit.validate("upload: limit"))...)
}

// uploadArgs reads `upload <path> [{ owner_field <f>; limit <n> <w>|off }]`.
func uploadArgs(d *caddyfile.Dispenser) (*UploadConfig, error) {
	u := &UploadConfig{}
	var err error
	if u.Path, err = caddyargs.One(d); err != nil {
		return nil, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch field := d.Val(); field {
		case "owner_field":
			u.OwnerField, err = caddyargs.One(d)
		case "limit":
			u.Limit, err = rateLimitArgs(d)
		default:
			err = d.Errf("upload: unrecognized setting %q", field)
		}
		if err != nil {
			return nil, err
		}
	}
	return u, nil
}

// The upload settings, from the `upload` block or, in configs written
// before it, the flat upload_* settings.

func (h *Handler) uploadPath() string {
	if h.Upload != nil {
		return h.Upload.Path
	}
	return h.UploadPath
}

func (h *Handler) uploadOwnerField() string {
	if h.Upload != nil {
		return cmp.Or(h.Upload.OwnerField, defaultOwnerField)
	}
	return cmp.Or(h.UploadOwnerField, defaultOwnerField)
}

func (h *Handler) uploadLimit() limit.Rate {
	if h.Upload != nil {
		return h.Upload.Limit.rate(defaultUploadLimit)
	}
	return h.UploadLimit.rate(defaultUploadLimit)
}
