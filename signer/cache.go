package signer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

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
	// Size is the maximum number of cached URLs.
	Size int
	// OnSign, if set, is called for every signature made.
	OnSign func()
	// OnEvict, if set, is called when a live URL is evicted to make room.
	OnEvict func()
}

// URL is a delivery URL ready to hand out. It is immutable and shared by
// every caller that asks for the same image and variant inside one window.
type URL struct {
	// String is the full URL.
	String string
	// Expires is exp for a signed URL. For an unsigned (public) URL it is
	// the end of the window it was made in, the time a client may cache it.
	Expires time.Time
	// FreshUntil is when the URL stops being handed out: Expires minus the
	// window's MinRemaining.
	FreshUntil time.Time
	// Signed reports whether the URL carries exp and sig.
	Signed bool
	// Location is String as a header value, prebuilt so that serving a
	// cached URL allocates nothing. Callers must not modify it.
	Location []string
	// JSON is {"url":…,"expires":…,"expires_at":…}, prebuilt for clients
	// that ask for the URL itself.
	JSON []byte
	// ETag is a strong entity tag of JSON, as a header value, so a client
	// that already holds this URL can revalidate instead of refetching.
	ETag []string
}

type cacheKey struct{ id, variant string }

// Signer hands out delivery URLs from an LRU cache, signing on a miss. It is
// safe for concurrent use; concurrent misses for one image and variant sign
// once.
type Signer struct {
	base   string // DeliveryURL + "/" + AccountHash + "/"
	key    []byte
	window Window
	onSign func()
	cache  *lru.Cache[cacheKey, *URL]
	flight singleflight.Group
}

// New returns a Signer for cfg.
func New(cfg Config) (*Signer, error) {
	if err := cfg.Window.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Key) == 0 {
		return nil, errors.New("signing key is empty")
	}
	if cfg.Size <= 0 {
		return nil, errors.New("cache size must be positive")
	}
	s := &Signer{
		base:   strings.TrimSuffix(cfg.DeliveryURL, "/") + "/" + cfg.AccountHash + "/",
		key:    cfg.Key,
		window: cfg.Window,
		onSign: cfg.OnSign,
	}
	onEvict := cfg.OnEvict
	var err error
	s.cache, err = lru.NewWithEvict(cfg.Size, func(_ cacheKey, _ *URL) {
		if onEvict != nil {
			onEvict()
		}
	})
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
	if u, ok := s.cache.Get(k); ok && !now.After(u.FreshUntil) {
		return u, true
	}
	v, _, _ := s.flight.Do(id+"\x00"+variant, func() (any, error) {
		// Another caller may have filled the entry while this one waited.
		if u, ok := s.cache.Peek(k); ok && !now.After(u.FreshUntil) {
			return u, nil
		}
		u := s.make(id, variant, public, now)
		s.cache.Add(k, u)
		return u, nil
	})
	return v.(*URL), false
}

// Len returns the number of cached URLs.
func (s *Signer) Len() int { return s.cache.Len() }

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
	u.JSON = urlJSON(u.String, exp)
	sum := sha256.Sum256(u.JSON)
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

// urlJSON is the body a client that asked for JSON receives. HTML escaping
// is off so the URL reads as it is ("&", not "\u0026").
func urlJSON(url string, exp time.Time) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(struct {
		URL       string `json:"url"`
		Expires   int64  `json:"expires"`
		ExpiresAt string `json:"expires_at"`
	}{url, exp.Unix(), exp.UTC().Format(time.RFC3339)})
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}
