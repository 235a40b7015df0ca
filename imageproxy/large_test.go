package imageproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// hashWriter is a ResponseWriter that hashes the body instead of keeping
// it, so a large body costs the test no memory.
type hashWriter struct {
	h      http.Header
	status int
	n      int64
	sum    hash.Hash
}

func newHashWriter() *hashWriter { return &hashWriter{h: http.Header{}, sum: sha256.New()} }

func (w *hashWriter) Header() http.Header { return w.h }
func (w *hashWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
}
func (w *hashWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += int64(len(b))
	w.sum.Write(b)
	return len(b), nil
}

// bigBody is a body of n bytes generated on the fly from one 32 KiB block
// whose first 8 bytes number it.
func bigBody(n int64) (http.HandlerFunc, [32]byte) {
	block := image(32 << 10)
	next := func(i int64) []byte {
		binary.BigEndian.PutUint64(block, uint64(i))
		return block[:min(int64(len(block)), n-i*int64(len(block)))]
	}
	sum := sha256.New()
	for i := int64(0); i*int64(len(block)) < n; i++ {
		sum.Write(next(i))
	}
	var want [32]byte
	sum.Sum(want[:0])
	var mu sync.Mutex // next shares block
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		for i := int64(0); i*int64(len(block)) < n; i++ {
			if _, err := w.Write(next(i)); err != nil {
				return
			}
		}
	}, want
}

func TestLargeBodyStreamsInBoundedMemory(t *testing.T) {
	const size = 64 << 20
	for _, tt := range []struct {
		name      string
		length    bool // upstream sends Content-Length
		maxObject int64
	}{
		// Known too big from the headers: never buffered.
		{"Content-Length", true, 0},
		// Found too big while reading: buffered up to MaxObject, then
		// streamed through.
		{"chunked", false, 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gen, want := bigBody(size)
			up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "image/png")
				if tt.length {
					w.Header().Set("Content-Length", strconv.Itoa(size))
				}
				gen(w, r)
			})
			mem := NewMemory(256<<20, nil)
			p := newProxy(t, Config{Tiers: []Tier{mem}, MaxObject: tt.maxObject})
			w := newHashWriter()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := p.Serve(w, request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public"))
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			var got [32]byte
			w.sum.Sum(got[:0])
			if w.status != 200 || w.n != size || got != want {
				t.Fatalf("status %d, %d bytes, intact %v", w.status, w.n, got == want)
			}
			// The upstream server runs in this process too, so this counts
			// both sides of the transfer.
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d KiB allocated to stream %d MiB", alloc>>10, size>>20)
			if alloc > 8<<20 {
				t.Errorf("%d bytes allocated to stream a %d byte body, want under 8 MiB", alloc, size)
			}
			if mem.Len() != 0 {
				t.Error("a body over MaxObject was cached")
			}
		})
	}
}

func TestOverMaxObjectIsNotCached(t *testing.T) {
	body := image(4 << 10)
	for _, tt := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"Content-Length", serveBody(body, map[string]string{"Content-Type": "image/png", "Etag": `"big"`})},
		{"chunked", serveChunked(body, map[string]string{"Content-Type": "image/png"})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			up := newUpstream(t, tt.handler)
			mem := NewMemory(1<<20, nil)
			fr := front(t, newProxy(t, Config{Tiers: []Tier{mem}, MaxObject: 1 << 10}), up)
			for i := range 2 {
				resp, got := get(t, "GET", fr.URL+"/img/id/public", nil)
				if resp.StatusCode != 200 || !bytes.Equal(got, body) {
					t.Fatalf("request %d: status %d, %d bytes", i, resp.StatusCode, len(got))
				}
			}
			resp, got := get(t, "HEAD", fr.URL+"/img/id/public", nil)
			if resp.StatusCode != 200 || len(got) != 0 {
				t.Errorf("HEAD: status %d, %d bytes", resp.StatusCode, len(got))
			}
			if n := up.fetches.Load(); n != 3 || mem.Len() != 0 {
				t.Errorf("%d fetches, %d cached; want 3, 0", n, mem.Len())
			}
		})
	}
}

// TestOverMaxObjectWaitersFetchTheirOwn: requests that joined a fetch
// whose body turns out over MaxObject each make their own.
func TestOverMaxObjectWaitersFetchTheirOwn(t *testing.T) {
	const n = 4
	body := image(8 << 10)
	release := make(chan struct{})
	var once sync.Once
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { <-release }) // hold the first fetch until all have joined
		serveBody(body, map[string]string{"Content-Type": "image/png"})(w, r)
	})
	obs := newObserver()
	p := newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, MaxObject: 1 << 10, Observer: obs})
	recs := make([]*recorder, n)
	var wg sync.WaitGroup
	for i := range recs {
		recs[i] = newRecorder()
		wg.Go(func() {
			if err := p.Serve(recs[i], request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public")); err != nil {
				t.Error(err)
			}
		})
	}
	obs.waitMisses(t, n)
	close(release)
	wg.Wait()
	for i, rec := range recs {
		if _, got, _ := rec.result(); !bytes.Equal(got, body) {
			t.Errorf("request %d: %d bytes, not the body", i, len(got))
		}
	}
	if f := up.fetches.Load(); f != n {
		t.Errorf("%d fetches, want %d: one shared, then one per waiter", f, n)
	}
}
