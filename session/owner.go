package session

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/seed-a64a90cf/imagegate/cfapi"
	"golang.org/x/sync/singleflight"
)

// ErrImageNotFound is returned by a [MetadataSource] for an image that does
// not exist.
var ErrImageNotFound = errors.New("image not found")

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
	// NotFoundTTL is how long a missing image is remembered. Default 30s,
	// shorter than TTL because a fresh upload may not exist yet.
	NotFoundTTL time.Duration
	// Timeout bounds one metadata lookup. Default 5s.
	Timeout time.Duration
	// CacheSize bounds the cache (images). Default 10000; negative
	// disables.
	CacheSize int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Owner allows a caller whose subject equals the image's metadata field
// (stamped at upload). A missing image is ErrForbidden, like someone else's
// image, so callers cannot probe which ids exist; a metadata source that
// fails is ErrUnavailable. Owners are cached per image, and concurrent
// misses for one image make one lookup.
type Owner struct {
	field       string
	source      MetadataSource
	ttl         time.Duration
	notFoundTTL time.Duration
	timeout     time.Duration
	now         func() time.Time
	cache       *ttlCache[string, ownerEntry]
	group       singleflight.Group
	misses      atomic.Int64 // cache misses, for tests
}

type ownerEntry struct {
	owner string
	found bool // found and the field is a string
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
		notFoundTTL: orDefault(cfg.NotFoundTTL, 30*time.Second),
		timeout:     orDefault(cfg.Timeout, 5*time.Second),
		now:         cfg.Now,
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
	e, ok := o.cache.get(img.ID, o.now())
	if !ok {
		o.misses.Add(1)
		v, err, _ := o.group.Do(img.ID, func() (any, error) {
			// A lookup may have finished between our cache check and now.
			if e, ok := o.cache.get(img.ID, o.now()); ok {
				return e, nil
			}
			return o.lookup(ctx, img.ID)
		})
		if err != nil {
			return err
		}
		e = v.(ownerEntry)
	}
	if !e.found || e.owner != id.Subject {
		return fmt.Errorf("%w: caller does not own this image", ErrForbidden)
	}
	return nil
}

func (o *Owner) lookup(ctx context.Context, imageID string) (ownerEntry, error) {
	// Detached from the first caller: others may be waiting on this lookup.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.timeout)
	defer cancel()
	meta, err := o.source.ImageMeta(ctx, imageID)
	now := o.now()
	switch {
	case errors.Is(err, ErrImageNotFound):
		e := ownerEntry{}
		o.cache.add(imageID, e, now.Add(o.notFoundTTL), now)
		return e, nil
	case err != nil:
		return ownerEntry{}, fmt.Errorf("%w: image metadata: %v", ErrUnavailable, err)
	}
	owner, ok := meta[o.field].(string)
	e := ownerEntry{owner: owner, found: ok && owner != ""}
	o.cache.add(imageID, e, now.Add(o.ttl), now)
	return e, nil
}
