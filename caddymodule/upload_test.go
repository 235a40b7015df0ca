package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// directUploadAPI records the form of each direct-upload call.
func directUploadAPI(t *testing.T, fail bool) (*httptest.Server, func() []map[string]string) {
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
	w, _ := serve(t, h, "POST", "/img/upload", map[string]string{"Authorization": "Bearer " + mint(t, "alice", time.Hour, nil, time.Now())})
	if w.Code != 502 || strings.Contains(w.Body.String(), "0123456789abcdef") {
		t.Fatalf("status %d body %q: want 502 without upstream details", w.Code, w.Body.String())
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
