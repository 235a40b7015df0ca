package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/seed-a64a90cf/imagegate/internal/testclock"
)

type clock = testclock.Clock

// entries is the number of cached URLs.
func (s *Signer) entries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// cachedBytes is the cache's accounted heap, which must stay within budget.
func (s *Signer) cachedBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

func newTestSigner(t *testing.T, c *clock, size int, signs, evicts *atomic.Int64) *Signer {
	t.Helper()
	s, err := New(Config{
		DeliveryURL: "https://imagedelivery.net",
		AccountHash: "acc",
		Key:         []byte("k3y"),
		Window:      Window{Size: time.Hour, MinRemaining: 5 * time.Minute},
		MaxEntries:  size,
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
	if s.entries() != 2 || evicts.Load() != 1 {
		t.Fatalf("len=%d evictions=%d, want 2 and 1", s.entries(), evicts.Load())
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

func newBudgetSigner(t *testing.T, maxBytes int64, maxEntries int, evicts *atomic.Int64) *Signer {
	t.Helper()
	s, err := New(Config{
		DeliveryURL: "https://imagedelivery.net", AccountHash: "acc", Key: []byte("k3y"),
		Window:   Window{Size: time.Hour, MinRemaining: 5 * time.Minute},
		MaxBytes: maxBytes, MaxEntries: maxEntries,
		OnEvict: func() { evicts.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCacheIsBoundedInBytes fills a cache whose budget holds about ten long
// ids: long ids evict each other, the most recently used survive, and the
// accounted bytes never pass the budget.
func TestCacheIsBoundedInBytes(t *testing.T) {
	now := time.Unix(1700000000, 0)
	var evicts atomic.Int64
	probe := newBudgetSigner(t, 0, 0, &evicts)
	probe.URL(escapedID(0), "public", false, now)
	one := probe.cachedBytes() // what one long URL costs
	budget := 10*one + one/2
	s := newBudgetSigner(t, budget, 0, &evicts)
	for i := range 100 {
		s.URL(escapedID(i), "public", false, now)
		if s.cachedBytes() > budget {
			t.Fatalf("after %d URLs: %d bytes cached, over the %d budget", i+1, s.cachedBytes(), budget)
		}
	}
	if s.entries() != 10 {
		t.Fatalf("%d long URLs cached in a budget of ten", s.entries())
	}
	if got := int64(100 - s.entries()); evicts.Load() != got {
		t.Fatalf("evictions = %d, want %d", evicts.Load(), got)
	}
	if _, hit := s.URL(escapedID(99), "public", false, now); !hit {
		t.Fatal("the most recent URL was evicted")
	}
	if _, hit := s.URL(escapedID(0), "public", false, now); hit {
		t.Fatal("the oldest URL survived")
	}
	// The same budget holds many more short ids.
	short := newBudgetSigner(t, budget, 0, &evicts)
	for i := range 50 {
		short.URL(uuidID(i), "public", false, now)
	}
	if short.entries() != 50 {
		t.Fatalf("%d UUID URLs cached in a budget that holds 50", short.entries())
	}
}

// TestCountCapsAlongsideBytes: a count (the old cache_size form) caps the
// entries even when the byte budget has room.
func TestCountCapsAlongsideBytes(t *testing.T) {
	now := time.Unix(1700000000, 0)
	var evicts atomic.Int64
	s := newBudgetSigner(t, 0, 3, &evicts) // the default 64 MiB, 3 entries
	for i := range 5 {
		s.URL(uuidID(i), "public", false, now)
	}
	if s.entries() != 3 || evicts.Load() != 2 {
		t.Fatalf("len=%d evictions=%d, want 3 and 2", s.entries(), evicts.Load())
	}
}

// TestRefreshedURLIsAccountedOnce: a URL replaced when its window ends
// takes the old one's place in the accounting.
func TestRefreshedURLIsAccountedOnce(t *testing.T) {
	c := testclock.New(time.Unix(1700000000, 0))
	var evicts atomic.Int64
	s := newBudgetSigner(t, 0, 0, &evicts)
	s.URL("img1", "public", false, c.Now())
	before := s.cachedBytes()
	c.Add(2 * time.Hour)
	if _, hit := s.URL("img1", "public", false, c.Now()); hit {
		t.Fatal("a stale URL was a hit")
	}
	if s.entries() != 1 || s.cachedBytes() != before || evicts.Load() != 0 {
		t.Fatalf("len=%d bytes=%d (was %d) evictions=%d, want 1 entry of the same cost", s.entries(), s.cachedBytes(), before, evicts.Load())
	}
}

// TestCacheOwnsItsKeys: the id the cache keeps is its own copy, not a slice
// of the caller's (a request path), so the accounting covers what it holds.
func TestCacheOwnsItsKeys(t *testing.T) {
	var evicts atomic.Int64
	s := newBudgetSigner(t, 0, 0, &evicts)
	path := []byte("/img/abc/public")
	id := unsafe.String(&path[5], 3)
	s.URL(id, "public", false, time.Unix(1700000000, 0))
	copy(path[5:], "xyz") // the caller reuses its buffer
	if _, hit := s.URL("abc", "public", false, time.Unix(1700000000, 0)); !hit {
		t.Fatal("the cached key changed with the caller's buffer")
	}
}

func TestNegativeSizesAreRefused(t *testing.T) {
	for _, cfg := range []Config{{MaxBytes: -1}, {MaxEntries: -1}} {
		cfg.Key, cfg.Window = []byte("k"), Window{Size: time.Hour}
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted a negative size", cfg)
		}
	}
}

// TestJSONIsTheAnswerAndItsETag: the JSON built on request is what
// encoding/json makes of the three fields, and the ETag names it.
func TestJSONIsTheAnswerAndItsETag(t *testing.T) {
	now := time.Unix(1699999000, 0)
	var evicts atomic.Int64
	s := newBudgetSigner(t, 0, 0, &evicts)
	for _, tc := range []struct {
		id     string
		public bool
	}{{"img1", false}, {"users/100% a&b", true}} {
		u, _ := s.URL(tc.id, "public", tc.public, now)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(struct {
			URL       string `json:"url"`
			Expires   int64  `json:"expires"`
			ExpiresAt string `json:"expires_at"`
		}{u.String, u.Expires.Unix(), u.Expires.UTC().Format(time.RFC3339)})
		want := strings.TrimSuffix(b.String(), "\n")
		if got := string(u.JSON()); got != want {
			t.Errorf("JSON() = %s\nwant     %s", got, want)
		}
		sum := sha256.Sum256(u.JSON())
		if want := `"` + hex.EncodeToString(sum[:12]) + `"`; u.ETag[0] != want {
			t.Errorf("ETag = %s, want %s", u.ETag[0], want)
		}
	}
}

// TestJSONStringEscapes: anything not plain in a URL (a delivery_url with a
// quote or a non-ASCII host) is escaped as encoding/json escapes it.
func TestJSONStringEscapes(t *testing.T) {
	for _, s := range []string{"https://x/a?b=1&c=2", `https://x/"q"\`, "https://exämple/\x01", "https://x/<a>"} {
		want, _ := json.Marshal(s)
		want = bytes.ReplaceAll(want, []byte(`\u0026`), []byte("&"))
		want = bytes.ReplaceAll(want, []byte(`\u003c`), []byte("<"))
		want = bytes.ReplaceAll(want, []byte(`\u003e`), []byte(">"))
		if got := appendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	}
}
