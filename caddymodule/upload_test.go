package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// directUploadAPI records the form of each direct-upload call.
func directUploadAPI(t testing.TB, fail bool) (*httptest.Server, func() []map[string]string) {
	var mu sync.Mutex
	var forms []map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/accounts/0123456789abcdef0123456789abcdef/images/v2/direct_upload" || r.Header.Get("Authorization") != "Bearer api-token" {
			w.WriteHeader(404)
			return
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			w.WriteHeader(400)
			return
		}
		form := map[string]string{}
		for k, v := range r.MultipartForm.Value {
			form[k] = v[0]
		}
		mu.Lock()
		forms = append(forms, form)
		mu.Unlock()
		if fail {
			w.WriteHeader(500)
			_, _ = w.Write([]byte(`{"success":false,"errors":[{"code":5500,"message":"account 0123456789abcdef0123456789abcdef broke"}],"messages":[],"result":null}`))
			return
		}
		_, _ = w.Write([]byte(`{"success":true,"errors":[],"messages":[],"result":{"id":"new-id","uploadURL":"http://127.0.0.1:1/acc/new-id"}}`))
	}))
	t.Cleanup(srv.Close)
	return srv, func() []map[string]string { mu.Lock(); defer mu.Unlock(); return forms }
}

func uploadHandler(t *testing.T, apiURL string) *Handler {
	t.Setenv("TEST_JWT_SECRET", jwtSecret)
	return newTestHandler(t, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Sources: []CredentialSource{{Header: "Authorization"}}, Secret: "{env.TEST_JWT_SECRET}"})
		h.AccountID, h.APIToken, h.APIURL = "0123456789abcdef0123456789abcdef", "api-token", apiURL
		h.UploadPath = "/img/upload"
	})
}

func TestUploadIssuesPrivateURL(t *testing.T) {
	api, forms := directUploadAPI(t, false)
	h := uploadHandler(t, api.URL)
	bearer := map[string]string{"Authorization": "Bearer " + mint(t, "alice", time.Hour, nil, time.Now())}

	w, _ := serve(t, h, "POST", "/img/upload", bearer)
	if w.Code != 200 || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d headers %v", w.Code, w.Header())
	}
	var body struct{ ID, UploadURL string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.ID != "new-id" || body.UploadURL == "" {
		t.Fatalf("body %s (%v)", w.Body.String(), err)
	}
	f := forms()
	if len(f) != 1 || f[0]["requireSignedURLs"] != "true" || f[0]["metadata"] != `{"owner":"alice"}` || f[0]["creator"] != "alice" {
		t.Fatalf("direct upload form = %v", f)
	}
	if _, hasID := f[0]["id"]; hasID {
		t.Fatal("a custom id was sent: private images cannot have one")
	}

	for i, tc := range []struct {
		method string
		hdr    map[string]string
		want   int
	}{
		{"POST", nil, 401},
		{"POST", map[string]string{"Authorization": "Bearer forged"}, 401},
		{"GET", bearer, 405},
	} {
		if w, _ := serve(t, h, tc.method, "/img/upload", tc.hdr); w.Code != tc.want {
			t.Errorf("case %d: status %d, want %d", i, w.Code, tc.want)
		}
	}
	if len(forms()) != 1 {
		t.Fatal("a refused request reached the API")
	}
}

func TestUploadAPIFailure(t *testing.T) {
	api, _ := directUploadAPI(t, true)
	h := uploadHandler(t, api.URL)
	w, _, err := serveErr(t, h, "POST", "/img/upload", map[string]string{"Authorization": "Bearer " + mint(t, "alice", time.Hour, nil, time.Now())})
	if reason := refusalMessage(t, err, 502); strings.Contains(reason, "0123456789abcdef") || w.Body.Len() != 0 {
		t.Fatalf("reason %q body %q: want 502 without upstream details", reason, w.Body.String())
	}
}

func TestUploadNeedsIdentifiedCallers(t *testing.T) {
	h := &Handler{AccountHash: "acc", SigningKey: "k", Variants: []string{"public"}, UploadPath: "/up",
		SessionRaw: sessionJSON("none", NoSession{}), AccountID: "0123456789abcdef0123456789abcdef", APIToken: "t"}
	ctx, cancel := newContext(t)
	defer cancel()
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "upload_path") {
		t.Fatalf("Provision() = %v", err)
	}
	h = &Handler{AccountHash: "acc", SigningKey: "k", Variants: []string{"public"}, UploadOwnerField: "owner",
		SessionRaw: sessionJSON("none", NoSession{})}
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "upload_owner_field: has no effect without upload_path") {
		t.Fatalf("Provision() = %v", err)
	}
}

