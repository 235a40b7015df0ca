package imageproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const lastModified = "Tue, 14 Nov 2023 22:13:20 GMT"

func TestServeExactBytes(t *testing.T) {
	body := image(100 << 10)
	header := map[string]string{"Content-Type": "image/avif", "Etag": `"cf-1"`, "Last-Modified": lastModified}
	for _, tt := range []struct {
		name    string
		handler http.HandlerFunc
		// chunked: a miss streamed as it arrives has no Content-Length
		// (one that found the body complete already has it).
		chunked bool
	}{
		{"Content-Length", serveBody(body, header), false},
		{"chunked", serveChunked(body, header), true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.handler)
			obs := newObserver()
			fr := front(t, newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, Observer: obs}), up)
			for i, state := range []string{"miss", "hit"} {
				resp, got := get(t, "GET", fr.URL+"/img/id/public", map[string]string{"Accept": "image/avif"})
				if resp.StatusCode != 200 || !bytes.Equal(got, body) {
					t.Fatalf("%s: status %d, %d bytes, equal %v", state, resp.StatusCode, len(got), bytes.Equal(got, body))
				}
				h := resp.Header
				length := h.Get("Content-Length")
				if tt.chunked && state == "miss" && length == "" {
					length = strconv.Itoa(len(body))
				}
				if h.Get("Content-Type") != "image/avif" || h.Get("Etag") != `"cf-1"` || h.Get("Last-Modified") != lastModified ||
					length != strconv.Itoa(len(body)) {
					t.Errorf("%s: headers %v", state, h)
				}
				if h.Get("Cache-Control") != "private, max-age=60" || h.Get("Vary") != "Accept" {
					t.Errorf("%s: the caller's Cache-Control or Vary was overwritten: %v", state, h)
				}
				checkSafetyHeaders(t, resp)
				if n := up.fetches.Load(); n != 1 {
					t.Errorf("after request %d: %d fetches, want 1", i+1, n)
				}
			}
			fr.Close() // waits for the handlers, which report Sent after the client has the body
			if obs.hits.Load() != 1 || obs.misses.Load() != 1 || obs.sent.Load() != int64(2*len(body)) {
				t.Errorf("observer: %d hits, %d misses, %d bytes sent", obs.hits.Load(), obs.misses.Load(), obs.sent.Load())
			}
		})
	}
}

func TestServeConditionalRangeHead(t *testing.T) {
	body := image(50 << 10)
	// A weak upstream ETag is replaced by a hash of the body.
	up := newUpstream(t, serveBody(body, map[string]string{"Content-Type": "image/webp", "Etag": `W/"weak"`}))
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	mem := NewMemory(1<<20, nil)
	p := newProxy(t, Config{Tiers: []Tier{mem}})
	fr := front(t, p, up)
	url := fr.URL + "/img/id/public"

	// Each case runs twice: first on a miss (the key is purged before),
	// answered once the fetch completes, then on a hit.
	tests := []struct {
		name, method string
		header       map[string]string
		status       int
		body         []byte
		length       string
	}{
		{"If-None-Match", "GET", map[string]string{"If-None-Match": etag}, http.StatusNotModified, nil, ""},
		{"If-None-Match other", "GET", map[string]string{"If-None-Match": `"other"`}, 200, body, strconv.Itoa(len(body))},
		{"Range", "GET", map[string]string{"Range": "bytes=10-19"}, http.StatusPartialContent, body[10:20], "10"},
		{"suffix Range", "GET", map[string]string{"Range": "bytes=-5"}, http.StatusPartialContent, body[len(body)-5:], "5"},
		{"HEAD", "HEAD", nil, 200, nil, strconv.Itoa(len(body))},
	}
	for _, tt := range tests {
		for _, state := range []string{"miss", "hit"} {
			t.Run(tt.name+"/"+state, func(t *testing.T) {
				if state == "miss" {
					p.Purge(context.Background(), Key{AccountHash: "acc", ID: "id", Variant: "public", Format: FormatOriginal})
				}
				resp, got := get(t, tt.method, url, tt.header)
				if resp.StatusCode != tt.status || !bytes.Equal(got, tt.body) {
					t.Fatalf("status %d, body %d bytes; want %d, %d bytes", resp.StatusCode, len(got), tt.status, len(tt.body))
				}
				checkSafetyHeaders(t, resp)
				if tt.length != "" && resp.Header.Get("Content-Length") != tt.length {
					t.Errorf("Content-Length %q, want %q", resp.Header.Get("Content-Length"), tt.length)
				}
				if resp.Header.Get("Etag") != etag {
					t.Errorf("ETag %q, want %q", resp.Header.Get("Etag"), etag)
				}
			})
		}
	}
	if n := up.fetches.Load(); n != int64(len(tests)) {
		t.Errorf("%d fetches, want one per miss: %d", n, len(tests))
	}
}

