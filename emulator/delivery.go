package emulator

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Delivery error codes (CLOUDFLARE.md §7). Each is sent as a plain-text
// "ERROR <code>: <message>" body with a Cf-Resized: err=<code> header.
const (
	codeUnsupportedImage = 9412
	codeTooBig           = 9413
	codeAccessDenied     = 9425
	codeWrongHash        = 9427
	codeFlexible         = 9429
	codeNotFound         = 9431
	codeBadDelivery      = 9432
)

// serveDelivery serves GET /<account_hash>/<image_id>/<variant> (p is the
// path with any /cdn-cgi/imagedelivery prefix removed) and reports the
// outcome to the OnDelivery hook.
func (e *Emulator) serveDelivery(w http.ResponseWriter, r *http.Request, p string) {
	label, status, notModified := e.deliver(w, r, p)
	if e.cfg.OnDelivery != nil {
		e.cfg.OnDelivery(label, status, notModified)
	}
}

// spec is the resizing a delivery asks for.
type spec struct {
	fit  string
	w, h int
}

// deliver runs Cloudflare's delivery checks in its documented order:
// account hash, image, variant, signature; then renders.
func (e *Emulator) deliver(w http.ResponseWriter, r *http.Request, p string) (label string, status int, notModified bool) {
	label = "other"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return label, deliveryError(w, http.StatusMethodNotAllowed, codeBadDelivery, "Bad request"), false
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) < 3 {
		return label, deliveryError(w, http.StatusBadRequest, codeBadDelivery, "Bad request"), false
	}
	hash, rawID, rawVariant := segs[0], strings.Join(segs[1:len(segs)-1], "/"), segs[len(segs)-1]

	variantName, err := url.PathUnescape(rawVariant)
	if err != nil {
		return label, deliveryError(w, http.StatusBadRequest, codeBadDelivery, "Bad request"), false
	}
	flexible := strings.Contains(variantName, "=")
	variant, named := Variant{}, false
	if flexible {
		label = "flexible"
	} else if variant, named = e.variantByName(variantName); named {
		label = variant.ID
	}

	if hash != e.cfg.AccountHash {
		return label, deliveryError(w, http.StatusForbidden, codeWrongHash, "Incorrect account hash"), false
	}
	id, ok := unescapeID(rawID)
	rec, found := Record{}, false
	if ok {
		rec, found = e.store.Get(id)
	}
	if !found || rec.Draft {
		return label, deliveryError(w, http.StatusNotFound, codeNotFound, "Image not found"), false
	}

	var sp spec
	switch {
	case flexible && !e.cfg.FlexibleVariants:
		return label, deliveryError(w, http.StatusForbidden, codeFlexible, "Flexible variants are not enabled"), false
	case flexible:
		if sp, ok = parseFlexible(variantName); !ok {
			return label, deliveryError(w, http.StatusBadRequest, codeBadDelivery, "Bad request"), false
		}
	case !named:
		return label, deliveryError(w, http.StatusNotFound, codeNotFound, "Variant not found"), false
	default:
		sp = spec{fit: variant.Options.Fit, w: variant.Options.Width, h: variant.Options.Height}
	}

	var exp int64
	private := rec.RequireSignedURLs && !(named && variant.NeverRequireSignedURLs)
	if private {
		st, _ := e.store.State()
		// Flexible variants can never be signed, so they never pass here.
		if exp, ok = verifySignature(r.URL.EscapedPath(), r.URL.RawQuery, st.Keys, e.now()); flexible || !ok {
			return label, deliveryError(w, http.StatusForbidden, codeAccessDenied, "Image access denied"), false
		}
	}

	out, err := e.rendered(rec, sp)
	switch {
	case errors.Is(err, errCanvasTooLarge):
		return label, deliveryError(w, http.StatusForbidden, codeTooBig, "Image too big"), false
	case err != nil:
		return label, deliveryError(w, http.StatusUnsupportedMediaType, codeUnsupportedImage, "Unsupported image"), false
	}

	h := w.Header()
	if private {
		// Cloudflare derives a private image's cache time from exp, and
		// that time "can be as short as one hour" (CLOUDFLARE.md §2).
		h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(max(3600, exp-e.now().Unix()), 10))
	} else {
		ttl := int64(e.cfg.BrowserTTL.Seconds())
		if named && variant.Options.BrowserTTL > 0 {
			ttl = int64(variant.Options.BrowserTTL)
		}
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, stale-while-revalidate=7200", ttl))
	}
	h.Set("ETag", out.etag)
	h.Set("Vary", "Accept")
	if etagMatches(r.Header.Get("If-None-Match"), out.etag) {
		w.WriteHeader(http.StatusNotModified)
		return label, http.StatusNotModified, true
	}
	h.Set("Content-Type", out.contentType)
	h.Set("Content-Length", strconv.Itoa(len(out.body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(out.body)
	}
	return label, http.StatusOK, false
}

// rendered returns the encoded variant, from the cache when it can. The key
// holds the record's sequence number, which a re-upload under the same id
// changes, and the geometry, which a variant PATCH changes.
func (e *Emulator) rendered(rec Record, sp spec) (*rendered, error) {
	key := fmt.Sprintf("%d|%s|%d|%d", rec.Seq, sp.fit, sp.w, sp.h)
	if out, ok := e.cache.Get(key); ok {
		return out, nil
	}
	src, err := e.store.Blob(rec.ID)
	if err != nil {
		return nil, err
	}
	out, err := render(src, sp.fit, sp.w, sp.h)
	if err != nil {
		return nil, err
	}
	e.cache.Add(key, out)
	return out, nil
}

// parseFlexible parses option-style variants ("w=400,h=300,fit=cover").
// Only width, height and fit are supported; anything else is refused
// rather than ignored, so a test never passes on an option it did not get.
func parseFlexible(s string) (spec, bool) {
	sp := spec{fit: FitScaleDown}
	for _, opt := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			return sp, false
		}
		switch k {
		case "w", "width", "h", "height":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxSide {
				return sp, false
			}
			if k[0] == 'w' {
				sp.w = n
			} else {
				sp.h = n
			}
		case "fit":
			if !fits[v] {
				return sp, false
			}
			sp.fit = v
		default:
			return sp, false
		}
	}
	return sp, true
}

// etagMatches implements If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatches(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// deliveryError writes Cloudflare's plain-text delivery error and returns
// the status for the caller to report.
func deliveryError(w http.ResponseWriter, status, code int, msg string) int {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cf-Resized", "err="+strconv.Itoa(code))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "ERROR %d: %s", code, msg)
	return status
}
