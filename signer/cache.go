package signer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/sync/singleflight"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// DefaultMaxBytes is the cache's memory budget when Config.MaxBytes is 0:
// about 97,000 URLs of UUID images, or 12,900 of 1,024-byte ids whose every
// byte is percent-encoded.
const DefaultMaxBytes = 64 << 20

// Config describes what a Signer signs.
type Config struct {
	// DeliveryURL is the scheme, host and optional path prefix of delivery
	// URLs, without a trailing slash: "https://imagedelivery.net".
	DeliveryURL string
	// AccountHash is the account hash of delivery URLs (not the account id).
	AccountHash string
	// Key is the signing key as the Cloudflare dashboard shows it.
	Key []byte
	// Window is the expiry policy.
	Window Window
	// MaxBytes bounds the cache's heap: the estimated bytes of every
	// cached URL with its key and bookkeeping (see entryBytes). 0 means
	// DefaultMaxBytes.
	MaxBytes int64
	// MaxEntries, if positive, also caps the number of cached URLs: the
	// count form of cache_size in older configs. The cache then holds at
	// most MaxEntries URLs and at most MaxBytes bytes, whichever binds
	// first, so a count never lets long ids grow the cache past MaxBytes.
	// 0 means no count cap.
	MaxEntries int
	// OnSign, if set, is called for every signature made.
	OnSign func()
	// OnEvict, if set, is called when a URL is evicted to make room.
	OnEvict func()
}

type cacheKey struct{ id, variant string }

type entry struct {
	url  *URL
	cost int64
}

// Signer hands out delivery URLs from an LRU cache bounded in bytes, signing
// on a miss. It is safe for concurrent use; concurrent misses for one image
// and variant sign once.
type Signer struct {
	base    string // DeliveryURL + "/" + AccountHash + "/"
	key     []byte
	window  Window
	onSign  func()
	onEvict func()
	flight  singleflight.Group

	mu         sync.Mutex // guards lru and bytes
	lru        *simplelru.LRU[cacheKey, entry]
	bytes      int64
	maxBytes   int64
	maxEntries int
}

// New returns a Signer for cfg.
func New(cfg Config) (*Signer, error) {
	if err := cfg.Window.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Key) == 0 {
		return nil, errors.New("signing key is empty")
	}
	if cfg.MaxBytes < 0 || cfg.MaxEntries < 0 {
		return nil, errors.New("cache size must not be negative")
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	s := &Signer{
		base:       strings.TrimSuffix(cfg.DeliveryURL, "/") + "/" + cfg.AccountHash + "/",
		key:        cfg.Key,
		window:     cfg.Window,
		onSign:     cfg.OnSign,
		onEvict:    cfg.OnEvict,
		maxBytes:   cfg.MaxBytes,
		maxEntries: cfg.MaxEntries,
	}
	// The LRU's own count bound is never reached: add evicts by bytes and
	// by maxEntries itself, so that it knows each evicted entry's cost.
	var err error
	s.lru, err = simplelru.NewLRU[cacheKey, entry](int(^uint(0)>>1), nil)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// URL returns the delivery URL of an image variant at time now, signed
// unless public is set, and whether it came from the cache. id must already
// be valid (see package imageref).
func (s *Signer) URL(id, variant string, public bool, now time.Time) (u *URL, hit bool) {
	k := cacheKey{id, variant}
	s.mu.Lock()
	e, ok := s.lru.Get(k)
	s.mu.Unlock()
	if ok && !now.After(e.url.FreshUntil) {
		return e.url, true
	}
	v, _, _ := s.flight.Do(id+"\x00"+variant, func() (any, error) {
		// Another caller may have filled the entry while this one waited.
		s.mu.Lock()
		e, ok := s.lru.Peek(k)
		s.mu.Unlock()
		if ok && !now.After(e.url.FreshUntil) {
			return e.url, nil
		}
		u := s.make(id, variant, public, now)
		s.add(k, u)
		return u, nil
	})
	return v.(*URL), false
}

// add caches u under k, then evicts least recently used URLs until the
// cache is within its budget again.
func (s *Signer) add(k cacheKey, u *URL) {
	// The cache keeps its own copies of the key's strings: the caller's may
	// be slices of a larger request path, which would stay alive unaccounted.
	k = cacheKey{strings.Clone(k.id), strings.Clone(k.variant)}
	cost := entryBytes(k.id, k.variant, u.String)
	evicted := 0
	s.mu.Lock()
	if old, ok := s.lru.Peek(k); ok {
		s.bytes -= old.cost // a stale URL replaced in place
	}
	s.lru.Add(k, entry{u, cost})
	s.bytes += cost
	for s.bytes > s.maxBytes || s.maxEntries > 0 && s.lru.Len() > s.maxEntries {
		_, old, ok := s.lru.RemoveOldest()
		if !ok {
			break
		}
		s.bytes -= old.cost
		evicted++
	}
	s.mu.Unlock()
	if s.onEvict != nil {
		for range evicted {
			s.onEvict()
		}
	}
}

func (s *Signer) make(id, variant string, public bool, now time.Time) *URL {
	exp, fresh := s.window.Expiry(now)
	full := s.base + imageref.EscapePath(id) + "/" + variant
	u := &URL{Expires: exp, FreshUntil: fresh, Signed: !public}
	if public {
		u.String = full
	} else {
		path := full[pathStart(full):]
		sig := Sign(s.key, path, exp.Unix())
		u.String = full + "?exp=" + strconv.FormatInt(exp.Unix(), 10) + "&sig=" + sig
		if s.onSign != nil {
			s.onSign()
		}
	}
	u.Location = []string{u.String}
	sum := sha256.Sum256(u.JSON())
	u.ETag = []string{`"` + hex.EncodeToString(sum[:12]) + `"`}
	return u
}

// pathStart returns the index of the path in an absolute URL
// "scheme://host/path".
func pathStart(u string) int {
	i := strings.Index(u, "://")
	j := strings.IndexByte(u[i+3:], '/')
	return i + 3 + j
}
