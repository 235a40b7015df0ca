package caddymodule

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/imageref"
	acceptpkg "github.com/seed-a64a90cf/imagegate/internal/accept"
	"github.com/seed-a64a90cf/imagegate/internal/httpcond"
	"github.com/seed-a64a90cf/imagegate/session"
	"github.com/seed-a64a90cf/imagegate/signer"
)

// Header values shared by every response. Only the strings are shared: a
// response gets slices of its own (headerSlab), since Caddy's deferred
// header edits write into them.
const (
	contentJSON = "application/json"
	allowGET    = "GET, HEAD"
	noStore     = "no-store"
	// privateNoCache makes a browser revalidate every view (browser_max_age 0).
	privateNoCache = "private, no-cache"
)

// Refusals that are not a session's verdict. Their texts are fixed: nothing
// from the request is echoed, and Caddy logs them (at debug level, being
// below 500) and offers them to handle_errors as {err.message}.
var (
	errMethod         = errors.New("method not allowed")
	errUnknownVariant = errors.New("unknown variant")
)

// ServeHTTP implements caddyhttp.MiddlewareHandler. Reading it top to
// bottom gives the request's whole path through the gateway.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := r.URL.EscapedPath()
	if h.logout != nil && path == h.logoutPath {
		h.logout.ServeHTTP(w, r)
		return nil
	}
	if h.uploads != nil && path == h.uploads.path {
		return h.uploads.serve(w, r, h)
	}
	rest, ok := h.stripPrefix(path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = []string{allowGET}
		return h.refuse(w, r, otherState, outcomeMethodNotAllowed, errMethod)
	}
	ref, err := imageref.Parse(rest)
	if err != nil {
		// imageref's errors describe the rule broken, never the input.
		return h.refuse(w, r, otherState, outcomeBadRequest, err)
	}
	vs, ok := h.variants[ref.Variant]
	if !ok {
		return h.refuse(w, r, otherState, outcomeNotFound, errUnknownVariant)
	}
	d := h.decide(r, session.Image{ID: ref.ID, Variant: ref.Variant})
	if d.Verdict != session.Allowed {
		return h.deny(w, r, vs, d)
	}

	now := h.now() // after the session check, which may have waited on the network
	slab := new(headerSlab)
	u, hit := h.stableURL(w, slab, ref, vs, now)
	if h.proxy != nil {
		return h.serveProxy(w, r, vs, ref, u, d.Identity.Subject)
	}
	hdr := w.Header()

	// A 302 or a new JSON URL makes the client fetch the image from
	// Cloudflare: one billable delivery. A JSON client revalidating a URL it
	// holds (If-None-Match) fetches nothing. HEAD is never followed.
	var out outcome
	switch {
	case !wantsJSON(r.Header.Get("Accept")):
		out = outcomeRedirect
		hdr["Location"] = slab.copy(u.Location)
		w.WriteHeader(http.StatusFound)
	case httpcond.NoneMatch(r.Header.Get("If-None-Match"), u.ETag[0]):
		out = outcomeNotModified
		hdr["Etag"] = slab.copy(u.ETag)
		w.WriteHeader(http.StatusNotModified)
	default:
		out = outcomeJSON
		hdr["Content-Type"] = slab.one(contentJSON)
		body := u.JSON()
		hdr["Content-Length"] = slab.one(strconv.Itoa(len(body)))
		hdr["Etag"] = slab.copy(u.ETag)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	}
	setOutcome(r, out)
	billable := out != outcomeNotModified && r.Method != http.MethodHead
	vs.served(out, billable, u.Expires.Sub(now).Seconds())
	if c := h.logger.Check(zap.DebugLevel, "served"); c != nil {
		c.Write(zap.String("outcome", out.String()), zap.String("variant", ref.Variant),
			zap.String("subject", subjectHashes.Hash(d.Identity.Subject)), zap.Bool("cache_hit", hit),
			zap.String("key_id", h.keyID))
	}
	return nil
}

// stableURL returns the image's stable URL and sets the headers every
// allowed answer carries: the browser may keep it, privately, while the URL
// is handed out, and must ask again when Accept or the credential changes.
// The header values come from slab, the response's own.
func (h *Handler) stableURL(w http.ResponseWriter, slab *headerSlab, ref imageref.Ref, vs *variantState, now time.Time) (*signer.URL, bool) {
	u, hit := h.signer.URL(ref.ID, ref.Variant, vs.public, now)
	if hit {
		metrics.cacheHits.Inc()
	} else {
		metrics.cacheMisses.Inc()
	}
	hdr := w.Header()
	if h.noBrowserCache {
		hdr["Cache-Control"] = slab.one(privateNoCache)
	} else {
		maxAge := max(int64(u.FreshUntil.Sub(now).Seconds()), 0)
		if h.browserMaxAge > 0 {
			maxAge = min(maxAge, int64(h.browserMaxAge.Seconds()))
		}
		hdr["Cache-Control"] = slab.one(privateMaxAge(maxAge))
	}
	hdr["Vary"] = slab.copy(h.gate.Vary())
	return u, hit
}