// verdictApp is an introspection application whose answer the session
// cookie chooses: alice is logged in, expired gets 401, denied 403 and
// broken 500.
func verdictApp(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("sessionid")
		switch {
		case err != nil || c.Value == "expired":
			w.WriteHeader(401)
		case c.Value == "alice":
			w.Header().Set("X-User-Id", "alice")
			w.WriteHeader(204)
		case c.Value == "denied":
			w.WriteHeader(403)
		default:
			w.WriteHeader(500)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// introspectUploadHandler is a gateway with `session introspect` against
// app, uploads on /img/upload against api, and extra lines.
func introspectUploadHandler(t *testing.T, app *httptest.Server, api *cfAPI, extra string) *Handler {
	t.Helper()
	h, err := caddyfileHandler(t, `
		account_hash AccHash_x1
		signing_key  `+testKey+`
		variants     public
		session introspect `+app.URL+` {
			cookie sessionid
		}
		upload_path /img/upload
		account_id `+testAccountID+`
		api_token api-token
		api_url `+api.srv.URL+`
		`+extra)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return h
}

// TestUploadAndImageAgree: the upload path and the image path ask the same
// gate, so one session verdict gives one status on both. An introspection
// 403 used to answer an upload with 503.
func TestUploadAndImageAgree(t *testing.T) {
	app := verdictApp(t)
	api := newCFAPI(t, nil)
	h := introspectUploadHandler(t, app, api, "")
	for _, tc := range []struct {
		cookie        string
		upload, image int
		retry         bool
	}{
		{"alice", 200, 302, false},
		{"", 401, 401, false},
		{"expired", 401, 401, false},
		{"denied", 403, 403, false},
		{"broken", 503, 503, true},
	} {
		hdr := map[string]string{}
		if tc.cookie != "" {
			hdr["Cookie"] = "sessionid=" + tc.cookie
		}
		up, _ := serve(t, h, "POST", "/img/upload", hdr)
		img, _ := serve(t, h, "GET", "/img/abc/public", hdr)
		if up.Code != tc.upload || img.Code != tc.image {
			t.Errorf("session %q: upload %d, image %d; want %d and %d", tc.cookie, up.Code, img.Code, tc.upload, tc.image)
		}
		if (img.Header().Get("Retry-After") != "") != tc.retry {
			t.Errorf("session %q: status %d with Retry-After %q", tc.cookie, img.Code, img.Header().Get("Retry-After"))
		}
		if tc.upload >= 400 {
			for _, hdr := range []string{"Retry-After", "WWW-Authenticate", "Cache-Control"} {
				if up.Header().Get(hdr) != img.Header().Get(hdr) {
					t.Errorf("session %q: %s %q on the upload, %q on the image", tc.cookie, hdr, up.Header().Get(hdr), img.Header().Get(hdr))
				}
			}
		}
	}
	if got := api.count("direct_upload"); got != 1 {
		t.Errorf("the API saw %d direct uploads, want 1 (alice's)", got)
	}
}

// TestUploadRefusalsCountedOnce: an upload refusal counts once in
// imagegate_upload_urls_total and once in imagegate_session_checks_total,
// and never as an image request of the "other" variant.
func TestUploadRefusalsCountedOnce(t *testing.T) {
	app := verdictApp(t)
	api := newCFAPI(t, nil)
	h := introspectUploadHandler(t, app, api, "upload_limit 1 1h")
	for _, tc := range []struct {
		method, cookie string
		status         int
		result         string // imagegate_upload_urls_total
		check          string // imagegate_session_checks_total, "" for none
	}{
		{"POST", "alice", 200, "issued", "allowed"},
		{"POST", "alice", 429, "limited", "allowed"},
		{"POST", "", 401, "unauthenticated", "unauthenticated"},
		{"POST", "expired", 401, "unauthenticated", "unauthenticated"},
		{"POST", "denied", 403, "forbidden", "forbidden"},
		{"POST", "broken", 503, "unavailable", "unavailable"},
		{"GET", "alice", 405, "method_not_allowed", ""},
	} {
		uploads := snapshot(func(l string) prometheus.Counter { return metrics.uploadURLs.WithLabelValues(l) },
			"issued", "unauthenticated", "forbidden", "unavailable", "limited", "upstream_error", "method_not_allowed")
		checks := snapshot(func(l string) prometheus.Counter { return metrics.sessionChecks.WithLabelValues("introspect", l) },
			"allowed", "unauthenticated", "forbidden", "unavailable", "limited")
		other := otherRequests(t)
		hdr := map[string]string{}
		if tc.cookie != "" {
			hdr["Cookie"] = "sessionid=" + tc.cookie
		}
		if w, _ := serve(t, h, tc.method, "/img/upload", hdr); w.Code != tc.status {
			t.Fatalf("%s as %q: status %d, want %d", tc.method, tc.cookie, w.Code, tc.status)
		}
		name := tc.method + " as " + tc.cookie
		uploads.expect(t, name+": imagegate_upload_urls_total", tc.result)
		checks.expect(t, name+": imagegate_session_checks_total{method=introspect}", tc.check)
		if got := otherRequests(t); got != other {
			t.Errorf("%s: imagegate_requests_total{variant=other} grew by %v", name, got-other)
		}
	}
}

// otherRequests sums imagegate_requests_total{variant="other"} over every
// outcome.
func otherRequests(t *testing.T) float64 {
	var sum float64
	for _, mf := range gather(t) {
		if mf.GetName() != "imagegate_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "variant" && l.GetValue() == otherVariant {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// counterSet remembers some counters' values, to check what one request
// added.
type counterSet struct {
	get    func(label string) prometheus.Counter
	before map[string]float64
}

// snapshot reads the counter get returns for each label.
func snapshot(get func(label string) prometheus.Counter, labels ...string) *counterSet {
	s := &counterSet{get: get, before: map[string]float64{}}
	for _, l := range labels {
		s.before[l] = testutil.ToFloat64(get(l))
	}
	return s
}

// expect checks that the counter of label grew by one and every other by
// nothing; label "" expects no growth at all.
func (s *counterSet) expect(t *testing.T, what, label string) {
	t.Helper()
	for l, v := range s.before {
		want := 0.0
		if l == label {
			want = 1
		}
		if got := testutil.ToFloat64(s.get(l)) - v; got != want {
			t.Errorf("%s{%s} grew by %v, want %v", what, l, got, want)
		}
	}
}
