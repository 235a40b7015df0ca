package emulator_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/images"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// origin is an image server on 127.0.0.1 that counts its requests.
type origin struct {
	*httptest.Server
	hits atomic.Int64
}

func newOrigin(t *testing.T, h http.HandlerFunc) *origin {
	t.Helper()
	o := &origin{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// The official SDK's upload from a URL: the emulator fetches the image,
// takes its filename from the URL, and applies metadata and
// requireSignedURLs as for a file.
func TestSDKUploadFromURL(t *testing.T) {
	png := pngBytes(t, 40, 30)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/photos/cat.png" {
			http.NotFound(w, r)
			return
		}
		w.Write(png)
	})
	env := newEnv(t, nil)
	img, err := env.api.V1.New(context.Background(), images.V1NewParams{
		AccountID:         acct,
		URL:               cloudflare.F(o.URL + "/photos/cat.png"),
		Metadata:          cloudflare.F[any](map[string]any{"owner": "u1"}),
		RequireSignedURLs: cloudflare.F(true),
	})
	if err != nil {
		t.Fatalf("upload from URL: %v", err)
	}
	if img.Filename != "cat.png" || !img.RequireSignedURLs || env.storedMeta(t, img.ID)["owner"] != "u1" {
		t.Fatalf("image %+v", img)
	}
	blob, err := env.api.V1.Blobs.Get(context.Background(), img.ID, images.V1BlobGetParams{AccountID: acct})
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Body.Close()
	var got bytes.Buffer
	got.ReadFrom(blob.Body)
	if !bytes.Equal(got.Bytes(), png) {
		t.Fatalf("stored %d bytes, not the origin's %d", got.Len(), len(png))
	}
}

// The fetch is bounded (size, redirects, time), refuses what is not
// http(s) without fetching, and the fetched bytes pass the same checks as
// a file. No answer repeats the URL.
func TestUploadFromURLBounds(t *testing.T) {
	png := pngBytes(t, 20, 20)
	big := bytes.Repeat([]byte{0}, emulator.MaxFileBytes+1)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/ok.png":
			w.Write(png)
		case p == "/big-declared":
			w.Write(big)
		case p == "/big-chunked":
			w.Header().Set("Transfer-Encoding", "chunked")
			for i := 0; i < len(big); i += 1 << 20 {
				w.Write(big[i:min(len(big), i+1<<20)])
				w.(http.Flusher).Flush()
			}
		case p == "/text":
			w.Write([]byte("hello, world"))
		case p == "/stall.jpg":
			w.Write(progressiveJPEG(6000, 6000, 400))
		case p == "/missing":
			http.NotFound(w, r)
		case p == "/hang":
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
		case strings.HasPrefix(p, "/hop/"): // /hop/<n> redirects n times, then to /ok.png
			n := int(p[len(p)-1] - '0')
			next := "/ok.png"
			if n > 1 {
				next = "/hop/" + string(rune('0'+n-1))
			}
			http.Redirect(w, r, next, http.StatusFound)
		case p == "/to-ftp":
			http.Redirect(w, r, "ftp://127.0.0.1/a.png", http.StatusFound)
		}
	})
	env := newEnv(t, func(c *emulator.Config) { c.URLFetchTimeout = 2 * time.Second })
	upload := func(u string) (*http.Response, []byte) {
		return env.postV1(t, map[string]string{"url": u}, nil)
	}

	for _, u := range []string{
		"ftp://" + o.Listener.Addr().String() + "/ok.png",
		"file:///etc/passwd",
		"javascript:alert(1)",
		"/ok.png",
		"//" + o.Listener.Addr().String() + "/ok.png",
		"http://user:pw@" + o.Listener.Addr().String() + "/ok.png",
		"http:///ok.png",
	} {
		resp, b := upload(u)
		wantAPIError(t, resp, b, http.StatusBadRequest, 5400)
	}
	if n := o.hits.Load(); n != 0 {
		t.Fatalf("refused URLs were fetched %d times", n)
	}

	for _, tc := range []struct {
		path         string
		status, code int
	}{
		{"/big-declared", 413, 5413},
		{"/big-chunked", 413, 5413},
		{"/text", 415, 5455},
		{"/stall.jpg", 413, 5413},
		{"/missing", 400, 5400},
		{"/hop/4", 400, 5400}, // one redirect too many
		{"/to-ftp", 400, 5400},
	} {
		resp, b := upload(o.URL + tc.path)
		wantAPIError(t, resp, b, tc.status, tc.code)
		if strings.Contains(string(b), o.Listener.Addr().String()) {
			t.Errorf("%s: the answer repeats the URL: %s", tc.path, b)
		}
	}
	if resp, b := upload(o.URL + "/hop/3"); resp.StatusCode != 200 {
		t.Errorf("three redirects: %d %s, want 200", resp.StatusCode, b)
	}

	// A stalled origin costs URLFetchTimeout, then 5400; the bound here
	// only catches a fetch without a deadline.
	began := time.Now()
	resp, b := upload(o.URL + "/hang")
	wantAPIError(t, resp, b, http.StatusBadRequest, 5400)
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("a hanging origin held the upload %v", took)
	}
}
