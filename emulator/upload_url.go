package emulator

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"time"
)

// Uploads from a URL: POST images/v1 with a url field instead of a file
// makes Cloudflare fetch the image itself
// (https://developers.cloudflare.com/images/upload-images/upload-url/).
// Cloudflare does not document the fetch's bounds; the emulator's are
// these, and the fetched bytes then pass the same size, format and decode
// checks as an uploaded file.
const (
	// DefaultURLFetchTimeout bounds a whole fetch: connecting, redirects,
	// headers and body (see Config.URLFetchTimeout).
	DefaultURLFetchTimeout = 15 * time.Second
	// MaxURLRedirects is the most redirects a fetch follows, each to an
	// http or https URL.
	MaxURLRedirects = 3
)

var (
	errURLScheme  = errf(http.StatusBadRequest, codeBadRequest, "url must be an absolute http or https URL")
	errURLAndFile = errf(http.StatusBadRequest, codeBadRequest, "Only one of file and url may be sent")
	errURLFetch   = errf(http.StatusBadRequest, codeBadRequest, "The image could not be fetched from the url")
)

// urlFetcher is the HTTP client of URL uploads: no proxy from the
// environment (the emulator fetches as Cloudflare does, directly), no
// cookies, at most MaxURLRedirects redirects, each to http(s).
var urlFetcher = &http.Client{
	Transport: &http.Transport{
		Proxy:                 nil,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: DefaultURLFetchTimeout,
	},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxURLRedirects {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return errors.New("redirect to a URL that is not http(s)")
		}
		return nil
	},
}

// parseFetchURL accepts an absolute http(s) URL with a host and no
// credentials.
func parseFetchURL(raw string) (*url.URL, *codedError) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, errURLScheme
	}
	return u, nil
}

// fetchImage GETs u within Config.URLFetchTimeout (or until the client
// that asked goes away) and returns at most MaxFileBytes of body and a
// filename taken from the URL's path. Failures are answered without the
// URL or the upstream's answer, which may carry secrets.
func (e *Emulator) fetchImage(ctx context.Context, u *url.URL) ([]byte, string, *codedError) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.URLFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, "", errURLScheme
	}
	req.Header.Set("Accept", "image/*")
	resp, err := urlFetcher.Do(req)
	if err != nil {
		return nil, "", errURLFetch
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", errURLFetch
	}
	if resp.ContentLength > MaxFileBytes {
		return nil, "", errTooBig
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxFileBytes+1))
	switch {
	case err != nil:
		return nil, "", errURLFetch
	case len(b) > MaxFileBytes:
		return nil, "", errTooBig
	}
	name := path.Base(resp.Request.URL.Path)
	if name == "/" || name == "." {
		name = ""
	}
	return b, cleanFilename(name), nil
}
