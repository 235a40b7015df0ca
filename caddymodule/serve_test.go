package caddymodule

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

const testKey = "test-signing-key"

// fixedNow is 2023-11-14T22:13:20Z, 13m20s into an hour.
var fixedNow = time.Unix(1700000000, 0)

func newTestHandler(t testing.TB, edit func(*Handler)) *Handler {
	t.Helper()
	ctx, cancel := newContext(t)
	t.Cleanup(cancel)
	return provisionTestHandler(t, ctx, edit)
}

// provisionTestHandler provisions newTestHandler's handler in ctx.
func provisionTestHandler(t testing.TB, ctx caddy.Context, edit func(*Handler)) *Handler {
	t.Helper()
	h := &Handler{
		AccountHash:    "AccHash_x1",
		SigningKey:     testKey,
		DeliveryURL:    "https://imagedelivery.net",
		Variants:       []string{"public", "thumbnail"},
		PublicVariants: []string{"avatar"},
		SessionRaw:     sessionJSON("none", NoSession{}),
		now:            func() time.Time { return fixedNow },
	}
	if edit != nil {
		edit(h)
	}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return h
}

// nextHandler records that the request was passed on.
type nextHandler struct{ called bool }

func (n *nextHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	n.called = true
	w.WriteHeader(http.StatusTeapot)
	return nil
}

// serve sends one request through h and answers it as Caddy would: a
// returned error becomes its status with an empty body.
func serve(t testing.TB, h *Handler, method, target string, hdr map[string]string) (*httptest.ResponseRecorder, bool) {
	t.Helper()
	w, next, _ := serveErr(t, h, method, target, hdr)
	return w, next
}

// serveErr is serve that also returns the handler's error, for tests of
// what a refusal hands to Caddy.
func serveErr(t testing.TB, h *Handler, method, target string, hdr map[string]string) (*httptest.ResponseRecorder, bool, error) {
	t.Helper()
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	caddyhttp.NewTestReplacer(r)
	return serveRequest(t, h, r)
}

// serveRequest is serveErr for a request the caller built; it adds a
// replacer unless the request has one.
func serveRequest(t testing.TB, h *Handler, r *http.Request) (*httptest.ResponseRecorder, bool, error) {
	t.Helper()
	if _, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); !ok {
		caddyhttp.NewTestReplacer(r)
	}
	w := httptest.NewRecorder()
	next := &nextHandler{}
	err := h.ServeHTTP(w, r, next)
	if err != nil {
		answerError(t, w, err)
	}
	return w, next.called, err
}

// answerError does what Caddy's server does with a handler error when the
// site has no handle_errors routes: the status, the headers the handler
// set, and an empty body.
func answerError(t testing.TB, w *httptest.ResponseRecorder, err error) {
	t.Helper()
	he, ok := errors.AsType[caddyhttp.HandlerError](err)
	if !ok || he.StatusCode == 0 {
		t.Fatalf("ServeHTTP returned %v, not a caddyhttp.HandlerError with a status", err)
	}
	w.WriteHeader(he.StatusCode)
}

// refusalMessage checks that err is the caddyhttp.HandlerError of a
// refusal with the given status and returns the message of the error it
// wraps, the text Caddy logs and offers handle_errors as {err.message}.
func refusalMessage(t testing.TB, err error, status int) string {
	t.Helper()
	he, ok := errors.AsType[caddyhttp.HandlerError](err)
	if !ok {
		t.Fatalf("ServeHTTP returned %v, want a caddyhttp.HandlerError", err)
	}
	if he.StatusCode != status {
		t.Fatalf("HandlerError status %d, want %d", he.StatusCode, status)
	}
	if he.Err == nil {
		t.Fatalf("HandlerError %v has no reason", he)
	}
	return he.Err.Error()
}

// verifySig checks a delivery URL's sig with an HMAC computed here, not by
// the signer package.
func verifySig(t *testing.T, raw string) (exp int64) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	exp, err = strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil {
		t.Fatalf("exp in %s: %v", raw, err)
	}
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write([]byte(u.EscapedPath() + "?exp=" + q.Get("exp")))
	if want := hex.EncodeToString(mac.Sum(nil)); q.Get("sig") != want {
		t.Fatalf("sig of %s does not verify", raw)
	}
	if !strings.HasSuffix(raw, "&sig="+q.Get("sig")) {
		t.Fatalf("sig is not the last parameter: %s", raw)
	}
	return exp
}

