// Package cfapi makes the Cloudflare Images API calls the gateway needs:
// image details (for owner checks) and one-time direct-upload URLs.
//
// Calls authenticate with an API token in the Authorization header. Errors
// carry the HTTP status and Cloudflare's error codes and messages, never
// the token.
//
// The API allows 1,200 calls per five minutes per user or account token
// (https://developers.cloudflare.com/fundamentals/api/reference/limits/),
// shared by every user of the gateway. A [Client] therefore bounds the
// calls it has in flight and, once the API answers 429, makes no call at
// all until the API's Retry-After has passed.
package cfapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultBaseURL is Cloudflare's v4 API.
const DefaultBaseURL = "https://api.cloudflare.com/client/v4"

// maxResponseBytes bounds an API response; image details are small.
const maxResponseBytes = 1 << 20

// ErrNotFound reports that the image does not exist: HTTP 404 or Cloudflare
// error 5404, in the API's JSON envelope.
var ErrNotFound = errors.New("image not found")

// ErrNotAPI reports an answer that is not the API's JSON envelope where the
// API always sends one: a 404 or a success from some other server, as when
// BaseURL points at the wrong host or path. It is not ErrNotFound, so a
// misconfiguration shows as an outage instead of every image missing.
var ErrNotAPI = errors.New("the API answered like something else: check api_url")

// Client calls the Cloudflare Images API for one account. Use it through a
// pointer and do not change its fields after the first call: the call
// limits they configure are shared by every call through the Client.
type Client struct {
	// BaseURL is the API root. Default DefaultBaseURL; tests and the
	// emulator point it elsewhere.
	BaseURL string
	// AccountID is the Cloudflare account id. Required.
	AccountID string
	// APIToken is a token with Images Read (and Write for uploads).
	// Required.
	APIToken string
	// HTTP is the client used. Default: a client with a 10s timeout.
	HTTP *http.Client
	// MaxConcurrent bounds the calls in flight at once; further calls wait
	// for a slot, or for their context to end. Default
	// DefaultMaxConcurrent.
	MaxConcurrent int
	// OnRateLimited, if set, is called once for every call that fails with
	// ErrRateLimited, the API's own 429 included, e.g. to count them. It
	// must not block.
	OnRateLimited func()
	// Now is the clock that times a 429's Retry-After. Default time.Now.
	Now func() time.Time

	initOnce sync.Once
	slots    chan struct{} // a semaphore of MaxConcurrent slots

	mu           sync.Mutex
	blockedUntil time.Time // no calls before this, after a 429
}

// Image is an image's details as the API reports them.
type Image struct {
	ID                string         `json:"id"`
	Filename          string         `json:"filename"`
	Meta              map[string]any `json:"meta"`
	RequireSignedURLs bool           `json:"requireSignedURLs"`
	// Draft is true for a direct upload whose bytes have not arrived yet.
	Draft    bool      `json:"draft"`
	Creator  string    `json:"creator"`
	Uploaded time.Time `json:"uploaded"`
}

// APIError is a failed API call.
type APIError struct {
	// Op names the call, e.g. "get image".
	Op string
	// Status is the HTTP status code.
	Status int
	// Errors are Cloudflare's error entries, if the body had any.
	Errors []ErrorEntry

	notAPI bool // the body was not the API's envelope: ErrNotAPI
}

// ErrorEntry is one element of the envelope's errors array.
type ErrorEntry struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cloudflare images: %s: status %d", e.Op, e.Status)
	for i, x := range e.Errors {
		if i == 3 {
			b.WriteString("; …")
			break
		}
		fmt.Fprintf(&b, "; %d %s", x.Code, truncate(x.Message, 200))
	}
	if e.notAPI {
		b.WriteString(": ")
		b.WriteString(ErrNotAPI.Error())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for a 404 or code 5404 in the
// API's envelope, and errors.Is(err, ErrNotAPI) true for an answer that
// was not the envelope.
func (e *APIError) Is(target error) bool {
	if target == ErrNotAPI {
		return e.notAPI
	}
	if target != ErrNotFound || e.notAPI {
		return false
	}
	if e.Status == http.StatusNotFound {
		return true
	}
	for _, x := range e.Errors {
		if x.Code == 5404 {
			return true
		}
	}
	return false
}

// envelope is the v4 response wrapper. Success is a pointer so that a JSON
// body without it, which is not an envelope, can be told apart.
type envelope struct {
	Success  *bool           `json:"success"`
	Errors   []ErrorEntry    `json:"errors"`
	Messages json.RawMessage `json:"messages"`
	Result   json.RawMessage `json:"result"`
}

// Image returns the details of image id.
func (c *Client) Image(ctx context.Context, id string) (Image, error) {
	if id == "" {
		return Image{}, errors.New("cloudflare images: get image: empty id")
	}
	req, err := c.newRequest(ctx, http.MethodGet, "images/v1/"+url.PathEscape(id), nil)
	if err != nil {
		return Image{}, fmt.Errorf("cloudflare images: get image: %w", err)
	}
	var img Image
	if err := c.do(req, "get image", &img); err != nil {
		return Image{}, err
	}
	return img, nil
}

func (c *Client) newRequest(ctx context.Context, method, path string, body io.Reader) (*http.Request, error) {
	if c.AccountID == "" || c.APIToken == "" {
		return nil, errors.New("account id and api token are required")
	}
	base := c.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u := strings.TrimSuffix(base, "/") + "/accounts/" + url.PathEscape(c.AccountID) + "/" + path
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIToken)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// do sends req, within the Client's call limits, and decodes the
// envelope's result into out.
func (c *Client) do(req *http.Request, op string, out any) error {
	release, err := c.acquire(req.Context(), op)
	if err != nil {
		return err
	}
	defer release()
	hc := c.HTTP
	if hc == nil {
		// Cheap: connections are pooled by the default transport.
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		// *url.Error names the URL, which holds no secret; the token is
		// only in a header.
		return fmt.Errorf("cloudflare images: %s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests {
		// The body is not needed; draining a little lets the connection
		// be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		return c.rateLimited(op, resp.Header.Get("Retry-After"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("cloudflare images: %s: reading response: %w", op, err)
	}
	if len(body) > maxResponseBytes {
		return fmt.Errorf("cloudflare images: %s: response larger than 1 MiB", op)
	}
	var env envelope
	isEnvelope := json.Unmarshal(body, &env) == nil && env.Success != nil
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	switch {
	case !isEnvelope && (ok || resp.StatusCode == http.StatusNotFound):
		return &APIError{Op: op, Status: resp.StatusCode, notAPI: true}
	case !ok || !isEnvelope || !*env.Success:
		return &APIError{Op: op, Status: resp.StatusCode, Errors: env.Errors}
	}
	if err := json.Unmarshal(env.Result, out); err != nil {
		return fmt.Errorf("cloudflare images: %s: decoding result: %w", op, err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
