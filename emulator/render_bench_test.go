package emulator

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"testing"

	"github.com/gen2brain/avif"
	"github.com/gen2brain/webp"
)

// BenchmarkWebPEncode is the WebP encoder alone on a 1024×768 image.
func BenchmarkWebPEncode(b *testing.B) {
	src := photo(1024, 768)
	var size int
	for b.Loop() {
		var out bytes.Buffer
		if err := webp.Encode(&out, src, webp.Options{Quality: webpQuality}); err != nil {
			b.Fatal(err)
		}
		size = out.Len()
	}
	b.ReportMetric(float64(size), "bytes/image")
}

// BenchmarkAVIFEncode is the AVIF encoder alone on a 1024×768 image, with
// the options deliveries use. The first encode in a process also compiles
// the encoder's WebAssembly module (unless a system libavif is found);
// run with -benchtime 1x in a fresh process to see that cost.
func BenchmarkAVIFEncode(b *testing.B) {
	src := photo(1024, 768)
	var size int
	for b.Loop() {
		var out bytes.Buffer
		if err := avif.Encode(&out, src, avifOptions); err != nil {
			b.Fatal(err)
		}
		size = out.Len()
	}
	b.ReportMetric(float64(size), "bytes/image")
}

// photo is a w×h picture of smooth gradients plus fine texture, which
// compresses like a photograph rather than like a flat test card.
func photo(w, h int) *image.NRGBA {
	src := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			src.Set(x, y, color.NRGBA{uint8(x / 4), uint8(y / 3), uint8((x*y)>>6 ^ x), 255})
		}
	}
	return src
}

// BenchmarkRender renders a 1024×768 JPEG photo-like source at its own
// size (the public variant of it), as JPEG and as WebP: decode, copy and
// encode, the work of one render-cache miss. The first WebP encode in a
// process also compiles the encoder's WebAssembly module; run with
// -benchtime 1x in a fresh process to see that cost.
func BenchmarkRender(b *testing.B) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, photo(1024, 768), &jpeg.Options{Quality: 90}); err != nil {
		b.Fatal(err)
	}
	hd, err := readHeader(buf.Bytes())
	if err != nil {
		b.Fatal(err)
	}
	g := fitGeometry(FitScaleDown, hd.Width, hd.Height, 1366, 768)
	for _, tc := range []struct {
		name string
		as   outputFormat
	}{{"avif", formatAVIF}, {"webp", formatWebP}, {"jpeg", formatOriginal}} {
		b.Run(tc.name, func(b *testing.B) {
			var size int
			for b.Loop() {
				out, err := render(context.Background(), buf.Bytes(), hd, g, tc.as)
				if err != nil {
					b.Fatal(err)
				}
				size = len(out.body)
			}
			b.ReportMetric(float64(size), "bytes/image")
		})
	}
}