func TestServeStatuses(t *testing.T) {
	h := newTestHandler(t, nil)
	const uuid = "2cdc28f0-017a-49c4-9ed7-87056c83901f"
	for i, tc := range []struct {
		method, target string
		accept         string
		wantStatus     int
		wantNext       bool
		wantLocation   string // prefix of Location
	}{
		{"GET", "/img/" + uuid + "/public", "", 302, false, "https://imagedelivery.net/AccHash_x1/" + uuid + "/public?exp="},
		{"HEAD", "/img/" + uuid + "/thumbnail", "", 302, false, "https://imagedelivery.net/AccHash_x1/" + uuid + "/thumbnail?exp="},
		{"GET", "/img/folder/sub/photo.jpg/public", "", 302, false, "https://imagedelivery.net/AccHash_x1/folder/sub/photo.jpg/public?exp="},
		{"GET", "/img/100%25-real/public", "", 302, false, "https://imagedelivery.net/AccHash_x1/100%25-real/public?exp="},
		{"GET", "/img/a%2Fb/public", "", 302, false, "https://imagedelivery.net/AccHash_x1/a/b/public?exp="},
		{"GET", "/img/" + uuid + "/avatar", "", 302, false, "https://imagedelivery.net/AccHash_x1/" + uuid + "/avatar"},
		{"GET", "/img/" + uuid + "/public", "application/json", 200, false, ""},
		{"GET", "/img/" + uuid + "/w=400", "", 400, false, ""},
		{"GET", "/img/" + uuid + "/original", "", 404, false, ""},
		{"GET", "/img/" + uuid + "/public%2Fx", "", 400, false, ""},
		{"GET", "/img/" + uuid, "", 400, false, ""},
		{"GET", "/img/", "", 400, false, ""},
		{"GET", "/img", "", 400, false, ""},
		{"GET", "/img/" + uuid + "/", "", 400, false, ""},
		{"GET", "/img//x/public", "", 400, false, ""},
		{"GET", "/img/a/../b/public", "", 400, false, ""},
		{"GET", "/img/a/%2E%2E/b/public", "", 400, false, ""},
		{"GET", "/img/a%2F..%2Fb/public", "", 400, false, ""},
		{"GET", "/img/a%5Cb/public", "", 400, false, ""},
		{"GET", "/img/a%3Fb/public", "", 400, false, ""},
		{"GET", "/img/a%23b/public", "", 400, false, ""},
		{"GET", "/img/a%00b/public", "", 400, false, ""},
		{"GET", "/img/a%0Ab/public", "", 400, false, ""},
		{"GET", "/img/%FF/public", "", 400, false, ""},
		{"GET", "/img/" + strings.Repeat("a", 1025) + "/public", "", 400, false, ""},
		{"POST", "/img/" + uuid + "/public", "", 405, false, ""},
		{"DELETE", "/img/" + uuid + "/public", "", 405, false, ""},
		{"GET", "/other/" + uuid + "/public", "", 418, true, ""},
		{"GET", "/imgx/" + uuid + "/public", "", 418, true, ""},
		{"POST", "/upload", "", 418, true, ""},
	} {
		w, calledNext, err := serveErr(t, h, tc.method, tc.target, map[string]string{"Accept": tc.accept})
		if w.Code != tc.wantStatus || calledNext != tc.wantNext {
			t.Errorf("case %d %s %s: status %d next=%v, want %d next=%v", i, tc.method, tc.target, w.Code, calledNext, tc.wantStatus, tc.wantNext)
			continue
		}
		loc := w.Header().Get("Location")
		if !strings.HasPrefix(loc, tc.wantLocation) || (tc.wantLocation == "") != (loc == "") {
			t.Errorf("case %d: Location %q, want prefix %q", i, loc, tc.wantLocation)
		}
		switch {
		case w.Code >= 400 && !tc.wantNext:
			// A refusal is handed to Caddy (and handle_errors) as an
			// error; nothing is written, and its text is fixed.
			if w.Body.Len() != 0 || w.Header().Get("Cache-Control") != "no-store" {
				t.Errorf("case %d: refusal wrote body %q with headers %v", i, w.Body.String(), w.Header())
			}
			msg := refusalMessage(t, err, w.Code)
			if strings.Count(msg, "\n") != 0 || len(msg) > 100 || strings.Contains(msg, "sig=") {
				t.Errorf("case %d: error %q is not one short line", i, msg)
			}
			if strings.Contains(msg, "aaaa") || strings.Contains(msg, "%") || strings.Contains(msg, uuid[:8]) || strings.Contains(msg, "real") {
				t.Errorf("case %d: error %q echoes input", i, msg)
			}
			if w.Code == 405 && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("case %d: Allow = %q", i, w.Header().Get("Allow"))
			}
		case w.Code == 302 && strings.Contains(loc, "sig="):
			verifySig(t, loc)
		}
		if tc.method == "HEAD" && w.Body.Len() != 0 {
			t.Errorf("case %d: HEAD has a body", i)
		}
	}
}

