package caddymodule

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// dependencyLogInterval is the least time between two warnings about one
// dependency: an outage is in the log at once, but not once per request.
const dependencyLogInterval = time.Minute

// dependencyLog remembers when each dependency (the Cloudflare API, the
// session's identity provider or backend, the upstream image delivery) was
// last warned about. A refusal's own line is Caddy's, at a level that
// depends on handle_errors; this warning does not.
type dependencyLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// warnDependency logs err at warn level, at most once per
// dependencyLogInterval for each dependency.
func (h *Handler) warnDependency(dependency, msg string, err error) {
	now := time.Now()
	d := h.deps
	d.mu.Lock()
	if d.last == nil {
		d.last = map[string]time.Time{}
	}
	if now.Sub(d.last[dependency]) < dependencyLogInterval {
		d.mu.Unlock()
		return
	}
	d.last[dependency] = now
	d.mu.Unlock()
	h.logger.Warn(msg, zap.String("dependency", dependency), zap.Error(err),
		zap.Duration("quiet_for", dependencyLogInterval))
}
