package emulator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/seed-a64a90cf/imagegate/internal/httpcond"
)

// Delivery error codes
// (https://developers.cloudflare.com/images/reference/troubleshooting/).
// Each is sent as a plain-text
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

// Delivery describes one answered delivery request, for Config.OnDelivery.
type Delivery struct {
	// Image is the id of the stored image the request named, or "" when
	// it named none (wrong account hash, unknown id, malformed path).
	Image string
	// Variant is a named variant that exists, "flexible", or "other".
	Variant string
	// Format is the subtype of the image sent or revalidated ("jpeg",
	// "png", "webp" or "avif"), or "" for an error answer.
	Format string
	// Status is the HTTP status sent.
	Status int
	// NotModified is true for a 304 Not Modified answer.
	NotModified bool
}

// serveDelivery serves GET /<account_hash>/<image_id>/<variant> (p is the
// path with any /cdn-cgi/imagedelivery prefix removed) and reports the
// outcome to the OnDelivery hook.
func (e *Emulator) serveDelivery(w http.ResponseWriter, r *http.Request, p string) {
	d := e.deliver(w, r, p)
	if e.cfg.OnDelivery != nil {
		e.cfg.OnDelivery(d)
	}
}

// spec is the resizing a delivery asks for.
type spec struct {
	fit  string
	w, h int
}