func TestServeHeaderAllowlist(t *testing.T) {
	body := image(4 << 10)
	handler := serveBody(body, map[string]string{
		"Content-Type": "image/png", "Etag": `"e1"`, "Last-Modified": lastModified,
		"Set-Cookie": "cf=1", "Location": "https://elsewhere.example/", "Cf-Ray": "8a1b2c3d4e5f-AMS",
		"Cf-Cache-Status": "HIT", "X-Foo": "bar", "Cache-Control": "public, max-age=31536000", "Server": "cloudflare",
	})
	client := map[string]string{
		"Accept": "image/webp,*/*", "Cookie": "session=secret", "Authorization": "Bearer secret",
		"X-Forwarded-For": "203.0.113.9", "Referer": "https://app.example/private", "User-Agent": "browser/1.0",
		"Accept-Language": "nl",
	}
	allowed := map[string]bool{
		"Content-Type": true, "Content-Length": true, "Etag": true, "Last-Modified": true, "Accept-Ranges": true,
		"Cache-Control": true, "Vary": true, "Date": true,
		"X-Content-Type-Options": true, "Content-Security-Policy": true,
	}
	for _, tt := range []struct {
		name      string
		maxObject int64
	}{
		{"cached", 0},
		{"passed through", 1 << 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, handler)
			fr := front(t, newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, UserAgent: "imagegate/dev", MaxObject: tt.maxObject}), up)
			for i := range 2 {
				resp, got := get(t, "GET", fr.URL+"/img/id/public", client)
				if !bytes.Equal(got, body) {
					t.Fatalf("request %d: wrong body", i)
				}
				for k := range resp.Header {
					if !allowed[k] {
						t.Errorf("request %d: header %s: %q reached the client", i, k, resp.Header[k])
					}
				}
				if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=60" {
					t.Errorf("request %d: Cache-Control %q, want the caller's", i, cc)
				}
				checkSafetyHeaders(t, resp)
			}
			want := http.Header{"Accept": {FormatWebP.Accept()}, "User-Agent": {"imagegate/dev"}}
			for _, seen := range up.headers() {
				if !maps.EqualFunc(seen, want, slices.Equal) {
					t.Errorf("upstream got headers %v, want exactly %v", seen, want)
				}
			}
		})
	}
}

func TestConcurrentMissesShareOneFetch(t *testing.T) {
	const n = 50
	body := image(200 << 10)
	release := make(chan struct{})
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Content-Type", "image/avif")
		w.Write(body)
	})
	obs := newObserver()
	p := newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, Observer: obs})

	recs := make([]*recorder, n)
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = newRecorder()
		hdr := map[string]string(nil)
		if i%5 == 1 { // some wait for the whole body rather than stream
			hdr = map[string]string{"Range": "bytes=0-"}
		}
		wg.Go(func() {
			if err := p.Serve(recs[i], request(context.Background(), "GET", hdr), testKey, up.url("/acc/id/public")); err != nil {
				t.Error(err)
			}
		})
	}
	// Every request has missed and the fetch cannot finish before
	// release: all 50 are following the one fetch.
	obs.waitMisses(t, n)
	close(release)
	wg.Wait()
	if f := up.fetches.Load(); f != 1 {
		t.Errorf("%d upstream fetches for %d concurrent misses, want 1", f, n)
	}
	for i, rec := range recs {
		if _, got, _ := rec.result(); !bytes.Equal(got, body) {
			t.Fatalf("request %d got %d bytes, not the body", i, len(got))
		}
	}
}

// gatedTier holds its first Get, after the lookup, until gate closes.
type gatedTier struct {
	Tier
	gate, held chan struct{}
	first      atomic.Bool
}

func (g *gatedTier) Get(ctx context.Context, k Key) (*Object, bool) {
	obj, ok := g.Tier.Get(ctx, k)
	if g.first.CompareAndSwap(false, true) {
		close(g.held)
		<-g.gate
	}
	return obj, ok
}

