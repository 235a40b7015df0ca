package cfapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

const token = "secret-api-token"

// stub answers like the Images API for whatever handler the test gives it,
// after checking the token.
func stub(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.WriteHeader(http.StatusForbidden)
			_, _ = io.WriteString(w, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`)
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return &Client{BaseURL: srv.URL + "/client/v4/", AccountID: "acc 1", APIToken: token}
}

func TestImage(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		wantErr  bool
		notFound bool
		notAPI   bool
	}{
		{"ok", 200, `{"success":true,"errors":[],"messages":[],"result":{"id":"a/b c","filename":"cat.png","meta":{"owner":"alice","n":1},"requireSignedURLs":true,"draft":true,"creator":"u1","uploaded":"2022-04-20T09:51:09.559Z","variants":["https://imagedelivery.net/h/a/public"]}}`, false, false, false},
		{"404", 404, `{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`, true, true, false},
		{"5404 with 200", 200, `{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`, true, true, false},
		{"404 in an envelope without errors", 404, `{"success":false,"errors":[],"messages":[],"result":null}`, true, true, false},
		{"404 without body", 404, ``, true, false, true},
		{"404 html", 404, `<html>404 page not found</html>`, true, false, true},
		{"404 other json", 404, `{"error":"not found"}`, true, false, true},
		{"404 success of the wrong type", 404, `{"success":"no"}`, true, false, true},
		{"500", 500, `{"success":false,"errors":[{"code":5500,"message":"boom"}],"messages":[],"result":null}`, true, false, false},
		{"502 html", 502, `<html>bad gateway</html>`, true, false, false},
		{"200 not json", 200, `<html>`, true, false, true},
		{"200 other json", 200, `{"id":"a/b c"}`, true, false, true},
		{"200 success false", 200, `{"success":false,"errors":[],"result":null}`, true, false, false},
		{"result of the wrong shape", 200, `{"success":true,"result":[1,2]}`, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := stub(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method != http.MethodGet || r.URL.EscapedPath() != "/client/v4/accounts/acc%201/images/v1/a%2Fb%20c" {
					t.Errorf("request %s %s", r.Method, r.URL.EscapedPath())
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			img, err := c.Image(context.Background(), "a/b c")
			if tc.wantErr != (err != nil) || errors.Is(err, ErrNotFound) != tc.notFound || errors.Is(err, ErrNotAPI) != tc.notAPI {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				if strings.Contains(err.Error(), token) {
					t.Fatalf("error leaks the token: %v", err)
				}
				return
			}
			want := Image{ID: "a/b c", Filename: "cat.png", RequireSignedURLs: true, Draft: true, Creator: "u1", Uploaded: time.Date(2022, 4, 20, 9, 51, 9, 559e6, time.UTC)}
			if img.ID != want.ID || img.Filename != want.Filename || img.RequireSignedURLs != want.RequireSignedURLs ||
				img.Draft != want.Draft || img.Creator != want.Creator || !img.Uploaded.Equal(want.Uploaded) ||
				img.Meta["owner"] != "alice" || img.Meta["n"] != 1.0 {
				t.Fatalf("image = %+v", img)
			}
		})
	}
}

func TestImageErrors(t *testing.T) {
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {})
	bad := &Client{BaseURL: c.BaseURL, AccountID: c.AccountID, APIToken: "wrong-token"}
	_, err := bad.Image(context.Background(), "x")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 403 || apiErr.Errors[0].Code != 10000 || strings.Contains(err.Error(), "wrong-token") {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := c.Image(context.Background(), ""); err == nil {
		t.Fatal("empty id: no error")
	}
	if _, err := (&Client{AccountID: "a"}).Image(context.Background(), "x"); err == nil {
		t.Fatal("no token: no error")
	}
	// Nothing listens: a transport error that must not carry the token.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	down := &Client{BaseURL: "http://" + addr, AccountID: "a", APIToken: token}
	if _, err := down.Image(context.Background(), "x"); err == nil || errors.Is(err, ErrNotFound) || strings.Contains(err.Error(), token) {
		t.Fatalf("down: %v", err)
	}
}

func TestDirectUpload(t *testing.T) {
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/client/v4/accounts/acc 1/images/v2/direct_upload" {
			t.Errorf("request %s %s", r.Method, r.URL.Path)
		}
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			t.Errorf("not multipart: %v", err)
		}
		want := map[string]string{
			"requireSignedURLs": "true",
			"metadata":          `{"owner":"alice"}`,
			"expiry":            "2030-01-02T02:04:05Z",
			"creator":           "alice",
		}
		for k, v := range want {
			if got := r.FormValue(k); got != v {
				t.Errorf("field %s = %q, want %q", k, got, v)
			}
		}
		if _, ok := r.MultipartForm.Value["id"]; ok {
			t.Errorf("custom id sent")
		}
		_, _ = io.WriteString(w, `{"result":{"id":"2cdc28f0-017a-49c4-9ed7-87056c83901","uploadURL":"https://upload.imagedelivery.net/h/2cdc28f0"},"result_info":null,"success":true,"errors":[],"messages":[]}`)
	})
	id, u, err := c.DirectUpload(context.Background(), DirectUploadRequest{Metadata: map[string]any{"owner": "alice"}, Expiry: expiry, Creator: "alice"})
	if err != nil || id != "2cdc28f0-017a-49c4-9ed7-87056c83901" || u != "https://upload.imagedelivery.net/h/2cdc28f0" {
		t.Fatalf("got %q %q %v", id, u, err)
	}
}

func TestDirectUploadMinimal(t *testing.T) {
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseMultipartForm(1 << 20)
		if r.FormValue("requireSignedURLs") != "true" {
			t.Errorf("requireSignedURLs = %q", r.FormValue("requireSignedURLs"))
		}
		for _, k := range []string{"metadata", "expiry", "creator", "id"} {
			if _, ok := r.MultipartForm.Value[k]; ok {
				t.Errorf("unexpected field %s", k)
			}
		}
		_, _ = io.WriteString(w, `{"result":{"id":"x","uploadURL":"https://u/x"},"success":true,"errors":[],"messages":[]}`)
	})
	if _, _, err := c.DirectUpload(context.Background(), DirectUploadRequest{}); err != nil {
		t.Fatal(err)
	}
}

func TestDirectUploadErrors(t *testing.T) {
	calls := 0
	c := stub(t, func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(400)
		_, _ = io.WriteString(w, `{"success":false,"errors":[{"code":5400,"message":"Bad request: expiry out of range"}],"messages":[],"result":null}`)
	})
	big := map[string]any{"owner": strings.Repeat("a", 1100)}
	if _, _, err := c.DirectUpload(context.Background(), DirectUploadRequest{Metadata: big}); err == nil || calls != 0 {
		t.Fatalf("oversized metadata: err=%v calls=%d", err, calls)
	}
	_, _, err := c.DirectUpload(context.Background(), DirectUploadRequest{Creator: "a"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Errors[0].Code != 5400 || strings.Contains(err.Error(), token) {
		t.Fatalf("400: %v", err)
	}
	empty := stub(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"result":{},"success":true}`)
	})
	if _, _, err := empty.DirectUpload(context.Background(), DirectUploadRequest{}); err == nil {
		t.Fatal("empty result: no error")
	}
}

func TestDefaultBaseURL(t *testing.T) {
	// Only the URL is checked; the request never leaves the process.
	c := &Client{AccountID: "acc", APIToken: token}
	req, err := c.newRequest(context.Background(), http.MethodGet, "images/v1/x", nil)
	if err != nil || req.URL.String() != "https://api.cloudflare.com/client/v4/accounts/acc/images/v1/x" {
		t.Fatalf("%v %v", req.URL, err)
	}
}
