package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

func benchServe(b *testing.B, accept string) {
	h := newTestHandler(b, nil)
	// Caddy's default log level is INFO, at which the per-request debug
	// line is skipped; the test context logs at DEBUG.
	h.logger = zap.NewNop()
	r := httptest.NewRequest("GET", "/img/2cdc28f0-017a-49c4-9ed7-87056c83901f/thumbnail", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	caddyhttp.NewTestReplacer(r)
	w := &discardWriter{h: make(http.Header, 8)}
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	_ = h.ServeHTTP(w, r, next) // fill the cache
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		if err := h.ServeHTTP(w, r, next); err != nil || w.code/100 > 3 {
			b.Fatalf("status %d, err %v", w.code, err)
		}
	}
}

// BenchmarkServeHTTPHit is the whole hot path for a browser: parse,
// validate, cached URL, headers, 302.
func BenchmarkServeHTTPHit(b *testing.B) { benchServe(b, "image/avif,image/webp,*/*") }

// BenchmarkServeHTTPHitJSON is the same for a client asking for JSON.
func BenchmarkServeHTTPHitJSON(b *testing.B) { benchServe(b, "application/json") }