// decide runs the session gate for one image and counts the check.
func (h *Handler) decide(r *http.Request, img session.Image) session.Decision {
	start := time.Now()
	d := h.gate.Image(r, img)
	h.checks.observe(d, time.Since(start))
	return d
}

// deny refuses a request that failed the session or authorization check,
// with the status the session package assigns to the verdict. The error
// Caddy logs names the caller by a keyed hash and says why (session errors
// never contain credentials); the answer says neither.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, vs *variantState, d session.Decision) error {
	out, err := h.denial(w, d)
	return h.refuse(w, r, vs, out, err)
}

// denial sets the headers of a refused verdict and returns its outcome and
// the reason to log.
func (h *Handler) denial(w http.ResponseWriter, d session.Decision) (outcome, error) {
	hdr := w.Header()
	switch d.Verdict {
	case session.Unauthenticated:
		if c := h.gate.Challenge(); c != nil {
			hdr["Www-Authenticate"] = slices.Clone(c)
		}
	case session.Unavailable:
		hdr["Retry-After"] = []string{retryAfter(d.RetryAfter)}
		h.warnDependency(h.method.CaddyModule().ID.Name()+" session or "+h.authorizer.CaddyModule().ID.Name()+" policy",
			"a dependency of the session check failed: refusing with 503 until it answers", d.Err)
	case session.Limited:
		hdr["Retry-After"] = []string{retryAfter(d.RetryAfter)}
	}
	err := d.Err
	if d.Identity.Subject != "" {
		err = &callerError{subject: subjectHashes.Hash(d.Identity.Subject), err: d.Err}
	}
	return verdictOutcomes[d.Verdict], err
}

// verdictOutcomes maps each refusing verdict to the outcome it counts as.
var verdictOutcomes = [...]outcome{
	session.Unauthenticated: outcomeUnauthenticated,
	session.Forbidden:       outcomeForbidden,
	session.Unavailable:     outcomeUnavailable,
	session.Limited:         outcomeLimited,
}

// callerError adds the caller's hash to a refusal's logged reason.
type callerError struct {
	subject string
	err     error
}

func (e *callerError) Error() string { return e.err.Error() + " (caller " + e.subject + ")" }
func (e *callerError) Unwrap() error { return e.err }

// refuse counts a refusal, marks it uncacheable (the same URL may succeed
// once the caller logs in or the dependency recovers), and returns it as a
// Caddy handler error so that handle_errors can answer it. Without
// handle_errors, Caddy answers the bare status with an empty body.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, vs *variantState, out outcome, why error) error {
	vs.count(out)
	return refusal(w, r, out, why)
}

// refusal is refuse without the image request counter, for uploads.
func refusal(w http.ResponseWriter, r *http.Request, out outcome, why error) error {
	w.Header()["Cache-Control"] = []string{noStore}
	setOutcome(r, out)
	return caddyhttp.Error(out.status(), why)
}

// setOutcome exposes the outcome as {http.cf_images.outcome}, for access
// logs and handle_errors routes.
func setOutcome(r *http.Request, out outcome) {
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		repl.Set("http.cf_images.outcome", outcomeValues[out])
	}
}

// retryAfter formats a Retry-After in whole seconds, at least 1.
func retryAfter(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}

// stripPrefix returns the part of an escaped path after "<prefix>/", and
// whether the path is the gateway's at all. The prefix itself, with or
// without a slash, is the gateway's (and a bad request).
func (h *Handler) stripPrefix(p string) (string, bool) {
	if h.prefix == "/" {
		return strings.TrimPrefix(p, "/"), true
	}
	if !strings.HasPrefix(p, h.prefix) {
		return "", false
	}
	rest := p[len(h.prefix):]
	switch {
	case rest == "":
		return "", true
	case rest[0] == '/':
		return rest[1:], true
	}
	return "", false // "/imgfoo" is not under "/img"
}

// wantsJSON reports whether an Accept header names application/json with
// a weight above 0 (internal/accept's rules). Browsers loading images
// never do; mobile and SPA clients ask for it.
func wantsJSON(accept string) bool { return acceptpkg.Accepts(accept, "application/json") }
