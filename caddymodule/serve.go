package caddymodule

import (
	"net/http"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/imageref"
	"github.com/seed-a64a90cf/imagegate/session"
)

// Header values shared by every response. Handlers and net/http only
// replace header slices, never write into them, so sharing is safe.
var (
	contentJSON = []string{"application/json"}
	allowGET    = []string{"GET, HEAD"}
)

// ServeHTTP implements caddyhttp.MiddlewareHandler. Reading it top to
// bottom gives the request's whole path through the gateway.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path := r.URL.EscapedPath()
	if h.uploads != nil && path == h.uploads.path {
		return h.uploads.serve(w, r, h)
	}
	rest, ok := h.stripPrefix(path)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowGET
		return h.fail(w, r, otherVariant, outcomeMethodNotAllowed, http.StatusMethodNotAllowed, "method not allowed")
	}
	ref, err := imageref.Parse(rest)
	if err != nil {
		// imageref's errors describe the rule broken, never the input.
		return h.fail(w, r, otherVariant, outcomeBadRequest, http.StatusBadRequest, "invalid image path: "+err.Error())
	}
	vs, ok := h.variants[ref.Variant]
	if !ok {
		return h.fail(w, r, otherVariant, outcomeNotFound, http.StatusNotFound, "unknown variant")
	}
	caller, denied, err := h.gate.check(r, session.Image{ID: ref.ID, Variant: ref.Variant}, h.now)
	if err != nil {
		return h.deny(w, r, ref.Variant, denied, caller.Subject, err)
	}

	now := h.now() // after the session check, which may have waited on the network
	u, hit := h.signer.URL(ref.ID, ref.Variant, vs.public, now)
	if hit {
		metrics.cacheHits.Inc()
	} else {
		metrics.cacheMisses.Inc()
	}
	maxAge := int64(u.FreshUntil.Sub(now).Seconds())
	if maxAge < 0 {
		maxAge = 0
	}
	hdr := w.Header()
	hdr["Cache-Control"] = []string{"private, max-age=" + strconv.FormatInt(maxAge, 10)}
	hdr["Vary"] = h.gate.vary

	// A 302 or a new JSON URL makes the client fetch the image from
	// Cloudflare: one billable delivery. A JSON client revalidating a URL it
	// holds (If-None-Match) fetches nothing. HEAD is never followed.
	var out outcome
	switch {
	case !wantsJSON(r.Header.Get("Accept")):
		out = outcomeRedirect
		hdr["Location"] = u.Location
		w.WriteHeader(http.StatusFound)
	case etagMatches(r.Header.Get("If-None-Match"), u.ETag[0]):
		out = outcomeNotModified
		hdr["Etag"] = u.ETag
		w.WriteHeader(http.StatusNotModified)
	default:
		out = outcomeJSON
		hdr["Content-Type"] = contentJSON
		hdr["Content-Length"] = []string{strconv.Itoa(len(u.JSON))}
		hdr["Etag"] = u.ETag
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(u.JSON)
		}
	}
	billable := out != outcomeNotModified && r.Method != http.MethodHead
	vs.served(out, billable, u.Expires.Sub(now).Seconds())
	if c := h.logger.Check(zap.DebugLevel, "served"); c != nil {
		c.Write(zap.String("outcome", out.String()), zap.String("variant", ref.Variant),
			zap.String("subject", subjectHash(caller.Subject)), zap.Bool("cache_hit", hit),
			zap.String("key_id", h.keyID))
	}
	return nil
}

// deny answers a request that failed the session or authorization check.
// None of these answers may be cached: the same URL succeeds once the
// caller logs in.
// The log line names the caller by hash and says why (session errors never
// contain credentials); the answer says neither.
func (h *Handler) deny(w http.ResponseWriter, r *http.Request, variant string, out outcome, subject string, why error) error {
	detail := []zap.Field{zap.String("subject", subjectHash(subject)), zap.String("error", why.Error())}
	switch out {
	case outcomeUnauthenticated:
		if h.gate.challenge != nil {
			w.Header()["Www-Authenticate"] = h.gate.challenge
		}
		return h.fail(w, r, variant, out, http.StatusUnauthorized, "authentication required", detail...)
	case outcomeForbidden:
		return h.fail(w, r, variant, out, http.StatusForbidden, "access to this image is denied", detail...)
	default:
		w.Header().Set("Retry-After", "5")
		return h.fail(w, r, variant, out, http.StatusServiceUnavailable, "authorization is temporarily unavailable", detail...)
	}
}

// subjectHash names a caller in logs without recording who they are.
func subjectHash(sub string) string {
	if sub == "" {
		return ""
	}
	return session.SubjectHash(sub)
}

// stripPrefix returns the part of an escaped path after "<prefix>/", and
// whether the path is the gateway's at all. The prefix itself, with or
// without a slash, is the gateway's (and a bad request).
func (h *Handler) stripPrefix(p string) (string, bool) {
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

// fail answers with one short plain-text line. Messages are fixed strings:
// nothing from the request is echoed.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, variant string, out outcome, status int, msg string, detail ...zap.Field) error {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain; charset=utf-8")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(msg + "\n"))
	}
	h.variantState(variant).count(out)
	if c := h.logger.Check(out.logLevel(), "request refused"); c != nil {
		c.Write(append([]zap.Field{zap.String("outcome", out.String()), zap.Int("status", status),
			zap.String("variant", variant), zap.String("reason", msg), zap.String("key_id", h.keyID)}, detail...)...)
	}
	return nil
}

// etagMatches reports whether an If-None-Match header names etag (or is
// "*"). Weak comparison, as RFC 9110 prescribes for If-None-Match.
func etagMatches(inm, etag string) bool {
	for inm != "" {
		var tag string
		tag, inm, _ = strings.Cut(inm, ",")
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == etag || tag == "*" {
			return true
		}
	}
	return false
}

// wantsJSON reports whether an Accept header lists application/json with a
// non-zero quality. Browsers loading images never do; mobile and SPA
// clients ask for it.
func wantsJSON(accept string) bool {
	for accept != "" {
		var part string
		part, accept, _ = strings.Cut(accept, ",")
		mt, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			continue
		}
		for params != "" {
			var p string
			p, params, _ = strings.Cut(params, ";")
			if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(k, "q") {
				q, err := strconv.ParseFloat(v, 64)
				return err == nil && q > 0
			}
		}
		return true
	}
	return false
}
