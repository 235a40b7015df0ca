package emulator

import (
	"net/http"
	"slices"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// Fit modes of a variant
// (https://developers.cloudflare.com/images/transform-images/transform-via-url/#fit).
const (
	FitScaleDown = "scale-down"
	FitContain   = "contain"
	FitCover     = "cover"
	FitCrop      = "crop"
	FitPad       = "pad"
)

// Variant is a named variant: how images delivered under its name are
// resized, and whether private images may be delivered under it unsigned.
type Variant struct {
	ID                     string         `json:"id"`
	Options                VariantOptions `json:"options"`
	NeverRequireSignedURLs bool           `json:"neverRequireSignedURLs"`
}

// VariantOptions are a variant's resizing options.
type VariantOptions struct {
	// Fit is one of the Fit* constants.
	Fit string `json:"fit"`
	// Width and Height are the box, in pixels, 1..12000.
	Width  int `json:"width"`
	Height int `json:"height"`
	// Metadata is "keep", "copyright" or "none". The emulator re-encodes
	// every variant, so it always strips metadata whatever this says.
	Metadata string `json:"metadata"`
	// BrowserTTL, in seconds (3600..31536000), overrides the account's
	// browser TTL for public deliveries of this variant; 0 means unset.
	BrowserTTL int `json:"browser_ttl,omitempty"`
}

var (
	fits          = map[string]bool{FitScaleDown: true, FitContain: true, FitCover: true, FitCrop: true, FitPad: true}
	metadataModes = map[string]bool{"keep": true, "copyright": true, "none": true}
)

func validateVariant(v Variant) *codedError {
	bad := func(msg string) *codedError { return errf(http.StatusBadRequest, codeBadRequest, msg) }
	o := v.Options
	switch {
	case len(v.ID) > MaxVariantNameBytes || !imageref.IsURLSafe(v.ID):
		return bad("Variant name must be 1 to 99 characters of [A-Za-z0-9_-]")
	case !fits[o.Fit]:
		return bad("Variant fit must be scale-down, contain, cover, crop or pad")
	case o.Width < 1 || o.Width > MaxSide || o.Height < 1 || o.Height > MaxSide:
		return bad("Variant width and height must be between 1 and 12000")
	case !metadataModes[o.Metadata]:
		return bad("Variant metadata must be keep, copyright or none")
	case o.BrowserTTL != 0 && (o.BrowserTTL < 3600 || o.BrowserTTL > 31536000):
		return bad("Variant browser_ttl must be between 3600 and 31536000 seconds")
	}
	return nil
}

// variantBody is the JSON body of POST and PATCH on variants. Pointers tell
// a missing field from a zero one: the options are all required.
type variantBody struct {
	ID      *string `json:"id"`
	Options *struct {
		Fit        *string `json:"fit"`
		Width      *int    `json:"width"`
		Height     *int    `json:"height"`
		Metadata   *string `json:"metadata"`
		BrowserTTL *int    `json:"browser_ttl"`
	} `json:"options"`
	NeverRequireSignedURLs *bool `json:"neverRequireSignedURLs"`
}

// options returns the variant the body describes on top of base.
func (b variantBody) variant(base Variant) (Variant, *codedError) {
	o := b.Options
	if o == nil || o.Fit == nil || o.Width == nil || o.Height == nil || o.Metadata == nil {
		return base, errf(http.StatusBadRequest, codeBadRequest, "Variant options fit, width, height and metadata are required")
	}
	base.Options = VariantOptions{Fit: *o.Fit, Width: *o.Width, Height: *o.Height, Metadata: *o.Metadata}
	if o.BrowserTTL != nil {
		base.Options.BrowserTTL = *o.BrowserTTL
	}
	if b.NeverRequireSignedURLs != nil {
		base.NeverRequireSignedURLs = *b.NeverRequireSignedURLs
	}
	return base, validateVariant(base)
}

// variantByName returns the named variant, if it exists.
func (e *Emulator) variantByName(name string) (Variant, bool) {
	st, _ := e.store.State()
	i := slices.IndexFunc(st.Variants, func(v Variant) bool { return v.ID == name })
	if i < 0 {
		return Variant{}, false
	}
	return st.Variants[i], true
}

var errVariantNotFound = errf(http.StatusNotFound, codeVariantNotFound, "Variant not found")

func (e *Emulator) listVariants(r *http.Request) (any, []byte, *codedError) {
	st, _ := e.store.State()
	m := make(map[string]Variant, len(st.Variants))
	for _, v := range st.Variants {
		m[v.ID] = v
	}
	return map[string]any{"variants": m}, nil, nil
}

func (e *Emulator) getVariant(name string) (any, []byte, *codedError) {
	v, ok := e.variantByName(name)
	if !ok {
		return nil, nil, errVariantNotFound
	}
	return map[string]any{"variant": v}, nil, nil
}

func (e *Emulator) createVariant(r *http.Request) (any, []byte, *codedError) {
	var body variantBody
	if cerr := decodeJSON(r, &body); cerr != nil {
		return nil, nil, cerr
	}
	if body.ID == nil {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "Variant id is required")
	}
	v, cerr := body.variant(Variant{ID: *body.ID})
	if cerr != nil {
		return nil, nil, cerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st, _ := e.store.State()
	if slices.ContainsFunc(st.Variants, func(o Variant) bool { return o.ID == v.ID }) {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "A variant with this name already exists")
	}
	if len(st.Variants) >= MaxVariants {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "An account may have at most 100 variants")
	}
	st.Variants = append(st.Variants, v)
	if err := e.store.PutState(st); err != nil {
		return nil, nil, errInternal
	}
	return map[string]any{"variant": v}, nil, nil
}

func (e *Emulator) updateVariant(r *http.Request, name string) (any, []byte, *codedError) {
	var body variantBody
	if cerr := decodeJSON(r, &body); cerr != nil {
		return nil, nil, cerr
	}
	if body.ID != nil && *body.ID != name {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "A variant cannot be renamed")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st, _ := e.store.State()
	i := slices.IndexFunc(st.Variants, func(v Variant) bool { return v.ID == name })
	if i < 0 {
		return nil, nil, errVariantNotFound
	}
	v, cerr := body.variant(st.Variants[i])
	if cerr != nil {
		return nil, nil, cerr
	}
	st.Variants[i] = v
	if err := e.store.PutState(st); err != nil {
		return nil, nil, errInternal
	}
	// Rendered copies are keyed by geometry, so the old ones just age out.
	return map[string]any{"variant": v}, nil, nil
}

func (e *Emulator) deleteVariant(name string) (any, []byte, *codedError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, _ := e.store.State()
	i := slices.IndexFunc(st.Variants, func(v Variant) bool { return v.ID == name })
	if i < 0 {
		return nil, nil, errVariantNotFound
	}
	st.Variants = slices.Delete(st.Variants, i, i+1)
	if err := e.store.PutState(st); err != nil {
		return nil, nil, errInternal
	}
	return struct{}{}, nil, nil
}
