package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"
)

// Cloudflare Images limits (https://developers.cloudflare.com/images/upload-images/).
// Where Cloudflare's unit is ambiguous the emulator takes the smaller
// reading, so anything it accepts Cloudflare accepts too.
const (
	// MaxFileBytes is the largest upload: "10 MB" read as 10,000,000 bytes.
	MaxFileBytes = 10_000_000
	// MaxSide is the longest side, in pixels, of an uploaded image.
	MaxSide = 12_000
	// MaxArea is the largest area, in pixels, of an uploaded image (100 MP).
	MaxArea = 100_000_000
	// MaxMetadataBytes bounds the JSON encoding of an image's metadata.
	MaxMetadataBytes = 1024
	// MaxCustomIDBytes bounds a custom image id ("1024 characters", read as bytes).
	MaxCustomIDBytes = 1024
	// MaxCreatorBytes bounds the creator field.
	MaxCreatorBytes = 1024
	// MaxFilenameBytes bounds the stored filename.
	MaxFilenameBytes = 255
	// MaxVariants is the number of named variants an account may hold.
	MaxVariants = 100
	// MaxVariantNameBytes bounds a variant name.
	MaxVariantNameBytes = 99
	// MaxKeys is the number of signing keys an account may hold.
	MaxKeys = 2
	// MaxKeyNameBytes bounds a signing key name.
	MaxKeyNameBytes = 20

	// MinUploadExpiry and MaxUploadExpiry bound a direct upload's expiry,
	// relative to the request; DefaultUploadExpiry applies when none is sent.
	MinUploadExpiry     = 2 * time.Minute
	MaxUploadExpiry     = 6 * time.Hour
	DefaultUploadExpiry = 30 * time.Minute

	// maxFieldBytes bounds every multipart field other than file; the
	// largest legitimate one (id, metadata, creator) is 1024 bytes.
	maxFieldBytes = 4096
	// maxFormOverhead is what a multipart body may carry beyond the file.
	maxFormOverhead = 64 << 10
	// maxJSONBody bounds PATCH/POST JSON bodies.
	maxJSONBody = 64 << 10
)

// checkDimensions enforces the side and area limits on a header's declared
// size, before any pixel is allocated.
func checkDimensions(width, height int) *codedError {
	switch {
	case width <= 0 || height <= 0:
		return errf(http.StatusUnsupportedMediaType, codeBadFormat, "Unsupported image format or corrupt image")
	case width > MaxSide || height > MaxSide:
		return errf(http.StatusRequestEntityTooLarge, codeTooLarge, "Image dimensions exceed the 12,000 pixel limit per side")
	case int64(width)*int64(height) > MaxArea:
		return errf(http.StatusRequestEntityTooLarge, codeTooLarge, "Image area exceeds the 100 megapixel limit")
	}
	return nil
}

// parseMetadata validates user metadata: a JSON object whose compact
// encoding is at most MaxMetadataBytes. It returns the compact encoding.
func parseMetadata(raw []byte) (json.RawMessage, *codedError) {
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, errf(http.StatusBadRequest, codeBadRequest, "Metadata must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, errf(http.StatusBadRequest, codeBadRequest, "Metadata must be a JSON object")
	}
	if buf.Len() > MaxMetadataBytes {
		return nil, errf(http.StatusBadRequest, codeBadRequest, "Metadata must not exceed 1024 bytes")
	}
	return buf.Bytes(), nil
}
