package caddymodule

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/imageref"
	"github.com/seed-a64a90cf/imagegate/session"
)

// refusalStatuses are the statuses a refusal may carry, as the Handler's
// documentation lists them.
var refusalStatuses = []int{400, 401, 403, 404, 405, 429, 503}

// fixedReasons are the only reasons a gateway without sessions gives: the
// texts of imageref's errors and the handler's own. A reason outside this
// set would have been built from the request.
var fixedReasons = func() map[string]bool {
	m := map[string]bool{}
	for _, err := range []error{
		imageref.ErrMissingVariant, imageref.ErrBadEncoding, imageref.ErrEmptyID, imageref.ErrIDTooLong,
		imageref.ErrIDSlashes, imageref.ErrIDSegment, imageref.ErrIDCharacter, imageref.ErrBadVariant,
		errMethod, errUnknownVariant,
	} {
		m[err.Error()] = true
	}
	return m
}()

// FuzzServeHTTP sends arbitrary paths to a gateway without sessions and
// checks the invariants that hold for every request: a URL handed out
// always points at the configured delivery host and account, and a refusal
// is a caddyhttp.HandlerError with a documented status, nothing written,
// and one of a fixed set of reasons, so it echoes nothing of the request.
func FuzzServeHTTP(f *testing.F) {
	for _, p := range []string{
		"/img/abc/public", "/img/a%2Fb/thumbnail", "/img/../x/public", "/img//evil.example/public",
		"/img/%2F%2Fevil.example/avatar", "/img/a/b/c/w=100", "/img/@evil/public", "/other", "/img/abc/original",
	} {
		f.Add(p, "GET", "")
		f.Add(p, "HEAD", "application/json")
	}
	h := newTestHandler(f, nil)
	h.logger = zap.NewNop()
	f.Fuzz(func(t *testing.T, path, method, accept string) {
		if method != "GET" && method != "HEAD" && method != "POST" {
			method = "GET"
		}
		u, err := url.ParseRequestURI(path)
		if err != nil || u.Host != "" {
			return
		}
		r := httptest.NewRequest(method, "http://gateway.test/", nil)
		r.URL = u
		r.Header.Set("Accept", accept)
		if _, status, reason := checkServe(t, h, r, u.EscapedPath()); status >= 400 && status != 418 && !fixedReasons[reason] {
			t.Fatalf("%s %q: reason %q is not one of the fixed texts", method, path, reason)
		}
	})
}

// FuzzServeHTTPJWT is FuzzServeHTTP behind `session jwt` with `authorize
// claim images {id}` and uploads, with a credential chosen by mode: none,
// a raw cookie, a raw Authorization header, a valid bearer token whose
// subject and grant are cred, or a valid cookie token with cred appended.
// On top of FuzzServeHTTP's invariants, a 401 challenges with Bearer and
// no reason repeats 20 bytes of the path, cred or the token sent.
func FuzzServeHTTPJWT(f *testing.F) {
	for _, p := range []string{"/img/abc/public", "/img/upload", "/img/a%2Fb/thumbnail", "/img/x/avatar", "/img/abc/original"} {
		for mode := range uint8(5) {
			f.Add(p, "GET", mode, "abc")
		}
		f.Add(p, "POST", uint8(3), "alice")
	}
	f.Add("/img/abc/public", "GET", uint8(2), "Bearer eyJhbGciOiJub25lIn0.e30.")
	f.Add("/img/abc/public", "GET", uint8(1), `eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.e30.c2ln`)
	f.Add("/img/abc/public", "GET", uint8(1), `eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOjF9.sig`)

	api, _ := directUploadAPI(f, false)
	f.Setenv("TEST_JWT_SECRET", jwtSecret)
	h := newTestHandler(f, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Sources: []CredentialSource{{Cookie: "session"}, {Header: "Authorization"}},
			Secret: "{env.TEST_JWT_SECRET}"})
		h.AuthorizeRaw = authorizeJSON("claim", &ClaimAuthorizer{Claim: "images", Template: "{id}"})
		h.AccountID, h.APIToken, h.APIURL = "0123456789abcdef0123456789abcdef", "api-token", api.URL
		h.UploadPath = "/img/upload"
	})
	h.logger = zap.NewNop()
	f.Fuzz(func(t *testing.T, path, method string, mode uint8, cred string) {
		if method != "GET" && method != "HEAD" && method != "POST" {
			method = "GET"
		}
		u, err := url.ParseRequestURI(path)
		if err != nil || u.Host != "" {
			return
		}
		r := httptest.NewRequest(method, "http://gateway.test/", nil)
		r.URL = u
		sent := cred
		switch mode % 5 {
		case 1:
			r.Header.Set("Cookie", "session="+cred)
		case 2:
			r.Header.Set("Authorization", cred)
		case 3:
			sent = mintFor(t, cred, "")
			r.Header.Set("Authorization", "Bearer "+sent)
		case 4:
			sent = mintFor(t, "alice", cred)
			r.Header.Set("Cookie", "session="+sent)
		}
		w, status, _ := checkServe(t, h, r, u.EscapedPath(), cred, sent)
		if status == 401 && w.Header().Get("Www-Authenticate") != "Bearer" {
			t.Fatalf("%s %q: 401 without WWW-Authenticate: Bearer", method, path)
		}
	})
}

