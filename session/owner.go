package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"github.com/seed-a64a90cf/imagegate/limit"
	"golang.org/x/sync/singleflight"
)

// ErrImageNotFound is returned by a [MetadataSource] for an image that does
// not exist.
var ErrImageNotFound = errors.New("image not found")

// ErrLimited means the caller has spent its budget, e.g. of image lookups
// through the Cloudflare API: answer 429. Errors wrapping it are usually a
// [*LimitedError], which says when to retry.
var ErrLimited = errors.New("rate limited")

// LimitedError is a request refused because its caller is over a limit.
// It wraps ErrLimited.
type LimitedError struct {
	// RetryAfter is how long until the caller may try again; zero if
	// unknown.
	RetryAfter time.Duration
}

func (e *LimitedError) Error() string {
	if e.RetryAfter > 0 {
		return fmt.Sprintf("%v: retry after %v", ErrLimited, e.RetryAfter)
	}
	return ErrLimited.Error()
}

// Unwrap returns ErrLimited.
func (e *LimitedError) Unwrap() error { return ErrLimited }

// MetadataSource returns an image's metadata.
type MetadataSource interface {
	ImageMeta(ctx context.Context, id string) (map[string]any, error)
}

// CloudflareMetadata reads metadata through the Cloudflare Images API.
type CloudflareMetadata struct {
	Client *cfapi.Client
}

// ImageMeta returns the image's meta, or an error wrapping ErrImageNotFound.
func (c CloudflareMetadata) ImageMeta(ctx context.Context, id string) (map[string]any, error) {
	img, err := c.Client.Image(ctx, id)
	if errors.Is(err, cfapi.ErrNotFound) {
		return nil, fmt.Errorf("%w: %v", ErrImageNotFound, err)
	}
	if err != nil {
		return nil, err
	}
	return img.Meta, nil
}

