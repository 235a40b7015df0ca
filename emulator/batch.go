package emulator

import (
	"crypto/rand"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
)

// Cloudflare's batch API: GET images/v1/batch_token returns a token that
// authorises a subset of the Images API on a separate host, outside the
// global rate limit, at 200 requests per second per token
// (https://developers.cloudflare.com/images/upload-images/images-batch/).
// The emulator serves that host under the path /images/.
const (
	// BatchRateLimit is the calls one batch token may make per second.
	BatchRateLimit = 200
	// BatchTokenTTL is how long a batch token is valid. Cloudflare does
	// not document it; an hour is the emulator's choice.
	BatchTokenTTL = time.Hour
)

// batchToken is a live batch token's expiry and rate limit.
type batchToken struct {
	expires time.Time
	limit   *slidingWindow
}

// batchTokenJSON is the result of GET images/v1/batch_token.
type batchTokenJSON struct {
	Token     string `json:"token"`
	ExpiresAt string `json:"expiresAt"`
}

// newBatchToken creates a token and forgets expired ones, so the set is
// bounded by what the rate-limited API can create in BatchTokenTTL.
func (e *Emulator) newBatchToken() batchTokenJSON {
	now := e.now()
	tok := "emu-batch-" + rand.Text()
	e.batchMu.Lock()
	for t, b := range e.batch {
		if !now.Before(b.expires) {
			delete(e.batch, t)
		}
	}
	e.batch[tok] = &batchToken{
		expires: now.Add(BatchTokenTTL),
		limit:   newSlidingWindow(BatchRateLimit, time.Second, 0),
	}
	e.batchMu.Unlock()
	return batchTokenJSON{Token: tok, ExpiresAt: now.Add(BatchTokenTTL).UTC().Format(time.RFC3339Nano)}
}

// batchTokenFor returns the live batch token r carries.
func (e *Emulator) batchTokenFor(r *http.Request) (*batchToken, bool) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return nil, false
	}
	e.batchMu.Lock()
	defer e.batchMu.Unlock()
	for t, b := range e.batch {
		// Compared in constant time, like the API token.
		if subtle.ConstantTimeCompare([]byte(t), []byte(tok)) == 1 {
			return b, e.now().Before(b.expires)
		}
	}
	return nil, false
}

// serveBatch serves the batch host's /images/<sub>: the calls Cloudflare
// lists for it, with a batch token, under the token's own rate limit and
// not the API token's.
func (e *Emulator) serveBatch(w http.ResponseWriter, r *http.Request, sub string) {
	call := APICall{Batch: true}
	defer func() {
		if e.cfg.OnAPICall != nil {
			e.cfg.OnAPICall(call)
		}
	}()
	fail := func(cerr *codedError) {
		call.Status = cerr.status
		writeError(w, cerr)
	}
	if !batchRoute(r.Method, sub) {
		fail(errNoRoute)
		return
	}
	b, ok := e.batchTokenFor(r)
	if !ok {
		fail(errAuth)
		return
	}
	v := b.limit.take(e.now())
	setRateHeaders(w.Header(), "batch", b.limit, v)
	if !v.ok {
		call.RateLimited = true
		fail(errRateLimited(b.limit))
		return
	}
	call.Status = e.answerAPI(w, r, sub)
}

// batchRoute reports whether the batch host serves method on images/<sub>:
// upload, image details, update, delete, list v2 and direct upload v2.
func batchRoute(method, sub string) bool {
	switch {
	case sub == "v1":
		return method == http.MethodPost
	case sub == "v2":
		return method == http.MethodGet
	case sub == "v2/direct_upload":
		return method == http.MethodPost
	case sub == "v1/stats", sub == "v1/batch_token", strings.HasPrefix(sub, "v1/variants"),
		strings.HasPrefix(sub, "v1/keys"), strings.HasSuffix(sub, "/blob"):
		return false
	case strings.HasPrefix(sub, "v1/"):
		return method == http.MethodGet || method == http.MethodPatch || method == http.MethodDelete
	}
	return false
}
