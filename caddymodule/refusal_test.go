package caddymodule

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// recordingWriter is a ResponseRecorder that counts what a handler wrote,
// so a test can tell "wrote nothing" from "wrote 200 with no body".
type recordingWriter struct {
	*httptest.ResponseRecorder
	writes int // calls of WriteHeader, Write and WriteString
}

func newRecordingWriter() *recordingWriter {
	return &recordingWriter{ResponseRecorder: httptest.NewRecorder()}
}

func (w *recordingWriter) WriteHeader(code int) {
	w.writes++
	w.ResponseRecorder.WriteHeader(code)
}

func (w *recordingWriter) Write(b []byte) (int, error) {
	w.writes++
	return w.ResponseRecorder.Write(b)
}

func (w *recordingWriter) WriteString(s string) (int, error) {
	w.writes++
	return w.ResponseRecorder.WriteString(s)
}

// TestRefusalsTheCaddyWay: every refusal is returned to Caddy as a
// caddyhttp.HandlerError carrying its status, after the handler set its
// headers and {http.cf_images.outcome}, and with nothing written, so that
// a site's handle_errors routes can answer it. Its reason echoes nothing
// from the request.
func TestRefusalsTheCaddyWay(t *testing.T) {
	const secretID = "refusal-probe-id-7f3a"
	none := newTestHandler(t, nil)
	jwt := jwtHandler(t, authorizeJSON("claim", &ClaimAuthorizer{Claim: "images", Template: "{id}"}))
	app := verdictApp(t)
	intro := newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("introspect", &IntrospectSession{URL: app.URL, Sources: []CredentialSource{{Cookie: "sessionid"}}})
	})
	api := newCFAPI(t, map[string]string{"a1": "alice"})
	limited := apiHandler(t, api, `
		authorize owner
		lookup_limit 1 1m
		upload_path /img/upload
		upload_limit 1 1h`)
	failing, _ := directUploadAPI(t, true)
	broken := uploadHandler(t, failing.URL)

	alice := map[string]string{"Cookie": "session=" + mint(t, "alice", time.Hour, map[string]string{"images": "mine"}, time.Now())}
	bearer := map[string]string{"Authorization": "Bearer " + mint(t, "alice", time.Hour, nil, time.Now())}
	// Spend alice's single lookup and single upload.
	if w, _ := serve(t, limited, "GET", "/img/"+secretID+"-0/public", alice); w.Code != 403 {
		t.Fatalf("first lookup: status %d, want 403", w.Code)
	}
	if w, _ := serve(t, limited, "POST", "/img/upload", alice); w.Code != 200 {
		t.Fatalf("first upload: status %d, want 200", w.Code)
	}

	for _, tc := range []struct {
		name           string
		h              *Handler
		method, target string
		hdr            map[string]string
		status         int
		outcome        string
		header, value  string // a header the refusal must carry; for Retry-After, the most seconds
	}{
		{"bad id", none, "GET", "/img/" + secretID + "/%2E%2E/public", nil, 400, "bad_request", "", ""},
		{"bad variant", none, "GET", "/img/" + secretID + "/w=" + secretID, nil, 400, "bad_request", "", ""},
		{"no token", jwt, "GET", "/img/" + secretID + "/public", nil, 401, "unauthenticated", "WWW-Authenticate", "Bearer"},
		{"garbage token", jwt, "GET", "/img/" + secretID + "/public", map[string]string{"Authorization": "Bearer " + secretID}, 401, "unauthenticated", "WWW-Authenticate", "Bearer"},
		{"not granted", jwt, "GET", "/img/" + secretID + "/public", alice, 403, "forbidden", "", ""},
		{"unknown variant", none, "GET", "/img/" + secretID + "/original", nil, 404, "not_found", "", ""},
		{"POST image", none, "POST", "/img/" + secretID + "/public", nil, 405, "method_not_allowed", "Allow", "GET, HEAD"},
		{"GET upload", limited, "GET", "/img/upload", alice, 405, "method_not_allowed", "Allow", "POST"},
		{"upload unauthenticated", limited, "POST", "/img/upload", nil, 401, "unauthenticated", "WWW-Authenticate", "Bearer"},
		{"lookup limit", limited, "GET", "/img/" + secretID + "-1/public", alice, 429, "limited", "Retry-After", "60"},
		{"upload limit", limited, "POST", "/img/upload", alice, 429, "limited", "Retry-After", "3600"},
		{"application down", intro, "GET", "/img/" + secretID + "/public", map[string]string{"Cookie": "sessionid=broken"}, 503, "unavailable", "Retry-After", "5"},
		{"upload upstream error", broken, "POST", "/img/upload", bearer, 502, "upstream_error", "", ""},
	} {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		repl := caddyhttp.NewTestReplacer(r)
		w := newRecordingWriter()
		next := &nextHandler{}
		err := tc.h.ServeHTTP(w, r, next)
		if err == nil || next.called {
			t.Errorf("%s: error %v, next called %v: want a refusal", tc.name, err, next.called)
			continue
		}
		reason := refusalMessage(t, err, tc.status)
		if w.writes != 0 || w.Body.Len() != 0 {
			t.Errorf("%s: the handler wrote (%d calls, body %q); refusals are Caddy's to write", tc.name, w.writes, w.Body.String())
		}
		if got := w.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", tc.name, got)
		}
		switch got := w.Header().Get(tc.header); {
		case tc.header == "Retry-After":
			if !retryAfterWithin(got, tc.value) {
				t.Errorf("%s: Retry-After %q, want 1 to %s seconds", tc.name, got, tc.value)
			}
		case tc.header != "" && got != tc.value:
			t.Errorf("%s: %s %q, want %q", tc.name, tc.header, got, tc.value)
		}
		for _, hdr := range []string{"WWW-Authenticate", "Retry-After", "Allow"} {
			if hdr != tc.header && w.Header().Get(hdr) != "" {
				t.Errorf("%s: unexpected %s %q", tc.name, hdr, w.Header().Get(hdr))
			}
		}
		if w.Header().Get("Location") != "" {
			t.Errorf("%s: a refusal carries Location %q", tc.name, w.Header().Get("Location"))
		}
		if got, _ := repl.GetString("http.cf_images.outcome"); got != tc.outcome {
			t.Errorf("%s: {http.cf_images.outcome} = %q, want %q", tc.name, got, tc.outcome)
		}
		if strings.Contains(reason, secretID[:12]) || strings.Contains(reason, "api-token") || strings.Contains(reason, "0123456789abcdef") {
			t.Errorf("%s: reason %q echoes the request or a secret", tc.name, reason)
		}
	}
}

// retryAfterWithin reports whether a Retry-After header is whole seconds
// from 1 to most.
func retryAfterWithin(header, most string) bool {
	n, err := strconv.Atoi(header)
	m, _ := strconv.Atoi(most)
	return err == nil && n >= 1 && n <= m
}
