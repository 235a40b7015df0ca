package imageproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestUpstreamFaults(t *testing.T) {
	// A port with nothing listening: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + l.Addr().String() + "/acc/id/public?exp=1700000000&sig=6a3f0c1d2e5b"
	l.Close()

	status := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Set-Cookie", "cf=1")
			w.Header().Set("Location", "https://elsewhere.example/")
			http.Error(w, "upstream says: secret detail", code)
		}
	}
	tests := []struct {
		name     string
		handler  http.HandlerFunc // nil: connection refused
		status   int
		upstream int
		sigRef   bool
	}{
		{"404", status(404), 404, 404, false},
		{"403", status(403), 502, 403, true},
		{"500", status(500), 502, 500, false},
		{"302", status(302), 502, 302, false},
		{"refused", nil, 502, 0, false},
		// Only image types are served, and a type is never sniffed.
		{"200 text/html", serveBody([]byte("<script>alert(1)</script>"), map[string]string{"Content-Type": "text/html"}), 502, 200, false},
		{"200 without a type", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil // net/http would sniff one
			w.Write([]byte("<html><script>alert(1)</script>"))
		}, 502, 200, false},
		{"200 image-ish", serveBody(image(10), map[string]string{"Content-Type": "image/"}), 502, 200, false},
		{"timeout", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, 504, 0, false},
		{"timeout mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}, 504, 0, false},
		{"cut mid-body", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/png")
			w.Header().Set("Content-Length", "1000")
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}, 502, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rawURL := refused
			var up *upstream
			if tt.handler != nil {
				up = newUpstream(t, tt.handler)
				rawURL = up.url("/acc/id/public")
			}
			mem := NewMemory(1<<20, nil)
			obs := newObserver()
			p := newProxy(t, Config{Tiers: []Tier{mem}, Observer: obs, Timeout: 200 * time.Millisecond})
			for i := range 2 {
				// A Range request waits for the whole body, so a failure
				// mid-body still finds nothing written.
				rec := newRecorder()
				rec.h.Set("Cache-Control", "private, max-age=60")
				err := p.Serve(rec, request(context.Background(), "GET", map[string]string{"Range": "bytes=0-"}), testKey, rawURL)
				var ue *UpstreamError
				if !errors.As(err, &ue) {
					t.Fatalf("request %d: error %v, want an *UpstreamError", i, err)
				}
				if ue.Status != tt.status || ue.Upstream != tt.upstream || ue.SignatureRefused != tt.sigRef {
					t.Errorf("got %+v, want Status %d, Upstream %d, SignatureRefused %v", ue, tt.status, tt.upstream, tt.sigRef)
				}
				msg := err.Error()
				for _, secret := range []string{rawURL, "sig=", "6a3f0c1d2e5b", "exp=", "secret detail"} {
					if strings.Contains(msg, secret) {
						t.Errorf("error %q contains %q", msg, secret)
					}
				}
				if _, body, wrote := rec.result(); wrote || len(body) > 0 || len(rec.h) != 1 {
					t.Errorf("Serve wrote to w before failing: wrote %v, %d bytes, headers %v", wrote, len(body), rec.h)
				}
				if s := obs.waitFetched(t); s != tt.upstream {
					t.Errorf("Fetched status %d, want %d", s, tt.upstream)
				}
			}
			if mem.Len() != 0 {
				t.Error("a failure was cached")
			}
			if up != nil && up.fetches.Load() != 2 {
				t.Errorf("%d fetches, want 2: failures must not be cached", up.fetches.Load())
			}
		})
	}
}

func TestUpstreamCutAfterBytesSent(t *testing.T) {
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Header().Set("Content-Length", "100000")
		w.Write(make([]byte, 5000))
		w.(http.Flusher).Flush()
		<-release
		panic(http.ErrAbortHandler)
	})
	mem := NewMemory(1<<20, nil)
	obs := newObserver()
	p := newProxy(t, Config{Tiers: []Tier{mem}, Observer: obs})
	leader, joined := newRecorder(), newRecorder()
	errs := make(chan error, 2)
	go func() {
		errs <- p.Serve(leader, request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public"))
	}()
	<-leader.firstWrite
	go func() {
		errs <- p.Serve(joined, request(context.Background(), "GET", map[string]string{"Range": "bytes=0-9"}), testKey, up.url("/acc/id/public"))
	}()
	obs.waitMisses(t, 2)
	close(release)
	var aborted, upstreamErr int
	for range 2 {
		err := <-errs
		var ue *UpstreamError
		switch {
		case errors.As(err, &ue) && ue.Status == 502:
			upstreamErr++
		case errors.Is(err, http.ErrAbortHandler):
			aborted++
		default:
			t.Errorf("unexpected result %v", err)
		}
	}
	if aborted != 1 || upstreamErr != 1 {
		t.Errorf("%d aborted, %d upstream errors; want the streaming leader aborted and the waiter told 502", aborted, upstreamErr)
	}
	if _, _, wrote := joined.result(); wrote {
		t.Error("the waiting request wrote a response")
	}
	if mem.Len() != 0 || up.fetches.Load() != 1 {
		t.Errorf("memory Len %d, fetches %d; want 0, 1", mem.Len(), up.fetches.Load())
	}
}

func TestClientGoneMidBodyStillFillsCache(t *testing.T) {
	body := image(256 << 10)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/avif")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body[:64<<10])
		w.(http.Flusher).Flush()
		<-release
		w.Write(body[64<<10:])
	})
	mem := NewMemory(1<<20, nil)
	obs := newObserver()
	p := newProxy(t, Config{Tiers: []Tier{mem}, Observer: obs})

	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- p.Serve(rec, request(ctx, "GET", nil), testKey, up.url("/acc/id/public")) }()
	<-rec.firstWrite
	cancel()
	if err := <-done; !errors.Is(err, http.ErrAbortHandler) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve after the client left: %v, want an abort", err)
	}
	close(release)
	if s := obs.waitFetched(t); s != 200 {
		t.Fatalf("fetch finished with %d", s)
	}
	rec = newRecorder()
	if err := p.Serve(rec, request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public")); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := rec.result(); !bytes.Equal(got, body) {
		t.Error("wrong body from the cache")
	}
	if n := up.fetches.Load(); n != 1 {
		t.Errorf("%d fetches, want 1: the departed client's fetch should have filled the cache", n)
	}
}

func TestScrubRemovesTheURL(t *testing.T) {
	const raw = "https://imagedelivery.net/acc/id/public?exp=1700000000&sig=6a3f0c1d2e5b"
	cause := errors.New("connection reset by peer")
	tests := []struct {
		name string
		err  error
		want error // nil: errHidden
	}{
		{"url.Error", &url.Error{Op: "Get", URL: raw, Err: cause}, cause},
		{"wrapped url.Error", fmt.Errorf("fetch: %w", &url.Error{Op: "Get", URL: raw, Err: cause}), cause},
		{"URL in the text", errors.New("bad response from " + raw), nil},
		{"query in the text", errors.New("parse exp=1700000000&sig=6a3f0c1d2e5b"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := scrub(tt.err, raw)
			if tt.want == nil && got != errHidden || tt.want != nil && got != tt.want {
				t.Errorf("scrub = %v, want %v", got, tt.want)
			}
			if strings.Contains(got.Error(), "sig=") {
				t.Errorf("scrub left the signature in %q", got)
			}
		})
	}
}