// TestMissRacingACompletedFetch: a request misses the tier, then a whole
// fetch for the key runs and stores the object before the request gets
// to join it. The request must find the object, not fetch again.
func TestMissRacingACompletedFetch(t *testing.T) {
	body := image(1 << 10)
	up := newUpstream(t, serveBody(body, map[string]string{"Content-Type": "image/png"}))
	tier := &gatedTier{Tier: NewMemory(1<<20, nil), gate: make(chan struct{}), held: make(chan struct{})}
	p := newProxy(t, Config{Tiers: []Tier{tier}})
	serve := func() {
		rec := newRecorder()
		if err := p.Serve(rec, request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public")); err != nil {
			t.Error(err)
		}
		if _, got, _ := rec.result(); !bytes.Equal(got, body) {
			t.Error("wrong body")
		}
	}
	late := make(chan struct{})
	go func() {
		defer close(late)
		serve() // misses, then waits in the tier
	}()
	<-tier.held
	serve() // fetches and stores
	close(tier.gate)
	<-late
	if f := up.fetches.Load(); f != 1 {
		t.Errorf("%d fetches, want 1", f)
	}
}

func TestEquivalentAcceptSharesOneCopy(t *testing.T) {
	body := image(1 << 10)
	up := newUpstream(t, serveBody(body, map[string]string{"Content-Type": "image/avif"}))
	fr := front(t, newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}}), up)
	chrome := "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	firefox := "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
	for _, accept := range []string{chrome, firefox, chrome} {
		get(t, "GET", fr.URL+"/img/id/public", map[string]string{"Accept": accept})
	}
	if n := up.fetches.Load(); n != 1 {
		t.Errorf("%d fetches for three AVIF-bucket requests, want 1", n)
	}
	get(t, "GET", fr.URL+"/img/id/public", map[string]string{"Accept": "*/*"})
	if n := up.fetches.Load(); n != 2 {
		t.Errorf("%d fetches after an original-bucket request, want 2", n)
	}
	var accepts []string
	for _, h := range up.headers() {
		accepts = append(accepts, h.Get("Accept"))
	}
	if want := []string{FormatAVIF.Accept(), FormatOriginal.Accept()}; !slices.Equal(accepts, want) {
		t.Errorf("upstream Accept headers %q, want %q", accepts, want)
	}
}

func TestHitInLaterTierFillsEarlier(t *testing.T) {
	l1, l2 := NewMemory(1<<20, nil), NewMemory(1<<20, nil)
	obj := &Object{Body: image(3000), ContentType: "image/webp", ETag: `"t2"`, LastModified: time.Unix(1700000000, 0)}
	l2.Set(context.Background(), testKey, obj, time.Hour)
	obs := newObserver()
	p := newProxy(t, Config{Tiers: []Tier{l1, l2}, Observer: obs})
	for range 2 {
		rec := newRecorder()
		// Nothing listens on port 1 of 127.0.0.1: a fetch would fail.
		if err := p.Serve(rec, request(context.Background(), "GET", nil), testKey, "http://127.0.0.1:1/x?sig=00"); err != nil {
			t.Fatal(err)
		}
		if status, got, _ := rec.result(); status != 200 || !bytes.Equal(got, obj.Body) || rec.h.Get("Etag") != `"t2"` {
			t.Fatalf("status %d, %d bytes, ETag %q", status, len(got), rec.h.Get("Etag"))
		}
	}
	if got, ok := l1.Get(context.Background(), testKey); !ok || got != obj {
		t.Error("tier 1 was not filled from tier 2")
	}
	if obs.hits.Load() != 2 || obs.misses.Load() != 0 {
		t.Errorf("%d hits, %d misses; want 2, 0", obs.hits.Load(), obs.misses.Load())
	}
}

func TestPurge(t *testing.T) {
	up := newUpstream(t, serveBody(image(100), map[string]string{"Content-Type": "image/png"}))
	l1, l2 := NewMemory(1<<20, nil), NewMemory(1<<20, nil)
	p := newProxy(t, Config{Tiers: []Tier{l1, l2}})
	serve := func() {
		if err := p.Serve(newRecorder(), request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public")); err != nil {
			t.Fatal(err)
		}
	}
	serve()
	other := testKey
	other.Format = FormatWebP
	if n := p.Purge(context.Background(), testKey, other); n != 2 {
		t.Errorf("Purge = %d, want 2 (one entry in each tier)", n)
	}
	serve()
	if n := up.fetches.Load(); n != 2 {
		t.Errorf("%d fetches, want 2: Purge should force a refetch", n)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{{MaxObject: -1}, {TTL: -1}, {Timeout: -1}, {Tiers: []Tier{nil}}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) did not fail", cfg)
		}
	}
}
