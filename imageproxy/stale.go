package imageproxy

import (
	"net/http"
)

// StaleObserver is an Observer that also wants to know when a stale
// object was served because its refetch failed (Config.StaleIfError).
// The proxy checks for it with a type assertion, once, in New.
type StaleObserver interface {
	// ServedStale reports that r's answer was k's stale object, because
	// the refetch failed with cause. It is called once per such answer;
	// an outage that lasts makes many calls, so a log line should be
	// written once per outage (e.g. until Fetched reports a 200 again).
	ServedStale(r *http.Request, k Key, cause *UpstreamError)
}

// servesStale reports whether a failed refetch may be answered with a
// stale object (RFC 5861, stale-if-error): a 5xx, a timeout or a
// connection error. Never a 404 (a deleted image stays deleted), a 403 (a
// refused signature) or another answer upstream meant.
func servesStale(err error) (*UpstreamError, bool) {
	ue, ok := err.(*UpstreamError)
	if !ok || ue.Remembered {
		return nil, false
	}
	return ue, ue.Upstream == 0 || ue.Upstream >= http.StatusInternalServerError
}

// serveStale answers r with stale, k's object past its FreshUntil, in
// place of a failed refetch.
func (p *Proxy) serveStale(w http.ResponseWriter, r *http.Request, k Key, stale *Object, cause *UpstreamError) {
	p.serveObject(w, r, stale)
	if p.staleObs != nil {
		p.staleObs.ServedStale(r, k, cause)
	}
}
