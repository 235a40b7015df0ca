package emulator

import (
	"encoding/binary"
	"errors"
)

// The memory bound (Config.MaxDecodeBytes) reads an image's declared size,
// but the time a decode takes also grows with what the header does not
// declare: Go's progressive JPEG decoder visits every block of the image
// once per scan, so a 99 KB 6000×6000 JPEG that repeats one empty scan 400
// times costs about 23 ms per scan, 9 s in all; a GIF may hold thousands
// of frames. These caps are counted by walking the file's structure, which
// costs microseconds per kilobyte and allocates nothing, before any
// decoder runs. Over a cap the image is refused as too large (5413 on
// upload, 9413 on delivery). Config.DecodeTimeout bounds what remains.
const (
	// MaxJPEGScans bounds the scans (SOS segments) of a JPEG. libjpeg's
	// standard progression has 10 scans for a colour image and 6 for a
	// greyscale one, and the scripts of jpegtran and mozjpeg stay in the
	// tens; a baseline JPEG has one scan per component at most.
	MaxJPEGScans = 64
	// MaxGIFFrames bounds the frames of an animated GIF.
	MaxGIFFrames = 1000
	// MaxGIFFramesArea bounds the sum of the areas of a GIF's frames:
	// Cloudflare counts every frame of an animation against the 100
	// megapixel limit (https://developers.cloudflare.com/images/get-started/limits/).
	MaxGIFFramesArea = MaxArea
	// MaxPNGChunks bounds the chunks of a PNG. A 10 MB file cut into
	// chunks of 1 KiB or more, far smaller than encoders write, has fewer.
	MaxPNGChunks = 10_000
)

// errTooComplex is an image over one of the structure caps above.
var errTooComplex = errors.New("image has more scans, frames or chunks than the emulator decodes")

// jpegStructure counts a JPEG's scans, walking its marker segments and
// skipping entropy-coded data (where 0xFF is followed by 0x00 stuffing, a
// restart marker or fill). A truncated or malformed file stops the walk;
// the decoder refuses it.
func jpegStructure(b []byte) error {
	scans := 0
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xff {
			return nil
		}
		m := b[i+1]
		switch {
		case m == 0xff: // fill byte
			i++
			continue
		case m == 0xd9: // end of image
			return nil
		case m == 0x01 || 0xd0 <= m && m <= 0xd7: // no length
			i += 2
			continue
		}
		i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
		if m != 0xda {
			continue
		}
		if scans++; scans > MaxJPEGScans {
			return errTooComplex
		}
		// Skip the scan's entropy-coded data, up to the next marker.
		for i+1 < len(b) && (b[i] != 0xff || b[i+1] == 0 || 0xd0 <= b[i+1] && b[i+1] <= 0xd7) {
			i++
		}
	}
	return nil
}

// gifStructure counts a GIF's frames and sums their areas, skipping colour
// tables, extensions and image data by their declared sizes.
func gifStructure(b []byte) error {
	const lsd = 13 // signature, version and logical screen descriptor
	if len(b) < lsd {
		return nil
	}
	i := lsd + colorTableBytes(b[10])
	frames, area := 0, int64(0)
	// subBlocks skips a chain of data sub-blocks ending in an empty one.
	subBlocks := func() {
		for i < len(b) && b[i] != 0 {
			i += 1 + int(b[i])
		}
		i++
	}
	for i < len(b) {
		switch b[i] {
		case 0x21: // extension: label, then sub-blocks
			i += 2
			subBlocks()
		case 0x2c: // image descriptor
			if i+10 > len(b) {
				return nil
			}
			w, h := binary.LittleEndian.Uint16(b[i+5:]), binary.LittleEndian.Uint16(b[i+7:])
			frames++
			area += int64(w) * int64(h)
			if frames > MaxGIFFrames || area > MaxGIFFramesArea {
				return errTooComplex
			}
			i += 10 + colorTableBytes(b[i+9])
			i++ // LZW minimum code size
			subBlocks()
		default: // trailer, or garbage the decoder refuses
			return nil
		}
	}
	return nil
}

// colorTableBytes is the size of the colour table a GIF packed-fields byte
// declares: 3 × 2^(n+1) bytes if its top bit is set.
func colorTableBytes(packed byte) int {
	if packed&0x80 == 0 {
		return 0
	}
	return 3 << (packed&7 + 1)
}

// pngStructure counts a PNG's chunks up to IEND.
func pngStructure(b []byte) error {
	chunks := 0
	for i := 8; i+8 <= len(b); {
		if chunks++; chunks > MaxPNGChunks {
			return errTooComplex
		}
		n := int64(binary.BigEndian.Uint32(b[i:]))
		if string(b[i+4:i+8]) == "IEND" {
			return nil
		}
		next := int64(i) + 12 + n
		if next > int64(len(b)) {
			return nil
		}
		i = int(next)
	}
	return nil
}
