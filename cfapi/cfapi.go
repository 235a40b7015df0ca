// Package cfapi makes the Cloudflare Images API calls the gateway needs:
// image details (for owner checks) and one-time direct-upload URLs.
//
// Calls authenticate with an API token in the Authorization header. Errors
// carry the HTTP status and Cloudflare's error codes and messages, never
// the token.
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
	"time"
)

// DefaultBaseURL is Cloudflare's v4 API.
const DefaultBaseURL = "https://api.cloudflare.com/client/v4"

// maxResponseBytes bounds an API response; image details are small.
const maxResponseBytes = 1 << 20

// ErrNotFound reports that the image does not exist (HTTP 404 or
// Cloudflare error 5404).
var ErrNotFound = errors.New("image not found")

// Client calls the Cloudflare Images API for one account.
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
	return b.String()
}

// Is makes errors.Is(err, ErrNotFound) true for a 404 or code 5404.
func (e *APIError) Is(target error) bool {
	if target != ErrNotFound {
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

// envelope is the v4 response wrapper.
type envelope struct {
	Success  bool            `json:"success"`
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

// do sends req and decodes the envelope's result into out.
func (c *Client) do(req *http.Request, op string, out any) error {
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
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("cloudflare images: %s: reading response: %w", op, err)
	}
	if len(body) > maxResponseBytes {
		return fmt.Errorf("cloudflare images: %s: response larger than 1 MiB", op)
	}
	var env envelope
	jsonErr := json.Unmarshal(body, &env)
	if resp.StatusCode < 200 || resp.StatusCode > 299 || jsonErr != nil || !env.Success {
		apiErr := &APIError{Op: op, Status: resp.StatusCode, Errors: env.Errors}
		if jsonErr != nil && resp.StatusCode >= 200 && resp.StatusCode <= 299 {
			return fmt.Errorf("%w: malformed response", apiErr)
		}
		return apiErr
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