// mintFor returns a valid token for sub (or alice) granting sub, with
// suffix appended to it.
func mintFor(t *testing.T, sub, suffix string) string {
	if sub == "" || !validClaim(sub) {
		sub = "alice"
	}
	tok, err := session.MintHS256([]byte(jwtSecret), sub, time.Hour, map[string]string{"images": sub}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok + suffix
}

// validClaim reports whether s survives a JSON round trip unchanged.
func validClaim(s string) bool { return strings.ToValidUTF8(s, "") == s }

// checkServe serves r and checks the invariants every answer keeps. It
// returns the writer, the status (the HandlerError's for a refusal) and
// the refusal's reason. No reason may contain 20 consecutive bytes of any
// of echo.
func checkServe(t *testing.T, h *Handler, r *http.Request, echo ...string) (*recordingWriter, int, string) {
	t.Helper()
	repl := caddyhttp.NewTestReplacer(r)
	w := newRecordingWriter()
	err := h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		w.WriteHeader(http.StatusTeapot)
		return nil
	}))
	target := r.Method + " " + r.URL.EscapedPath()
	for _, v := range []string{w.Header().Get("Location"), jsonURL(w.ResponseRecorder)} {
		if v != "" && !strings.HasPrefix(v, "https://imagedelivery.net/AccHash_x1/") {
			t.Fatalf("%s: URL %q leaves the delivery host or account", target, v)
		}
	}
	if err == nil {
		switch w.Code {
		case 302, 200, 304, 418:
		default:
			t.Fatalf("%s: unexpected status %d", target, w.Code)
		}
		return w, w.Code, ""
	}
	he, ok := errors.AsType[caddyhttp.HandlerError](err)
	if !ok || !slices.Contains(refusalStatuses, he.StatusCode) || he.Err == nil {
		t.Fatalf("%s: ServeHTTP returned %v, want a HandlerError with a documented status", target, err)
	}
	if w.writes != 0 || w.Body.Len() != 0 || w.Header().Get("Location") != "" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%s: refusal %d wrote %d times (body %q), headers %v", target, he.StatusCode, w.writes, w.Body.String(), w.Header())
	}
	if out, _ := repl.GetString("http.cf_images.outcome"); out == "" {
		t.Fatalf("%s: refusal %d left {http.cf_images.outcome} unset", target, he.StatusCode)
	}
	reason := he.Err.Error()
	if strings.ContainsAny(reason, "\r\n") || len(reason) > 200 {
		t.Fatalf("%s: reason %q is not one short line", target, reason)
	}
	for _, s := range echo {
		if i := echoes(reason, s, 20); i >= 0 {
			t.Fatalf("%s: reason %q repeats %q", target, reason, s[i:i+20])
		}
	}
	return w, he.StatusCode, reason
}

// echoes returns the offset of the first n-byte window of s found in msg,
// or -1.
func echoes(msg, s string, n int) int {
	for i := 0; i+n <= len(s); i++ {
		if strings.Contains(msg, s[i:i+n]) {
			return i
		}
	}
	return -1
}

func jsonURL(w *httptest.ResponseRecorder) string {
	body := w.Body.String()
	if !strings.HasPrefix(body, `{"url":"`) {
		return ""
	}
	rest := strings.TrimPrefix(body, `{"url":"`)
	end := strings.IndexByte(rest, '"')
	if end < 0 {
		return rest
	}
	return rest[:end]
}
