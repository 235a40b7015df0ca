package signer

import (
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/internal/testclock"
)

type clock = testclock.Clock

func newTestSigner(t *testing.T, c *clock, size int, signs, evicts *atomic.Int64) *Signer {
	t.Helper()
	s, err := New(Config{
		DeliveryURL: "https://imagedelivery.net",
		AccountHash: "acc",
		Key:         []byte("k3y"),
		Window:      Window{Size: time.Hour, MinRemaining: 5 * time.Minute},
		Size:        size,
		OnSign:      func() { signs.Add(1) },
		OnEvict:     func() { evicts.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestURLIsStableInsideAWindow(t *testing.T) {
	c := testclock.New(time.Unix(1699999000, 0))
	var signs, evicts atomic.Int64
	s := newTestSigner(t, c, 10, &signs, &evicts)

	u1, hit := s.URL("img1", "public", false, c.Now())
	if hit {
		t.Fatal("first lookup was a hit")
	}
	// exp = ceil((1699999000+300)/3600)*3600 = 1700002800.
	want := "https://imagedelivery.net/acc/img1/public?exp=1700002800&sig=" + Sign([]byte("k3y"), "/acc/img1/public", 1700002800)
	if u1.String != want {
		t.Fatalf("URL = %s\nwant  %s", u1.String, want)
	}
	c.Add(30 * time.Minute)
	u2, hit := s.URL("img1", "public", false, c.Now())
	if !hit || u2.String != u1.String {
		t.Fatalf("inside the window: hit=%v url=%s, want the cached URL", hit, u2.String)
	}
	c.Add(30 * time.Minute) // 1700002600: past exp - min_remaining (1700002500)
	u3, hit := s.URL("img1", "public", false, c.Now())
	if hit || u3.String == u1.String {
		t.Fatalf("after fresh-until: hit=%v, want a new URL", hit)
	}
	if got := signs.Load(); got != 2 {
		t.Fatalf("signatures = %d, want 2", got)
	}
}

func TestPublicURLIsUnsignedAndEscaped(t *testing.T) {
	c := testclock.New(time.Unix(1700000000, 0))
	var signs, evicts atomic.Int64
	s := newTestSigner(t, c, 10, &signs, &evicts)
	u, _ := s.URL("users/100%/a b", "avatar", true, c.Now())
	if want := "https://imagedelivery.net/acc/users/100%25/a%20b/avatar"; u.String != want {
		t.Fatalf("URL = %s, want %s", u.String, want)
	}
	if signs.Load() != 0 || u.Signed {
		t.Fatal("a public URL was signed")
	}
}

func TestSignedPathIsTheWirePath(t *testing.T) {
	c := testclock.New(time.Unix(1700000000, 0))
	var signs, evicts atomic.Int64
	s := newTestSigner(t, c, 10, &signs, &evicts)
	u, _ := s.URL("folder/100%-real", "public", false, c.Now())
	parsed, err := url.Parse(u.String)
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := strconv.ParseInt(parsed.Query().Get("exp"), 10, 64)
	if want := Sign([]byte("k3y"), parsed.EscapedPath(), exp); parsed.Query().Get("sig") != want {
		t.Fatalf("sig does not verify over %s", parsed.EscapedPath())
	}
	if parsed.EscapedPath() != "/acc/folder/100%25-real/public" {
		t.Fatalf("path = %s", parsed.EscapedPath())
	}
}

func TestEvictionIsReported(t *testing.T) {
	c := testclock.New(time.Unix(1700000000, 0))
	var signs, evicts atomic.Int64
	s := newTestSigner(t, c, 2, &signs, &evicts)
	for _, id := range []string{"a", "b", "c"} {
		s.URL(id, "public", false, c.Now())
	}
	if s.Len() != 2 || evicts.Load() != 1 {
		t.Fatalf("len=%d evictions=%d, want 2 and 1", s.Len(), evicts.Load())
	}
}

// TestConcurrentMissesSignOnce runs under -race in CI.
func TestConcurrentMissesSignOnce(t *testing.T) {
	c := testclock.New(time.Unix(1700000000, 0))
	var signs, evicts atomic.Int64
	s := newTestSigner(t, c, 1000, &signs, &evicts)
	const workers = 64
	var wg sync.WaitGroup
	start := make(chan struct{})
	urls := make([]string, workers)
	for i := range workers {
		wg.Go(func() {
			<-start
			u, _ := s.URL("same", "public", false, c.Now())
			urls[i] = u.String
			s.URL("other-"+strconv.Itoa(i%4), "public", false, c.Now())
		})
	}
	close(start)
	wg.Wait()
	for _, u := range urls {
		if u != urls[0] {
			t.Fatalf("callers got different URLs: %s vs %s", u, urls[0])
		}
	}
	// One signature for "same" and one for each of the four others, however
	// the goroutines interleaved.
	if got := signs.Load(); got != 5 {
		t.Fatalf("signatures = %d, want 5", got)
	}
}
