package emulator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"

	"github.com/gen2brain/avif"
	"github.com/gen2brain/webp"
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
// box, following Cloudflare's fit semantics
// (https://developers.cloudflare.com/images/transform-images/transform-via-url/#fit).
// A zero w or h leaves that side unconstrained.
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
	format      string // "jpeg", "png", "webp" or "avif"
	etag        string
}

// errCanvasTooLarge is a variant whose output, or whose resizing, would
// take more than the limits allow. Delivery answers it with 9413.
var errCanvasTooLarge = errors.New("rendered variant would exceed the area or memory limit")

// resizeBytes estimates the memory resizing a w×h source into g takes on
// top of the decoded source: the pre-shrunk copy, the scaler's scratch
// buffer (x/image/draw's kernel scalers keep 32 bytes per pixel of a
// canvas as wide as the output and as tall as their source), the output
// canvas and, for WebP and AVIF, the encoder's copies of it.
func resizeBytes(w, h int, g geometry, format outputFormat) int64 {
	sw, sh := int64(w), int64(h)
	var n int64
	if iw, ih, ok := preShrink(w, h, g); ok {
		sw, sh = int64(iw), int64(ih)
		n += 4 * sw * sh
	}
	if sw != int64(g.scaledW) || sh != int64(g.scaledH) {
		n += 32 * int64(g.scaledW) * sh
	}
	canvas := 4 * int64(g.canvasW) * int64(g.canvasH)
	if format != formatOriginal {
		canvas *= 3
	}
	return n + canvas
}

// preShrink says whether a w×h source is first reduced, cheaply, to at
// most twice the scaled size before the Catmull-Rom pass: that pass's
// scratch buffer grows with the source's height, so a small variant of a
// large image would otherwise take hundreds of megabytes.
func preShrink(w, h int, g geometry) (iw, ih int, ok bool) {
	iw, ih = min(w, 2*g.scaledW), min(h, 2*g.scaledH)
	return iw, ih, iw < w || ih < h
}

// webpQuality is the quality of WebP variants, the JPEG one's equal.
const webpQuality = 85

// avifOptions encode AVIF variants: the encoder's default quality (60)
// at its fastest speed, since a delivery waits for it, and 4:2:0 chroma,
// which is the encoder's default only when no options are given (a zero
// Options means 4:4:4: slower and larger).
var avifOptions = avif.Options{
	Quality:           avif.DefaultQuality,
	QualityAlpha:      avif.DefaultQuality,
	Speed:             avif.DefaultSpeed,
	ChromaSubsampling: image.YCbCrSubsampleRatio420,
}

// render decodes src, resizes it per g and encodes it: AVIF or WebP when
// asked, else PNG when the source is PNG or GIF or the result has
// transparency, and JPEG otherwise. The caller has checked the memory the
// work takes and the AVIF side limit.
func render(ctx context.Context, src []byte, hd header, g geometry, as outputFormat) (*rendered, error) {
	img, err := decodeWithin(ctx, hd, src)
	if err != nil {
		return nil, fmt.Errorf("decoding image: %w", err)
	}
	b := img.Bounds()
	if iw, ih, ok := preShrink(b.Dx(), b.Dy(), g); ok {
		small := image.NewRGBA(image.Rect(0, 0, iw, ih))
		draw.ApproxBiLinear.Scale(small, small.Bounds(), img, b, draw.Src, nil)
		img, b = small, small.Bounds() // the decoded source can be freed now
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
	var format string
	switch {
	case as == formatAVIF:
		format = "avif"
		err = avif.Encode(&out, dst, avifOptions)
	case as == formatWebP:
		format = "webp"
		err = webp.Encode(&out, dst, webp.Options{Quality: webpQuality})
	case hd.name == "png" || hd.name == "gif" || !dst.Opaque():
		format = "png"
		err = png.Encode(&out, dst)
	default:
		format = "jpeg"
		err = jpeg.Encode(&out, dst, &jpeg.Options{Quality: 85})
	}
	if err != nil {
		return nil, fmt.Errorf("encoding variant: %w", err)
	}
	sum := sha256.Sum256(out.Bytes())
	return &rendered{
		body:        out.Bytes(),
		contentType: "image/" + format,
		format:      format,
		etag:        `"` + hex.EncodeToString(sum[:16]) + `"`,
	}, nil
}
