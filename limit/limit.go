// Package limit bounds how often one subject (a caller's identity) may
// spend a shared budget, such as Cloudflare API calls or upload URLs.
package limit

import (
	"context"
	"time"
)

// Rate is a budget of Events per Per. The zero Rate (Events == 0) means
// no limit.
type Rate struct {
	Events int
	Per    time.Duration
}

// Off reports whether the rate imposes no limit.
func (r Rate) Off() bool { return r.Events <= 0 }

// Result is a limiter's answer for one event.
type Result struct {
	// Allowed reports whether the event may happen now; it has then been
	// counted.
	Allowed bool
	// RetryAfter is, when not allowed, how long until one more event
	// would be allowed.
	RetryAfter time.Duration
}

// Limiter counts events per subject. Implementations are safe for
// concurrent use and never fail: one that depends on a remote store falls
// back to a local count while the store is unreachable.
type Limiter interface {
	Allow(ctx context.Context, subject string) Result
}
