package emulator

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"

	"golang.org/x/image/draw"
)

// geometry is where a resized image lands: the source is scaled to
// (scaledW, scaledH), drawn at (dx, dy) on a canvas of (canvasW, canvasH).
// A negative offset crops; a positive one pads.
type geometry struct {
	scaledW, scaledH int
	canvasW, canvasH int
	dx, dy           int
	pad              bool
}

// fitGeometry computes the geometry of fit for a sw×sh source and a w×h
// box, following Cloudflare's fit semantics (CLOUDFLARE.md §4). A zero w or
// h leaves that side unconstrained.
func fitGeometry(fit string, sw, sh, w, h int) geometry {
	rw, rh := float64(w)/float64(sw), float64(h)/float64(sh)
	switch {
	case w == 0 && h == 0:
		rw, rh = 1, 1
	case w == 0:
		rw = rh
	case h == 0:
		rh = rw
	}
	both := w > 0 && h > 0
	scaled := func(s float64) (int, int) {
		return max(1, int(math.Round(float64(sw)*s))), max(1, int(math.Round(float64(sh)*s)))
	}
	var g geometry
	switch {
	case fit == FitCover && both:
		g.scaledW, g.scaledH = scaled(max(rw, rh))
		g.canvasW, g.canvasH = w, h
	case fit == FitCrop && both:
		g.scaledW, g.scaledH = scaled(min(1, max(rw, rh)))
		g.canvasW, g.canvasH = min(w, g.scaledW), min(h, g.scaledH)
	case fit == FitPad && both:
		g.scaledW, g.scaledH = scaled(min(rw, rh))
		g.canvasW, g.canvasH = w, h
		g.pad = true
	case fit == FitContain || fit == FitCover || fit == FitPad:
		g.scaledW, g.scaledH = scaled(min(rw, rh))
		g.canvasW, g.canvasH = g.scaledW, g.scaledH
	default: // scale-down, and crop with one side unconstrained
		g.scaledW, g.scaledH = scaled(min(rw, rh, 1))
		g.canvasW, g.canvasH = g.scaledW, g.scaledH
	}
	g.dx, g.dy = (g.canvasW-g.scaledW)/2, (g.canvasH-g.scaledH)/2
	return g
}

// rendered is an encoded variant, ready to send.
type rendered struct {
	body        []byte
	contentType string
	etag        string
}

var errCanvasTooLarge = errors.New("rendered variant would exceed the 100 megapixel limit")

// render decodes src, resizes it per fit into a w×h box and encodes it:
// PNG when the source is PNG or GIF or the result has transparency, JPEG
// otherwise. (Cloudflare would also consider AVIF and WebP from Accept.)
func render(src []byte, fit string, w, h int) (*rendered, error) {
	img, format, err := image.Decode(bytes.NewReader(src))
	if err != nil {
		return nil, fmt.Errorf("decoding image: %w", err)
	}
	b := img.Bounds()
	g := fitGeometry(fit, b.Dx(), b.Dy(), w, h)
	if int64(g.canvasW)*int64(g.canvasH) > MaxArea {
		return nil, errCanvasTooLarge
	}
	dst := image.NewNRGBA(image.Rect(0, 0, g.canvasW, g.canvasH))
	op := draw.Src
	if g.pad {
		// Cloudflare pads with white unless a background is given.
		draw.Draw(dst, dst.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
		op = draw.Over
	}
	target := image.Rect(g.dx, g.dy, g.dx+g.scaledW, g.dy+g.scaledH)
	if target.Size() == b.Size() {
		draw.Draw(dst, target, img, b.Min, op)
	} else {
		draw.CatmullRom.Scale(dst, target, img, b, op, nil)
	}

	var out bytes.Buffer
	ct := "image/jpeg"
	if format == "png" || format == "gif" || !dst.Opaque() {
		ct = "image/png"
		err = png.Encode(&out, dst)
	} else {
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 85})
	}
	if err != nil {
		return nil, fmt.Errorf("encoding variant: %w", err)
	}
	sum := sha256.Sum256(out.Bytes())
	return &rendered{
		body:        out.Bytes(),
		contentType: ct,
		etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
	}, nil
}
