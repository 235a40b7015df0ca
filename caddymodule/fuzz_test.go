package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// FuzzServeHTTP sends arbitrary paths and checks the invariants that hold
// for every request: the answer is one of the documented statuses, a URL
// handed out always points at the configured delivery host and account,
// and an error body is one short line that does not echo the path.
func FuzzServeHTTP(f *testing.F) {
	for _, p := range []string{
		"/img/abc/public", "/img/a%2Fb/thumbnail", "/img/../x/public", "/img//evil.example/public",
		"/img/%2F%2Fevil.example/avatar", "/img/a/b/c/w=100", "/img/@evil/public", "/other",
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
		caddyhttp.NewTestReplacer(r)
		w := httptest.NewRecorder()
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
			w.WriteHeader(http.StatusTeapot)
			return nil
		})
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatalf("ServeHTTP error: %v", err)
		}
		switch w.Code {
		case 302, 200, 304, 400, 404, 405, 418:
		default:
			t.Fatalf("%s %q: unexpected status %d", method, path, w.Code)
		}
		for _, v := range []string{w.Header().Get("Location"), jsonURL(w)} {
			if v != "" && !strings.HasPrefix(v, "https://imagedelivery.net/AccHash_x1/") {
				t.Fatalf("%q: URL %q leaves the delivery host or account", path, v)
			}
		}
		if w.Code >= 400 && w.Code != 418 {
			body := w.Body.String()
			if strings.Count(body, "\n") > 1 || len(body) > 100 {
				t.Fatalf("%q: error body %q", path, body)
			}
			if len(u.EscapedPath()) > 12 && strings.Contains(body, u.EscapedPath()) {
				t.Fatalf("%q: error body echoes the path", path)
			}
		}
	})
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