// OwnerConfig configures an [Owner] policy. Zero values mean the documented
// defaults.
type OwnerConfig struct {
	// Field is the metadata field that names the owner, e.g. "owner".
	// Required.
	Field string
	// Source supplies image metadata. Required.
	Source MetadataSource
	// TTL is how long an image's owner is remembered. Default 5m.
	TTL time.Duration
	// Stale is how much longer than TTL an image's owner is still used
	// when looking it up again fails (an API error, a timeout, the API's
	// rate limit), so that an outage does not lock owners out of images
	// they could just see: the stale-if-error of RFC 5861. A caller over
	// her own Limiter budget is refused (429), never answered stale, so
	// that she cannot outlive an owner change. A missing image is never
	// remembered past NotFoundTTL. Default 1h; negative disables.
	Stale time.Duration
	// NotFoundTTL is how long a missing image is remembered. Default 30s,
	// shorter than TTL because a fresh upload may not exist yet.
	NotFoundTTL time.Duration
	// Timeout bounds one metadata lookup. Default 5s.
	Timeout time.Duration
	// CacheSize bounds the cache (images). Default 10000; negative
	// disables.
	CacheSize int
	// Limiter, if set, bounds each caller's lookups. Only a check that
	// needs a lookup (no fresh answer is cached) spends the caller's
	// budget; over it, the check fails with a *LimitedError and makes no
	// lookup, even if a stale answer is cached. The Cloudflare API allows a token about 1,200 calls per 5
	// minutes, shared by every caller, so without a limit one caller
	// cycling through made-up image ids could use it all. Nil: no limit.
	Limiter limit.Limiter
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// staleRetry is how long a stale owner answers after a failed lookup
// before the next lookup is tried, so that an outage costs one lookup per
// image per staleRetry instead of one (and its timeout) per request.
const staleRetry = 30 * time.Second

// Owner allows a caller whose subject equals the image's metadata field
// (stamped at upload). A missing image is ErrForbidden, like someone else's
// image, so callers cannot probe which ids exist; a metadata source that
// fails is ErrUnavailable unless a stale owner is remembered. Owners are
// cached per image, and concurrent misses for one image make one lookup.
type Owner struct {
	field       string
	source      MetadataSource
	ttl         time.Duration
	stale       time.Duration
	notFoundTTL time.Duration
	timeout     time.Duration
	limiter     limit.Limiter
	now         func() time.Time
	cache       *ttlCache[string, ownerEntry]
	group       singleflight.Group
}

// ownerEntry is one image's cached answer. The cache keeps it until
// staleUntil; it decides without a lookup until fresh, and after that only
// when a lookup fails.
type ownerEntry struct {
	owner      string
	found      bool // found and the field is a string
	fresh      time.Time
	staleUntil time.Time
}

// NewOwner validates cfg and returns the policy.
func NewOwner(cfg OwnerConfig) (*Owner, error) {
	if cfg.Field == "" {
		return nil, errors.New("owner policy: empty metadata field")
	}
	if cfg.Source == nil {
		return nil, errors.New("owner policy: no metadata source")
	}
	o := &Owner{
		field:       cfg.Field,
		source:      cfg.Source,
		ttl:         orDefault(cfg.TTL, 5*time.Minute),
		stale:       orDefault(cfg.Stale, time.Hour),
		notFoundTTL: orDefault(cfg.NotFoundTTL, 30*time.Second),
		timeout:     orDefault(cfg.Timeout, 5*time.Second),
		limiter:     cfg.Limiter,
		now:         cfg.Now,
	}
	if cfg.Stale < 0 { // orDefault would make it the default
		o.stale = 0
	}
	if o.now == nil {
		o.now = time.Now
	}
	o.cache = newTTLCache[string, ownerEntry](cfg.CacheSize)
	return o, nil
}

// Allow reports nil if id owns img.
func (o *Owner) Allow(ctx context.Context, id Identity, img Image) error {
	if id.Subject == "" {
		return fmt.Errorf("%w: anonymous caller owns no image", ErrForbidden)
	}
	now := o.now()
	e, cached := o.cache.get(img.ID, now)
	if !cached || !now.Before(e.fresh) {
		var err error
		if e, err = o.refresh(ctx, id.Subject, img.ID); err != nil {
			return err
		}
	}
	if !e.found || e.owner != id.Subject {
		return fmt.Errorf("%w: caller does not own this image", ErrForbidden)
	}
	return nil
}

// refresh looks imageID up on behalf of subject.
func (o *Owner) refresh(ctx context.Context, subject, imageID string) (ownerEntry, error) {
	// Each caller pays, also one joining another's lookup below: charging
	// only the first would let a caller's spent budget fail, or its
	// unspent one serve, everyone waiting on the same image.
	//
	// A caller over her budget gets 429 even when a stale owner is cached:
	// serving it would let her outlive an owner change for as long as she
	// keeps her own budget spent. Stale owners answer only when the
	// Cloudflare API fails (see lookup), which is nobody's choice.
	if o.limiter != nil {
		if r := o.limiter.Allow(ctx, subject); !r.Allowed {
			return ownerEntry{}, fmt.Errorf("owner lookup: %w", &LimitedError{RetryAfter: r.RetryAfter})
		}
	}
	v, err, _ := o.group.Do(imageID, func() (any, error) {
		// A lookup may have finished between our cache check and now.
		if e, ok := o.cache.get(imageID, o.now()); ok && o.now().Before(e.fresh) {
			return e, nil
		}
		return o.lookup(ctx, imageID)
	})
	if err != nil {
		return ownerEntry{}, err
	}
	return v.(ownerEntry), nil
}

func (o *Owner) lookup(ctx context.Context, imageID string) (ownerEntry, error) {
	// Detached from the first caller: others may be waiting on this lookup.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
	defer cancel()
	meta, err := o.source.ImageMeta(ctx, imageID)
	now := o.now()
	switch {
	case errors.Is(err, ErrImageNotFound):
		// Kept no longer than it is fresh: never served stale, since the
		// image may be a fresh upload.
		e := ownerEntry{fresh: now.Add(o.notFoundTTL)}
		e.staleUntil = e.fresh
		o.cache.add(imageID, e, e.staleUntil, now)
		return e, nil
	case err != nil:
		// Only answers that were found outlive their freshness, so any
		// entry still cached is a stale owner.
		if e, ok := o.cache.get(imageID, now); ok {
			e.fresh = now.Add(staleRetry)
			if e.fresh.After(e.staleUntil) {
				e.fresh = e.staleUntil
			}
			o.cache.add(imageID, e, e.staleUntil, now)
			return e, nil
		}
		return ownerEntry{}, fmt.Errorf("%w: image metadata: %w", ErrUnavailable, err)
	}
	owner, ok := meta[o.field].(string)
	e := ownerEntry{owner: owner, found: ok && owner != "", fresh: now.Add(o.ttl)}
	e.staleUntil = e.fresh.Add(o.stale)
	o.cache.add(imageID, e, e.staleUntil, now)
	return e, nil
}