func TestRedirectHeaders(t *testing.T) {
	h := newTestHandler(t, nil)
	w, _ := serve(t, h, "GET", "/img/2cdc28f0-017a-49c4-9ed7-87056c83901f/public", nil)
	exp := verifySig(t, w.Header().Get("Location"))
	// now = 22:13:20; now+5m rounds up to 23:00:00; handed out until 22:55:00.
	if want := int64(1700002800); exp != want {
		t.Errorf("exp = %d, want %d", exp, want)
	}
	if exp%3600 != 0 || exp-fixedNow.Unix() < 300 {
		t.Errorf("exp %d is not a multiple of window or less than min_remaining ahead", exp)
	}
	if got, want := w.Header().Get("Cache-Control"), "private, max-age="+strconv.Itoa(1700002800-300-1700000000); got != want {
		t.Errorf("Cache-Control = %q, want %q", got, want)
	}
	if w.Header().Get("Vary") != "Accept" {
		t.Errorf("Vary = %q", w.Header().Get("Vary"))
	}
	w2, _ := serve(t, h, "GET", "/img/2cdc28f0-017a-49c4-9ed7-87056c83901f/public", nil)
	if w2.Header().Get("Location") != w.Header().Get("Location") {
		t.Error("two requests in one window got different URLs")
	}
}

func TestJSONAnswer(t *testing.T) {
	h := newTestHandler(t, nil)
	for _, accept := range []string{"application/json", "text/html, application/json;q=0.9", "Application/JSON"} {
		w, _ := serve(t, h, "GET", "/img/abc/public", map[string]string{"Accept": accept})
		if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("Accept %q: status %d type %q", accept, w.Code, w.Header().Get("Content-Type"))
		}
		var body struct {
			URL       string `json:"url"`
			Expires   int64  `json:"expires"`
			ExpiresAt string `json:"expires_at"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if exp := verifySig(t, body.URL); exp != body.Expires || body.ExpiresAt != "2023-11-14T23:00:00Z" {
			t.Fatalf("body %+v: expires does not match the URL's exp", body)
		}
		if !strings.HasPrefix(w.Header().Get("Cache-Control"), "private, max-age=") || w.Header().Get("Location") != "" {
			t.Fatalf("headers %v", w.Header())
		}
	}
	for _, accept := range []string{"image/avif,image/webp,*/*", "application/json;q=0", "application/jsonx"} {
		if w, _ := serve(t, h, "GET", "/img/abc/public", map[string]string{"Accept": accept}); w.Code != 302 {
			t.Errorf("Accept %q: status %d, want 302", accept, w.Code)
		}
	}
}

func TestCustomPrefix(t *testing.T) {
	h := newTestHandler(t, func(h *Handler) { h.Prefix = "/media/images/" })
	if w, _ := serve(t, h, "GET", "/media/images/abc/public", nil); w.Code != 302 {
		t.Fatalf("status %d", w.Code)
	}
	if _, next := serve(t, h, "GET", "/img/abc/public", nil); !next {
		t.Fatal("the default prefix is still served")
	}
}

func TestRequestCannotChangeHost(t *testing.T) {
	h := newTestHandler(t, nil)
	for _, target := range []string{
		"/img/%2F%2Fevil.example/public",
		"/img/@evil.example/public",
		"/img/evil.example%3A443/public",
	} {
		r := httptest.NewRequest("GET", "http://evil.example"+target, nil)
		r.Header.Set("X-Forwarded-Host", "evil.example")
		caddyhttp.NewTestReplacer(r)
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, r, &nextHandler{})
		if loc := w.Header().Get("Location"); loc != "" && !strings.HasPrefix(loc, "https://imagedelivery.net/AccHash_x1/") {
			t.Errorf("%s: Location %s leaves the delivery host", target, loc)
		}
	}
}

func newContext(t testing.TB) (caddy.Context, context.CancelFunc) {
	t.Helper()
	// A context with a config, as Caddy gives modules, so that handlers can
	// load the cf_images app.
	base, err := caddy.ProvisionContext(&caddy.Config{Admin: &caddy.AdminConfig{Disabled: true}})
	if err != nil {
		t.Fatalf("ProvisionContext: %v", err)
	}
	return caddy.NewContext(base)
}