// deliver runs Cloudflare's delivery checks in its documented order:
// account hash, image, variant, signature; then renders.
func (e *Emulator) deliver(w http.ResponseWriter, r *http.Request, p string) Delivery {
	d := Delivery{Variant: "other"}
	// Every answer depends on Accept, errors included: a cache must not
	// give a WebP client's answer to another client, whatever it is.
	w.Header().Set("Vary", "Accept")
	fail := func(status, code int, msg string) Delivery {
		d.Status = deliveryError(w, status, code, msg)
		return d
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return fail(http.StatusMethodNotAllowed, codeBadDelivery, "Bad request")
	}
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) < 3 {
		return fail(http.StatusBadRequest, codeBadDelivery, "Bad request")
	}
	hash, rawID, rawVariant := segs[0], strings.Join(segs[1:len(segs)-1], "/"), segs[len(segs)-1]

	variantName, err := url.PathUnescape(rawVariant)
	if err != nil {
		return fail(http.StatusBadRequest, codeBadDelivery, "Bad request")
	}
	flexible := strings.Contains(variantName, "=")
	variant, named := Variant{}, false
	if flexible {
		d.Variant = "flexible"
	} else if variant, named = e.variantByName(variantName); named {
		d.Variant = variant.ID
	}

	if hash != e.cfg.AccountHash {
		return fail(http.StatusForbidden, codeWrongHash, "Incorrect account hash")
	}
	id, ok := unescapeID(rawID)
	rec, found := Record{}, false
	if ok {
		rec, found = e.store.Get(id)
	}
	if !found || rec.Draft {
		return fail(http.StatusNotFound, codeNotFound, "Image not found")
	}
	d.Image = rec.ID

	var sp spec
	switch {
	case flexible && !e.cfg.FlexibleVariants:
		return fail(http.StatusForbidden, codeFlexible, "Flexible variants are not enabled")
	case flexible:
		if sp, ok = parseFlexible(variantName); !ok {
			return fail(http.StatusBadRequest, codeBadDelivery, "Bad request")
		}
	case !named:
		return fail(http.StatusNotFound, codeNotFound, "Variant not found")
	default:
		sp = spec{fit: variant.Options.Fit, w: variant.Options.Width, h: variant.Options.Height}
	}

	var exp int64
	private := rec.RequireSignedURLs && !(named && variant.NeverRequireSignedURLs)
	if private {
		st, _ := e.store.State()
		// Flexible variants can never be signed, so they never pass here.
		if exp, ok = verifySignature(r.URL.EscapedPath(), r.URL.RawQuery, st.Keys, e.now()); flexible || !ok {
			return fail(http.StatusForbidden, codeAccessDenied, "Image access denied")
		}
	}

	out, err := e.rendered(rec, sp, negotiate(r.Header.Values("Accept")))
	switch {
	case errors.Is(err, errCanvasTooLarge), errors.Is(err, errDecodeTooLarge),
		errors.Is(err, errTooComplex), errors.Is(err, errDecodeTimeout):
		return fail(http.StatusForbidden, codeTooBig, "Image too big")
	case err != nil:
		return fail(http.StatusUnsupportedMediaType, codeUnsupportedImage, "Unsupported image")
	}

	h := w.Header()
	if private {
		// Cloudflare derives a private image's cache time from exp, and
		// that time "can be as short as one hour"
		// (https://developers.cloudflare.com/images/manage-images/serve-images/serve-private-images/).
		h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(max(3600, exp-e.now().Unix()), 10))
	} else {
		ttl := int64(e.cfg.BrowserTTL.Seconds())
		if named && variant.Options.BrowserTTL > 0 {
			ttl = int64(variant.Options.BrowserTTL)
		}
		h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d, stale-while-revalidate=7200", ttl))
	}
	h.Set("ETag", out.etag)
	d.Format = out.format
	if httpcond.NoneMatch(r.Header.Get("If-None-Match"), out.etag) {
		w.WriteHeader(http.StatusNotModified)
		d.Status, d.NotModified = http.StatusNotModified, true
		return d
	}
	h.Set("Content-Type", out.contentType)
	h.Set("Content-Length", strconv.Itoa(len(out.body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(out.body)
	}
	d.Status = http.StatusOK
	return d
}

// errDecodeTooLarge is an image whose decoding would take more memory
// than Config.MaxDecodeBytes: stored before the limit was lowered, or put
// in the store by other means than an upload.
var errDecodeTooLarge = errors.New("decoding the image would exceed the memory limit")

// rendered returns the encoded variant, from the cache when it can. The key
// holds the record's sequence number, which a re-upload under the same id
// changes, the geometry, which a variant PATCH changes, and the output
// format asked for (an AVIF request over MaxAVIFSide is rendered as WebP
// under its own key). Concurrent misses for one key render once, and at
// most Config.MaxConcurrentDecodes renders run at a time.
func (e *Emulator) rendered(rec Record, sp spec, format outputFormat) (*rendered, error) {
	key := fmt.Sprintf("%d|%s|%d|%d|%s", rec.Seq, sp.fit, sp.w, sp.h, format)
	if out, ok := e.cache.Get(key); ok {
		return out, nil
	}
	v, err, _ := e.renders.Do(key, func() (any, error) {
		if out, ok := e.cache.Get(key); ok {
			return out, nil // rendered by a call that finished just before
		}
		// The slot is taken before the original is read, so that at most
		// MaxConcurrentDecodes originals are in memory at once.
		release := e.decodeSlot()
		defer release()
		src, err := e.store.Blob(rec.ID)
		if err != nil {
			return nil, err
		}
		hd, err := readHeader(src)
		if err != nil {
			return nil, err
		}
		g := fitGeometry(sp.fit, hd.Width, hd.Height, sp.w, sp.h)
		format := format.forCanvas(g.canvasW, g.canvasH)
		keep := true
		if format == formatAVIF && !avifIsReady() {
			format, keep = formatWebP, false
		}
		switch {
		case hd.decodeBytes > e.cfg.MaxDecodeBytes:
			return nil, errDecodeTooLarge
		case int64(g.canvasW)*int64(g.canvasH) > MaxArea,
			resizeBytes(hd.Width, hd.Height, g, format) > e.cfg.MaxDecodeBytes:
			return nil, errCanvasTooLarge
		}
		// The render is shared by every request waiting for it, so no
		// one client's going away stops it; its deadline does.
		ctx, cancel := context.WithTimeout(context.Background(), e.cfg.DecodeTimeout)
		defer cancel()
		out, err := render(ctx, src, hd, g, format)
		if err != nil {
			return nil, err
		}
		if keep {
			e.cache.Add(key, out)
		}
		return out, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*rendered), nil
}

// decodeSlot waits for one of the Config.MaxConcurrentDecodes decode slots
// and returns the function that frees it.
func (e *Emulator) decodeSlot() (release func()) {
	e.decodeSlots <- struct{}{}
	return func() { <-e.decodeSlots }
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
