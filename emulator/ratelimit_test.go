package emulator_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/images"
	"github.com/cloudflare/cloudflare-go/v6/option"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// callLog records the OnAPICall hook.
type callLog struct {
	mu    sync.Mutex
	calls []emulator.APICall
}

func (l *callLog) add(c emulator.APICall) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
}

func (l *callLog) refused() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, c := range l.calls {
		if c.RateLimited {
			n++
		}
	}
	return n
}

// Past the limit every API call gets Cloudflare's 429: envelope code 971
// with its wording, Retry-After counting down the block, the rate-limit
// headers; deliveries and one-time uploads are not counted or refused;
// after the block calls are admitted again.
func TestAPIRateLimit(t *testing.T) {
	var log callLog
	env := newEnv(t, func(c *emulator.Config) {
		c.APIRateLimit, c.APIRateWindow, c.APIRateBlock = 5, time.Minute, 2*time.Minute
		c.OnAPICall = log.add
	})
	id := env.upload(t, false, pngBytes(t, 20, 20)) // call 1
	for i := 2; i <= 5; i++ {
		resp, b := env.apiDo(t, "GET", "v1/"+id, nil, "")
		if resp.StatusCode != 200 {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, b)
		}
		if got, want := resp.Header.Get("Ratelimit"), `"default";r=`+string(rune('0'+5-i))+";t=60"; got != want {
			t.Errorf("call %d: Ratelimit %q, want %q", i, got, want)
		}
		if got := resp.Header.Get("Ratelimit-Policy"); got != `"default";q=5;w=60` {
			t.Errorf("call %d: Ratelimit-Policy %q", i, got)
		}
		if resp.Header.Get("Retry-After") != "" {
			t.Errorf("call %d: Retry-After on an admitted call", i)
		}
	}
	env.clock.Add(10 * time.Second)
	resp, b := env.apiDo(t, "GET", "v1/"+id, nil, "")
	wantAPIError(t, resp, b, http.StatusTooManyRequests, 971)
	if msg := decodeEnvelope(t, b).Errors[0].Message; msg != "More than 5 requests per 60 seconds reached. Please wait and consider throttling your request speed" {
		t.Errorf("message %q", msg)
	}
	if got := resp.Header.Get("Retry-After"); got != "120" {
		t.Errorf("Retry-After %q, want 120 (the block)", got)
	}
	if got := resp.Header.Get("Ratelimit"); got != `"default";r=0;t=120` {
		t.Errorf("Ratelimit %q", got)
	}

	// The block holds even once the window has room again.
	env.clock.Add(119*time.Second + 500*time.Millisecond)
	resp, b = env.apiDo(t, "GET", "v1/"+id, nil, "")
	wantAPIError(t, resp, b, http.StatusTooManyRequests, 971)
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q half a second before the end, want 1", got)
	}
	// Not API calls: delivery and a one-time upload URL.
	if resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/public", nil, nil); resp.StatusCode != 200 {
		t.Errorf("delivery while blocked: %d %s", resp.StatusCode, b)
	}
	// Nor is a failed authentication counted or refused as rate-limited.
	resp, _ = env.do(t, "GET", "/client/v4/accounts/"+emulator.DefaultAccountID+"/images/v1", nil,
		http.Header{"Authorization": {"Bearer wrong"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bad token while blocked: %d, want 403", resp.StatusCode)
	}
	if n := log.refused(); n != 2 {
		t.Errorf("hook counted %d refused calls, want 2", n)
	}

	env.clock.Add(time.Second)
	if resp, b := env.apiDo(t, "GET", "v1/"+id, nil, ""); resp.StatusCode != 200 {
		t.Fatalf("after the block: %d %s", resp.StatusCode, b)
	}
}

// The official SDK sees the 429 as an API error with code 971 (retries
// off, as the SDK would otherwise wait out Retry-After itself).
func TestAPIRateLimitSDK(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) { c.APIRateLimit = 1 })
	ctx := context.Background()
	if _, err := env.api.V1.Stats.Get(ctx, images.V1StatGetParams{AccountID: acct}); err != nil {
		t.Fatal(err)
	}
	_, err := env.api.V1.Stats.Get(ctx, images.V1StatGetParams{AccountID: acct})
	wantSDKError(t, err, http.StatusTooManyRequests, 971)
}

// A negative limit turns it off.
func TestAPIRateLimitOff(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) { c.APIRateLimit = -1 })
	for i := range 50 {
		if resp, b := env.apiDo(t, "GET", "v1/stats", nil, ""); resp.StatusCode != 200 || resp.Header.Get("Ratelimit") != "" {
			t.Fatalf("call %d: %d %s (Ratelimit %q)", i, resp.StatusCode, b, resp.Header.Get("Ratelimit"))
		}
	}
}

