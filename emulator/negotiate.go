package emulator

import (
	"github.com/gen2brain/avif"
	"github.com/gen2brain/webp"

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

// PrepareEncoders compiles the WebAssembly modules of the AVIF and WebP
// encoders, which otherwise happens in the first delivery in each format
// in the process (several seconds for AVIF on a small machine: long
// enough for a proxy in front to time out). It is safe to call more than
// once and concurrently with deliveries; a caller that starts an emulator
// for users runs it in the background.
func PrepareEncoders() {
	avif.InitEncoder()
	webp.Init()
}
