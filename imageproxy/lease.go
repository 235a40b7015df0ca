package imageproxy

import (
	"context"
	"time"
)

// FillLeases coordinates upstream fetches among processes that share a
// tier (replicas on one Redis), so that one of them fetches a missing
// object while the others wait for it to appear in the shared tier. It is
// an optimization, never needed for a correct answer: a process that
// cannot take or wait for a lease fetches on its own.
type FillLeases interface {
	// Acquire tries to take k's fill lease for ttl. It returns the lease
	// when it got it; the caller fetches, stores, then calls Lease.Done.
	// It returns a channel instead when another process holds the lease:
	// the channel is closed when the holder reports done, when the lease
	// lapses (at most ttl later), or when the coordination itself is lost
	// (a dropped subscription). It returns neither when coordination
	// fails (Redis is unavailable): the caller fetches on its own.
	Acquire(ctx context.Context, k Key, ttl time.Duration) (Lease, <-chan struct{})
}

// Lease is a held fill lease.
type Lease interface {
	// Done gives the lease up and wakes the waiters. filled reports that
	// the object was written to every SyncTier before Done was called,
	// so the waiters will find it there; otherwise they fetch on their
	// own.
	Done(ctx context.Context, filled bool)
}

// SyncTier is a Tier that can also store synchronously. When the proxy
// holds a fill lease it stores through SetSync, so the object is in the
// shared tier before the waiters are told to look for it.
type SyncTier interface {
	Tier
	// SetSync stores obj under k for ttl and returns once the write is
	// done, or reports why it is not.
	SetSync(ctx context.Context, k Key, obj *Object, ttl time.Duration) error
}
