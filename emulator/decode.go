package emulator

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/webp"
)

// DefaultMaxDecodeBytes bounds the memory one decode may take, and
// separately the memory one resize may take (see Config.MaxDecodeBytes).
const DefaultMaxDecodeBytes = 256 << 20

// Each accepted format is decoded by a decoder named here, not through the
// image package's registry: another package linked into the binary may
// register a second decoder for the same magic bytes (a WebP encoder
// library does), and the cost estimates below are for these decoders.
type codec struct {
	name   string
	magic  string // '?' matches any byte
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
	// structure checks what the header does not declare (see
	// checkStructure); nil for a format with nothing to count.
	structure func([]byte) error
}

var codecs = []codec{
	{"png", "\x89PNG\r\n\x1a\n", png.DecodeConfig, png.Decode, pngStructure},
	{"jpeg", "\xff\xd8", jpeg.DecodeConfig, jpeg.Decode, jpegStructure},
	{"gif", "GIF8", gif.DecodeConfig, gif.Decode, gifStructure},
	{"webp", "RIFF????WEBPVP8", webp.DecodeConfig, webp.Decode, nil},
}

var errUnknownFormat = errors.New("not a JPEG, PNG, GIF or WebP image")

// sniff returns the codec whose magic bytes b starts with.
func sniff(b []byte) (codec, bool) {
next:
	for _, c := range codecs {
		if len(b) < len(c.magic) {
			continue
		}
		for i := 0; i < len(c.magic); i++ {
			if c.magic[i] != '?' && c.magic[i] != b[i] {
				continue next
			}
		}
		return c, true
	}
	return codec{}, false
}

// header is what the emulator knows about an image before decoding it.
type header struct {
	codec
	image.Config
	// decodeBytes estimates the memory the decoder allocates.
	decodeBytes int64
}

// readHeader identifies b's format, reads its declared size and counts
// what makes decoding slow beyond its size (see checkStructure), allocating
// nothing in proportion to the pixels. An image over a structure cap is
// errTooComplex.
func readHeader(b []byte) (header, error) {
	c, ok := sniff(b)
	if !ok {
		return header{}, errUnknownFormat
	}
	cfg, err := c.config(bytes.NewReader(b))
	if err != nil {
		return header{}, err
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return header{}, errUnknownFormat
	}
	if c.structure != nil {
		if err := c.structure(b); err != nil {
			return header{}, err
		}
	}
	return header{codec: c, Config: cfg, decodeBytes: decodeBytes(c.name, cfg, b)}, nil
}

// decodeBytes estimates the memory decoding takes: the pixel buffer of the
// decoder's colour model, plus what the format's decoder needs on top.
func decodeBytes(format string, cfg image.Config, b []byte) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	n := px * bytesPerPixel(cfg.ColorModel)
	switch {
	case format == "jpeg" && jpegProgressive(b):
		// A progressive JPEG also keeps every DCT coefficient (an int32
		// per sample) of every component until the last scan.
		n += px * 4 * jpegComponents(cfg.ColorModel)
	case format == "png" && pngInterlaced(b):
		// Adam7 decodes each pass into its own image before merging.
		n *= 2
	}
	return n
}

// bytesPerPixel is the size of one pixel in the image type the standard
// decoders return for model; an unknown model counts as the widest.
func bytesPerPixel(model color.Model) int64 {
	switch model {
	case color.GrayModel, color.AlphaModel:
		return 1
	case color.Gray16Model, color.Alpha16Model:
		return 2
	case color.YCbCrModel:
		return 3 // 4:4:4; subsampled images take less
	case color.RGBAModel, color.NRGBAModel, color.CMYKModel, color.NYCbCrAModel:
		return 4
	}
	if _, ok := model.(color.Palette); ok {
		return 1
	}
	return 8 // RGBA64, NRGBA64 and anything else
}

func jpegComponents(model color.Model) int64 {
	switch model {
	case color.GrayModel:
		return 1
	case color.CMYKModel:
		return 4
	}
	return 3
}

// jpegProgressive reports whether the first frame header of a JPEG is a
// progressive one (SOF2, or SOF6/SOF10/SOF14, which Go does not decode).
func jpegProgressive(b []byte) bool {
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xff {
			return false
		}
		m := b[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0xd8 || m == 0x01 || 0xd0 <= m && m <= 0xd7: // no length
			i += 2
			continue
		case m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce:
			return true
		case 0xc0 <= m && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc, m == 0xda:
			return false // another frame type, or scan data: baseline
		}
		i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
	}
	return false
}

// pngInterlaced reads the interlace method of the IHDR chunk, which a
// valid PNG has first, at a fixed offset.
func pngInterlaced(b []byte) bool {
	return len(b) > 28 && string(b[12:16]) == "IHDR" && b[28] == 1
}
