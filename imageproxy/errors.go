package imageproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// UpstreamError is an upstream fault reported before anything was written
// to the client: the caller answers with Status and must not cache the
// answer. Its text never holds the upstream URL, which carries a
// signature, nor anything upstream sent.
type UpstreamError struct {
	// Status is what the client should get: 404 when upstream answered
	// 404, 504 when the fetch ran past Config.Timeout, else 502.
	Status int
	// Upstream is upstream's status, or 0 when there was no answer.
	Upstream int
	// SignatureRefused reports upstream's 403: the delivery URL's
	// signature was refused, so the signing key is likely wrong or
	// revoked. The caller should log the key's fingerprint.
	SignatureRefused bool
	// Remembered reports a 404 answered from memory (Config.NegativeTTL):
	// no request went upstream this time.
	Remembered bool
	// Err is the cause when upstream did not answer with a status, with
	// the URL removed, or what was wrong with its 200 (not an image type).
	Err error
}

// Error describes the fault: upstream's status, or the cause without the
// URL.
func (e *UpstreamError) Error() string {
	if e.Upstream != 0 {
		s := "imageproxy: upstream answered " + strconv.Itoa(e.Upstream)
		if e.SignatureRefused {
			s += " (signature refused)"
		}
		if e.Err != nil {
			s += ": " + e.Err.Error()
		}
		return s
	}
	return "imageproxy: upstream fetch failed: " + e.Err.Error()
}

// Unwrap returns Err.
func (e *UpstreamError) Unwrap() error { return e.Err }

// statusError maps a non-200 upstream status to an UpstreamError.
func statusError(status int) *UpstreamError {
	e := &UpstreamError{Status: http.StatusBadGateway, Upstream: status}
	switch status {
	case http.StatusNotFound:
		e.Status = http.StatusNotFound
	case http.StatusForbidden:
		e.SignatureRefused = true
	}
	return e
}

// fetchError maps a failed request or body read to an UpstreamError: 504
// when ctx, the fetch's own context, ran out of time, else 502.
func fetchError(ctx context.Context, err error, rawURL string) *UpstreamError {
	e := &UpstreamError{Status: http.StatusBadGateway, Err: scrub(err, rawURL)}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e.Status = http.StatusGatewayTimeout
	}
	return e
}

// errHidden stands for a cause whose text would reveal the signed URL.
var errHidden = errors.New("request failed (cause withheld: it names the signed URL)")

// scrub returns err without the upstream URL or address: the cause inside
// a *url.Error, a *net.OpError's operation and cause without its
// addresses, or errHidden if the text still holds the URL's query.
func scrub(err error, rawURL string) error {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	if oe, ok := errors.AsType[*net.OpError](err); ok && oe.Err != nil {
		err = fmt.Errorf("%s: %w", oe.Op, oe.Err)
	}
	if _, query, ok := strings.Cut(rawURL, "?"); ok && query != "" && strings.Contains(err.Error(), query) ||
		strings.Contains(err.Error(), rawURL) || strings.Contains(err.Error(), "sig=") {
		return errHidden
	}
	return err
}

// abort wraps an error that ends a response already begun, or a request
// whose client is gone, with http.ErrAbortHandler. It never wraps an
// *UpstreamError, which tells the caller that nothing was written.
func abort(err error) error {
	if ue, ok := err.(*UpstreamError); ok {
		err = errors.New(strings.TrimPrefix(ue.Error(), "imageproxy: "))
	}
	return fmt.Errorf("imageproxy: response aborted: %w: %w", http.ErrAbortHandler, err)
}
