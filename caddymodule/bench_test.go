package caddymodule

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/session"
)

// discardWriter is the cheapest possible http.ResponseWriter: it reuses one
// header map, so the benchmark counts the handler's allocations, not the
// recorder's.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// ReadFrom lets io.Copy skip its 32 KB buffer, as net/http's own
// ResponseWriter (and Caddy's wrapper of it) does when a body is copied in.
func (w *discardWriter) ReadFrom(r io.Reader) (int64, error) { return io.Copy(io.Discard, r) }

// benchHandler is newTestHandler provisioned where nothing is logged, so
// that benchmark output is only results.
func benchHandler(b *testing.B, edit func(*Handler)) *Handler {
	return provisionTestHandler(b, quietContext(b), edit)
}

func benchServe(b *testing.B, accept string) {
	benchServeWith(b, benchHandler(b, nil), map[string]string{"Accept": accept})
}

// BenchmarkServeHTTPHit is the whole hot path for a browser: parse,
// validate, cached URL, headers, 302.
func BenchmarkServeHTTPHit(b *testing.B) { benchServe(b, "image/avif,image/webp,*/*") }

// BenchmarkServeHTTPHitJSON is the same for a client asking for JSON.
func BenchmarkServeHTTPHitJSON(b *testing.B) { benchServe(b, "application/json") }

// benchServeWith measures ServeHTTP for a request that hits every cache.
func benchServeWith(b *testing.B, h *Handler, hdr map[string]string) {
	// Caddy's default log level is INFO, at which the per-request debug
	// line is skipped; the test context logs at DEBUG.
	h.logger = zap.NewNop()
	r := httptest.NewRequest("GET", "/img/2cdc28f0-017a-49c4-9ed7-87056c83901f/thumbnail", nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	caddyhttp.NewTestReplacer(r)
	w := &discardWriter{h: make(http.Header, 8)}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	_ = h.ServeHTTP(w, r, next) // fill the caches
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		if err := h.ServeHTTP(w, r, next); err != nil || w.code/100 > 3 {
			b.Fatalf("status %d, err %v", w.code, err)
		}
	}
}

// BenchmarkServeHTTPHitJWT: a browser with an HS256 session cookie whose
// verification is cached.
func BenchmarkServeHTTPHitJWT(b *testing.B) {
	b.Setenv("TEST_JWT_SECRET", jwtSecret)
	h := benchHandler(b, func(h *Handler) {
		h.SessionRaw = sessionJSON("jwt", &JWTSession{Sources: []CredentialSource{{Cookie: "session"}}, Secret: "{env.TEST_JWT_SECRET}"})
	})
	tok, _ := session.MintHS256([]byte(jwtSecret), "alice", time.Hour, nil, time.Now())
	benchServeWith(b, h, map[string]string{"Cookie": "session=" + tok})
}

// BenchmarkServeHTTPHitIntrospect: an opaque session whose decision is
// cached.
func BenchmarkServeHTTPHitIntrospect(b *testing.B) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-User-Id", "alice")
	}))
	defer app.Close()
	h := benchHandler(b, func(h *Handler) {
		h.SessionRaw = sessionJSON("introspect", &IntrospectSession{URL: app.URL, Sources: []CredentialSource{{Cookie: "sessionid"}}})
	})
	benchServeWith(b, h, map[string]string{"Cookie": "sessionid=abc123"})
}

// BenchmarkServeHTTPProxyHit is proxy mode's hot path for a 30 KB image in
// the memory tier, with session none: parse, URL cache, byte cache,
// http.ServeContent. Compare with BenchmarkServeHTTPHit for the cost of
// serving bytes instead of a 302, and add a session benchmark's difference
// for a session.
func BenchmarkServeHTTPProxyHit(b *testing.B) {
	body := make([]byte, 30<<10)
	for i := range body {
		body[i] = byte(i)
	}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		_, _ = w.Write(body)
	}))
	b.Cleanup(upstream.Close)
	h := benchHandler(b, func(h *Handler) {
		h.Mode = "proxy"
		h.DeliveryURL = upstream.URL
	})
	benchServeWith(b, h, map[string]string{"Accept": "image/avif,image/webp,*/*"})
}
