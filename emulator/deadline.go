package emulator

import (
	"context"
	"errors"
	"image"
	"io"
	"time"
)

// DefaultDecodeTimeout bounds one decode (see Config.DecodeTimeout).
const DefaultDecodeTimeout = 10 * time.Second

// errDecodeTimeout is a decode stopped at its deadline, or because the
// client that asked for it went away. It is answered as "too large".
var errDecodeTimeout = errors.New("decoding the image took longer than the emulator allows")

// readPiece is the most a decoder is handed per Read. The standard
// decoders do their work between reads, so a decode whose deadline passes
// stops within the work that one piece of input can cause: with the scan
// cap, about one scan of a JPEG.
const readPiece = 64

// deadlineReader hands a decoder its input readPiece bytes at a time and
// fails every Read once ctx is done. A decoder cannot continue without
// input, so it returns, in the caller's goroutine: no work is left behind
// running after the deadline, as it would be in a goroutine abandoned by a
// select on a timer.
type deadlineReader struct {
	ctx context.Context
	b   []byte
}

func (r *deadlineReader) Read(p []byte) (int, error) {
	if r.ctx.Err() != nil {
		return 0, errDecodeTimeout
	}
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), readPiece)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// decodeWithin decodes b, stopping when ctx is done. What a decoder does
// after its last read (a progressive JPEG's final inverse DCT, for one) is
// bounded by the image's area, which readHeader has checked.
func decodeWithin(ctx context.Context, hd header, b []byte) (image.Image, error) {
	img, err := hd.decode(&deadlineReader{ctx: ctx, b: b})
	if ctx.Err() != nil {
		return nil, errDecodeTimeout
	}
	return img, err
}
