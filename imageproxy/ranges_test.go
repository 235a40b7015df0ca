package imageproxy

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// tinyRanges returns a Range value of n one-byte ranges, every other byte.
func tinyRanges(n int) string {
	var b strings.Builder
	b.WriteString("bytes=")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d-%d", 2*i, 2*i)
	}
	return b.String()
}

func TestRangesBounded(t *testing.T) {
	body := image(28 << 10)
	for _, tt := range []struct {
		name   string
		rng    string
		status int
	}{
		{"6000 tiny ranges", tinyRanges(6000), 200},
		{"17 ranges", tinyRanges(MaxRanges + 1), 200},
		{"16 ranges", tinyRanges(MaxRanges), 206},
		{"overlapping", "bytes=0-99,50-149", 200},
		{"overlapping suffix", "bytes=28000-28100,-1000", 200},
		{"contained", "bytes=0-,100-199", 200},
		{"adjacent", "bytes=0-99,100-199", 206},
		{"one range", "bytes=10-19", 206},
		{"unsorted, apart", "bytes=200-299,0-99", 206},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, state := range []string{"miss", "hit"} {
				up := newUpstream(t, serveBody(body, map[string]string{"Content-Type": "image/png"}))
				obs := newObserver()
				mem := NewMemory(1<<20, nil)
				if state == "hit" {
					k := Key{AccountHash: "acc", ID: "id", Variant: "public"}
					mem.Set(context.Background(), k, &Object{Body: body, ContentType: "image/png", ETag: `"e"`}, time.Hour)
				}
				p := newProxy(t, Config{Tiers: []Tier{mem}, Observer: obs})
				fr := front(t, p, up)
				resp, got := get(t, "GET", fr.URL+"/img/id/public", map[string]string{"Range": tt.rng})
				fr.Close() // the handler reports Sent after the client has the body
				if resp.StatusCode != tt.status {
					t.Fatalf("%s: status %d, want %d", state, resp.StatusCode, tt.status)
				}
				if tt.status == 200 && !bytes.Equal(got, body) {
					t.Fatalf("%s: a 200 without the whole body (%d bytes)", state, len(got))
				}
				if len(got) > len(body) {
					t.Errorf("%s: %d bytes sent for a %d-byte object", state, len(got), len(body))
				}
				if sent := obs.sent.Load(); sent != int64(len(got)) {
					t.Errorf("%s: Sent reported %d bytes, the client got %d", state, sent, len(got))
				}
				checkSafetyHeaders(t, resp)
			}
		})
	}
}

func TestAcceptableRanges(t *testing.T) {
	for v, want := range map[string]bool{
		"bytes=0-0":               true,
		"bytes=0-0,1-1":           true,
		"bytes=0-1,1-2":           false,
		"bytes=-10,0-9":           true, // size 100: 90-99 and 0-9
		"bytes=-10,95-":           false,
		"bytes=500-600,0-1":       true, // the first is unsatisfiable, dropped
		"bytes=abc":               true, // ServeContent refuses it
		"items=0-1,0-1":           true,
		tinyRanges(MaxRanges):     true,
		tinyRanges(MaxRanges + 1): false,
	} {
		if got := acceptableRanges(v, 100); got != want {
			t.Errorf("acceptableRanges(%.40q) = %v, want %v", v, got, want)
		}
	}
}

// BenchmarkServeRanges compares a hit asked for 6,000 one-byte ranges with
// a plain hit of the same 28 KiB object: the first must cost no more.
func BenchmarkServeRanges(b *testing.B) {
	mem := NewMemory(1<<20, nil)
	obj := &Object{Body: image(28 << 10), ContentType: "image/png", ETag: `"e"`, LastModified: time.Unix(1700000000, 0)}
	mem.Set(context.Background(), testKey, obj, time.Hour)
	p, err := New(Config{Tiers: []Tier{mem}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for _, rng := range []string{"", tinyRanges(6000)} {
		b.Run("ranges="+strconv.Itoa(strings.Count(rng, "-")), func(b *testing.B) {
			r := httptest.NewRequest("GET", "/img/id/public", nil)
			if rng != "" {
				r.Header.Set("Range", rng)
			}
			w := &discardWriter{h: make(http.Header, 8)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.n = 0
				if err := p.Serve(w, r, testKey, "http://127.0.0.1:1/never?sig=00"); err != nil || w.n != int64(len(obj.Body)) {
					b.Fatalf("err %v, %d bytes", err, w.n)
				}
			}
		})
	}
}
