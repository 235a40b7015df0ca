package imageproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// discardWriter is a ResponseWriter that keeps nothing, cheaper than
// httptest.ResponseRecorder. Like net/http's own writer it implements
// io.ReaderFrom with a pooled buffer (io.Discard's).
type discardWriter struct {
	h      http.Header
	status int
	n      int64
}

func (d *discardWriter) Header() http.Header { return d.h }
func (d *discardWriter) WriteHeader(s int)   { d.status = s }
func (d *discardWriter) Write(b []byte) (int, error) {
	d.n += int64(len(b))
	return len(b), nil
}
func (d *discardWriter) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Discard.(io.ReaderFrom).ReadFrom(r)
	d.n += n
	return n, err
}

// BenchmarkServeHit serves a 30 KB object from the memory tier.
func BenchmarkServeHit(b *testing.B) {
	mem := NewMemory(1<<20, nil)
	obj := &Object{Body: image(30 << 10), ContentType: "image/avif", ETag: `"0123456789abcdef0123456789abcdef"`, LastModified: time.Unix(1700000000, 0)}
	mem.Set(context.Background(), testKey, obj, time.Hour)
	p, err := New(Config{Tiers: []Tier{mem}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	r := httptest.NewRequest("GET", "/img/id/public", nil)
	w := &discardWriter{h: make(http.Header, 8)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.n = 0
		if err := p.Serve(w, r, testKey, "http://127.0.0.1:1/never?sig=00"); err != nil || w.n != int64(len(obj.Body)) {
			b.Fatalf("err %v, %d bytes", err, w.n)
		}
	}
}
