package emulator

import (
	"sync"

	"github.com/gen2brain/avif"

	"github.com/seed-a64a90cf/imagegate/internal/accept"
)

// outputFormat is what a delivery is encoded as.
type outputFormat string

const (
	// formatOriginal keeps the source's kind: PNG for PNG and GIF sources
	// and for results with transparency, JPEG otherwise.
	formatOriginal outputFormat = ""
	formatWebP     outputFormat = "webp"
	formatAVIF     outputFormat = "avif"
)

// MaxAVIFSide is the longest side Cloudflare encodes as AVIF; a larger
// variant is delivered as WebP instead
// (https://developers.cloudflare.com/images/get-started/limits/).
const MaxAVIFSide = 1200

// negotiate picks the format Cloudflare delivers for the Accept header's
// lines: AVIF if image/avif is named with q>0, else WebP if image/webp
// is, else the original
// (https://developers.cloudflare.com/images/manage-images/serve-images/serve-uploaded-images/).
// A wildcard does not count: browsers that decode AVIF or WebP name it,
// while a client that takes */* may not decode them. The header rules
// (weights, malformed q-values) are internal/accept's.
func negotiate(lines []string) outputFormat {
	switch {
	case accept.AcceptsLines(lines, "image/avif"):
		return formatAVIF
	case accept.AcceptsLines(lines, "image/webp"):
		return formatWebP
	}
	return formatOriginal
}

// forCanvas is f for a canvasW×canvasH output: AVIF over MaxAVIFSide on
// either side becomes WebP.
func (f outputFormat) forCanvas(canvasW, canvasH int) outputFormat {
	if f == formatAVIF && (canvasW > MaxAVIFSide || canvasH > MaxAVIFSide) {
		return formatWebP
	}
	return f
}

// The AVIF encoder is libavif compiled to WebAssembly, and compiling it
// takes seconds (about 4 s of CPU on a busy 2-core machine): long enough
// for a proxy in front, or a browser, to give up on the first AVIF
// delivery of a process. So it is compiled in the background from the
// first New, and until it is ready an AVIF request is answered as WebP:
// the fallback Cloudflare documents for an image it cannot encode as AVIF
// quickly (https://developers.cloudflare.com/images/get-started/limits/).
// Such answers are not kept in the render cache.
var (
	avifCompile sync.Once
	avifReady   = make(chan struct{})
)

// prepareAVIF starts compiling the AVIF encoder, once per process.
func prepareAVIF() {
	avifCompile.Do(func() {
		go func() {
			avif.InitEncoder()
			close(avifReady)
		}()
	})
}

// AVIFReady returns a channel that is closed once the AVIF encoder is
// compiled; until then AVIF requests are answered as WebP. New starts the
// compilation.
func AVIFReady() <-chan struct{} { return avifReady }

// avifIsReady reports whether the AVIF encoder is compiled.
func avifIsReady() bool {
	select {
	case <-avifReady:
		return true
	default:
		return false
	}
}
