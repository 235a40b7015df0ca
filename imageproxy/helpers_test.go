package imageproxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a stand-in for Cloudflare's delivery on 127.0.0.1 that
// counts fetches and records the request headers it saw.
type upstream struct {
	*httptest.Server
	fetches atomic.Int64
	mu      sync.Mutex
	seen    []http.Header
}

func newUpstream(t testing.TB, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.fetches.Add(1)
		u.mu.Lock()
		u.seen = append(u.seen, r.Header.Clone())
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

// url returns a signed-looking delivery URL for path.
func (u *upstream) url(path string) string {
	return u.URL + path + "?exp=1700000000&sig=6a3f0c1d2e5b"
}

func (u *upstream) headers() []http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]http.Header(nil), u.seen...)
}

// image is a deterministic test body of n bytes.
func image(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// serveBody answers with body, its Content-Length and the given headers.
func serveBody(body []byte, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Write(body)
	}
}

// serveChunked answers with body in chunks, without Content-Length.
func serveChunked(body []byte, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		for chunk := range slices.Chunk(body, 16<<10) {
			w.Write(chunk)
			w.(http.Flusher).Flush()
		}
	}
}

// observer records the proxy's metrics events.
type observer struct {
	hits, misses atomic.Int64
	sent         atomic.Int64
	mu           sync.Mutex
	hitTiers     []string
	fetched      chan int // statuses, in order
	missed       chan struct{}
}

func newObserver() *observer {
	return &observer{fetched: make(chan int, 1000), missed: make(chan struct{}, 1000)}
}

func (o *observer) CacheHit(tier string) {
	o.hits.Add(1)
	o.mu.Lock()
	o.hitTiers = append(o.hitTiers, tier)
	o.mu.Unlock()
}
func (o *observer) CacheMiss() {
	o.misses.Add(1)
	select { // never block the proxy: tests that wait read these promptly
	case o.missed <- struct{}{}:
	default:
	}
}
func (o *observer) Fetched(_ Key, status int, _ time.Duration) {
	select {
	case o.fetched <- status:
	default:
	}
}
func (o *observer) Sent(n int64) { o.sent.Add(n) }

// waitMisses waits until n more misses were reported.
func (o *observer) waitMisses(t testing.TB, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for range n {
		select {
		case <-o.missed:
		case <-timeout:
			t.Fatalf("timed out waiting for %d misses", n)
		}
	}
}

// waitFetched waits for the next finished fetch and returns its status.
func (o *observer) waitFetched(t testing.TB) int {
	t.Helper()
	select {
	case s := <-o.fetched:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a fetch to finish")
		return 0
	}
}

func newProxy(t testing.TB, cfg Config) *Proxy {
	t.Helper()
	if cfg.UserAgent == "" {
		cfg.UserAgent = "imagegate/test"
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// front is the caller's side, as the Caddy handler does it: it sets
// Cache-Control and Vary, maps /img/<id>/<variant> to a key and an
// upstream URL, and turns an *UpstreamError into a no-store answer.
func front(t testing.TB, p *Proxy, up *upstream) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, variant, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/img/"), "/")
		k := Key{AccountHash: "acc", ID: id, Variant: variant, Format: BucketOf(r.Header.Get("Accept"))}
		w.Header().Set("Cache-Control", "private, max-age=60")
		w.Header().Set("Vary", "Accept")
		err := p.Serve(w, r, k, up.url("/acc/"+id+"/"+variant))
		var ue *UpstreamError
		switch {
		case errors.As(err, &ue):
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, http.StatusText(ue.Status), ue.Status)
		case err != nil:
			panic(http.ErrAbortHandler)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// get sends a request to the front and returns the response with its
// body read.
func get(t testing.TB, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// recorder is a ResponseWriter that records whether anything was written,
// and can report its first body write.
type recorder struct {
	h           http.Header
	mu          sync.Mutex
	status      int
	body        []byte
	wroteHeader bool
	firstWrite  chan struct{}
	once        sync.Once
}

func newRecorder() *recorder {
	return &recorder{h: http.Header{}, firstWrite: make(chan struct{})}
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) WriteHeader(s int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.wroteHeader {
		r.status, r.wroteHeader = s, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	r.mu.Lock()
	r.body = append(r.body, b...)
	r.mu.Unlock()
	r.once.Do(func() { close(r.firstWrite) })
	return len(b), nil
}
func (r *recorder) Flush() {}

func (r *recorder) result() (int, []byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, append([]byte(nil), r.body...), r.wroteHeader
}

// request makes a server-side request for Serve.
func request(ctx context.Context, method string, header map[string]string) *http.Request {
	r := httptest.NewRequestWithContext(ctx, method, "/img/id/public", nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	return r
}

var testKey = Key{AccountHash: "acc", ID: "id", Variant: "public", Format: FormatAVIF}

// checkSafetyHeaders fails t unless resp carries the headers that keep a
// browser from sniffing or running what the gateway serves.
func checkSafetyHeaders(t testing.TB, resp *http.Response) {
	t.Helper()
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%d answer: X-Content-Type-Options %q, want nosniff", resp.StatusCode, got)
	}
	if got, want := resp.Header.Get("Content-Security-Policy"), "default-src 'none'; style-src 'unsafe-inline'; sandbox"; got != want {
		t.Errorf("%d answer: Content-Security-Policy %q, want %q", resp.StatusCode, got, want)
	}
}