// batchEnvelope is the SDK-decoded answer of GET images/v1/batch_token.
type batchEnvelope struct {
	Result struct {
		Token     string    `json:"token"`
		ExpiresAt time.Time `json:"expiresAt"`
	} `json:"result"`
}

// A batch token, fetched with the SDK, authorises the SDK's image calls
// on the batch host (its paths have no /client/v4/accounts/<id> prefix, so
// the SDK is pointed there by a middleware) while the API token is
// blocked; the batch host has its own limit of 200 calls per second.
func TestBatchToken(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) { c.APIRateLimit = 2 })
	ctx := context.Background()
	client := cloudflare.NewClient(
		option.WithBaseURL(env.srv.URL+"/client/v4/"),
		option.WithAPIToken(emulator.DefaultAPIToken),
		option.WithMaxRetries(0),
	)
	var tok batchEnvelope
	if err := client.Get(ctx, "accounts/"+emulator.DefaultAccountID+"/images/v1/batch_token", nil, &tok); err != nil {
		t.Fatalf("batch_token: %v", err)
	}
	if !strings.HasPrefix(tok.Result.Token, "emu-batch-") || !tok.Result.ExpiresAt.Equal(start.Add(emulator.BatchTokenTTL)) {
		t.Fatalf("token %+v", tok.Result)
	}
	env.apiDo(t, "GET", "v1/stats", nil, "")
	if resp, _ := env.apiDo(t, "GET", "v1/stats", nil, ""); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the API token should be blocked, got %d", resp.StatusCode)
	}

	toBatchHost := func(r *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		prefix := "/client/v4/accounts/" + emulator.DefaultAccountID + "/images/"
		r.URL.Path = "/images/" + strings.TrimPrefix(r.URL.Path, prefix)
		return next(r)
	}
	batch := images.NewImageService(
		option.WithBaseURL(env.srv.URL+"/client/v4/"),
		option.WithAPIToken(tok.Result.Token),
		option.WithMaxRetries(0),
		option.WithMiddleware(toBatchHost),
	)
	img, err := batch.V1.New(ctx, images.V1NewParams{
		AccountID: acct,
		File:      cloudflare.F[io.Reader](namedReader{bytes.NewReader(pngBytes(t, 20, 20)), "b.png"}),
		Metadata:  cloudflare.F[any](map[string]any{"via": "batch"}),
	})
	if err != nil {
		t.Fatalf("batch upload: %v", err)
	}
	if _, err := batch.V1.Get(ctx, img.ID, images.V1GetParams{AccountID: acct}); err != nil {
		t.Fatalf("batch details: %v", err)
	}
	if _, err := batch.V2.List(ctx, images.V2ListParams{AccountID: acct}); err != nil {
		t.Fatalf("batch list v2: %v", err)
	}
	// Not on the batch host: stats, keys, blobs; nor with the API token.
	_, err = batch.V1.Stats.Get(ctx, images.V1StatGetParams{AccountID: acct})
	wantSDKError(t, err, http.StatusNotFound, 7003)
	resp, _ := env.do(t, "GET", "/images/v1/"+img.ID, nil, http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("API token on the batch host: %d, want 403", resp.StatusCode)
	}

	// 200 calls in one second pass, the 201st is refused until the window
	// has room, with no lasting block. (Three calls above used it.)
	hdr := http.Header{"Authorization": {"Bearer " + tok.Result.Token}}
	for i := 3; i < emulator.BatchRateLimit; i++ {
		if resp, b := env.do(t, "GET", "/images/v1/"+img.ID, nil, hdr); resp.StatusCode != 200 {
			t.Fatalf("batch call %d: %d %s", i, resp.StatusCode, b)
		}
	}
	resp, b := env.do(t, "GET", "/images/v1/"+img.ID, nil, hdr)
	wantAPIError(t, resp, b, http.StatusTooManyRequests, 971)
	if got := resp.Header.Get("Ratelimit-Policy"); got != `"batch";q=200;w=1` {
		t.Errorf("Ratelimit-Policy %q", got)
	}
	env.clock.Add(time.Second)
	if resp, b := env.do(t, "GET", "/images/v1/"+img.ID, nil, hdr); resp.StatusCode != 200 {
		t.Fatalf("a second later: %d %s", resp.StatusCode, b)
	}
	// An expired token is refused.
	env.clock.Add(emulator.BatchTokenTTL)
	if resp, _ := env.do(t, "GET", "/images/v1/"+img.ID, nil, hdr); resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired batch token: %d, want 403", resp.StatusCode)
	}
}
