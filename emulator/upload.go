package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// uploadForm is a parsed multipart upload body.
type uploadForm struct {
	fields map[string]string
	// lists holds the fields whose name ends in "[]", which may repeat:
	// the official TypeScript SDK sends an array that way.
	lists    map[string][]string
	file     []byte // nil if no file part was sent
	filename string
}

// maxParts bounds the number of multipart parts read from one request.
const maxParts = 64

// readForm reads a multipart/form-data body: every field bounded, the file
// part bounded by MaxFileBytes and the whole body by that plus a margin.
// withFile says whether a file part is allowed at all.
func readForm(r *http.Request, withFile bool) (*uploadForm, *codedError) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, errf(http.StatusUnsupportedMediaType, codeNotMultipart, "Images must be uploaded as multipart/form-data")
	}
	limit := int64(maxFormOverhead)
	if withFile {
		limit += MaxFileBytes
	}
	r.Body = http.MaxBytesReader(nil, r.Body, limit)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, errf(http.StatusUnsupportedMediaType, codeNotMultipart, "Images must be uploaded as multipart/form-data")
	}
	f := &uploadForm{fields: map[string]string{}, lists: map[string][]string{}}
	for n := 0; ; n++ {
		if n == maxParts {
			return nil, errf(http.StatusBadRequest, codeBadRequest, "Too many form fields")
		}
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, receiveError(err)
		}
		name := part.FormName()
		if name == "file" {
			if !withFile {
				part.Close()
				return nil, errf(http.StatusBadRequest, codeBadRequest, "A file is not accepted here")
			}
			if f.file != nil {
				return nil, errf(http.StatusBadRequest, codeBadRequest, "Only one file may be uploaded")
			}
			b, err := io.ReadAll(io.LimitReader(part, MaxFileBytes+1))
			if err != nil {
				return nil, receiveError(err)
			}
			if len(b) > MaxFileBytes {
				return nil, errTooBig
			}
			f.file = b
			f.filename = cleanFilename(part.FileName())
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, maxFieldBytes+1))
		if err != nil {
			return nil, receiveError(err)
		}
		if len(b) > maxFieldBytes {
			return nil, errf(http.StatusBadRequest, codeBadRequest, "A form field is too long")
		}
		if strings.HasSuffix(name, "[]") {
			f.lists[name] = append(f.lists[name], string(b))
			continue
		}
		if _, dup := f.fields[name]; dup {
			return nil, errf(http.StatusBadRequest, codeBadRequest, "A form field was sent more than once")
		}
		f.fields[name] = string(b)
	}
	return f, nil
}

var errTooBig = errf(http.StatusRequestEntityTooLarge, codeTooLarge, "Maximum image size of 10 MB reached")

// receiveError maps a body read failure: a body over the limit is 5413,
// anything else (truncated or malformed multipart) is 5450.
func receiveError(err error) *codedError {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return errTooBig
	}
	return errf(http.StatusBadRequest, codeUploadReceive, "Error while receiving the upload")
}

// cleanFilename keeps the base name of a client-supplied filename, bounded.
func cleanFilename(s string) string {
	if i := strings.LastIndexAny(s, `/\`); i >= 0 {
		s = s[i+1:]
	}
	for len(s) > MaxFilenameBytes {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// imageOptions are the per-image settings an upload may carry.
type imageOptions struct {
	id            string
	requireSigned bool
	meta          json.RawMessage
	creator       string
}

// imageOptions validates id, requireSignedURLs, metadata and creator, and
// refuses any field that is neither one of those nor in extra: a field the
// emulator does not understand would otherwise be dropped silently.
func (f *uploadForm) imageOptions(extra ...string) (imageOptions, *codedError) {
	var o imageOptions
	for name := range f.fields {
		if !isMetadataField(name) && !slices.Contains(imageFields, name) && !slices.Contains(extra, name) {
			return o, errUnknownField
		}
	}
	for name := range f.lists {
		if !isMetadataField(name) {
			return o, errUnknownField
		}
	}
	if id, ok := f.fields["id"]; ok {
		if cerr := validateCustomID(id); cerr != nil {
			return o, cerr
		}
		o.id = id
	}
	if s, ok := f.fields["requireSignedURLs"]; ok {
		b, err := strconv.ParseBool(s)
		if err != nil {
			return o, errf(http.StatusBadRequest, codeBadRequest, "requireSignedURLs must be true or false")
		}
		o.requireSigned = b
	}
	if o.id != "" && o.requireSigned {
		return o, errCustomIDPrivate
	}
	raw, cerr := f.metadataJSON()
	if cerr != nil {
		return o, cerr
	}
	if raw != nil {
		if o.meta, cerr = parseMetadata(raw); cerr != nil {
			return o, cerr
		}
	}
	if c, ok := f.fields["creator"]; ok {
		if len(c) > MaxCreatorBytes {
			return o, errf(http.StatusBadRequest, codeBadRequest, "Creator must not exceed 1024 bytes")
		}
		o.creator = c
	}
	return o, nil
}

// imageFields are the fields every upload form may carry besides metadata.
var imageFields = []string{"id", "requireSignedURLs", "creator"}

var (
	errUnknownField   = errf(http.StatusBadRequest, codeBadRequest, "Unknown form field")
	errBadMetadataKey = errf(http.StatusBadRequest, codeBadRequest, "Malformed metadata field")
	errMetadataForms  = errf(http.StatusBadRequest, codeBadRequest, "Metadata was sent in more than one form")
)

// isMetadataField reports whether name carries metadata in one of the
// three forms metadataJSON reads.
func isMetadataField(name string) bool {
	return name == "metadata" || strings.HasPrefix(name, "metadata.") || strings.HasPrefix(name, "metadata[")
}

// metadataJSON returns the metadata as JSON, or nil if none was sent. It
// reads any one of three forms:
//
//	metadata=<JSON object>                    curl, cfapi, the API reference
//	metadata.<key>=<value>                    the official Go SDK, for a map
//	metadata[<key>]=<value>, metadata[a][b]=c the official TypeScript SDK,
//	metadata[<key>][]=<value> (repeated)      for an object and an array
//
// In the last two, every value is a string, as the SDKs send it.
func (f *uploadForm) metadataJSON() ([]byte, *codedError) {
	tree := map[string]any{}
	forms := 0
	var dotted, bracketed bool
	for name, v := range f.fields {
		switch {
		case strings.HasPrefix(name, "metadata."):
			dotted = true
			if cerr := setPath(tree, strings.Split(strings.TrimPrefix(name, "metadata."), "."), v); cerr != nil {
				return nil, cerr
			}
		case strings.HasPrefix(name, "metadata["):
			bracketed = true
			path, ok := bracketPath(name)
			if !ok {
				return nil, errBadMetadataKey
			}
			if cerr := setPath(tree, path, v); cerr != nil {
				return nil, cerr
			}
		}
	}
	for name, vs := range f.lists {
		bracketed = true
		path, ok := bracketPath(strings.TrimSuffix(name, "[]"))
		if !ok {
			return nil, errBadMetadataKey
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		if cerr := setPath(tree, path, list); cerr != nil {
			return nil, cerr
		}
	}
	s, plain := f.fields["metadata"]
	for _, b := range []bool{plain, dotted, bracketed} {
		if b {
			forms++
		}
	}
	switch {
	case forms > 1:
		return nil, errMetadataForms
	case plain:
		return []byte(s), nil
	case len(tree) > 0:
		b, _ := json.Marshal(tree)
		return b, nil
	}
	return nil, nil
}

// bracketPath splits "metadata[a][b]" into [a b]. Every key must be
// non-empty and free of brackets, so that one field name means one path.
func bracketPath(name string) ([]string, bool) {
	rest, ok := strings.CutPrefix(name, "metadata")
	if !ok || rest == "" {
		return nil, false
	}
	var path []string
	for rest != "" {
		inner, after, ok := strings.Cut(strings.TrimPrefix(rest, "["), "]")
		if !ok || rest[0] != '[' || inner == "" || strings.Contains(inner, "[") {
			return nil, false
		}
		path = append(path, inner)
		rest = after
	}
	return path, true
}

// setPath stores v at path in m ([a b] → {"a":{"b":v}}). A path that is
// empty, has an empty key, or meets a value already set is malformed.
func setPath(m map[string]any, path []string, v any) *codedError {
	for i, p := range path {
		if p == "" {
			return errBadMetadataKey
		}
		if i == len(path)-1 {
			if _, exists := m[p]; exists {
				return errBadMetadataKey
			}
			m[p] = v
			return nil
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			if _, exists := m[p]; exists {
				return errBadMetadataKey
			}
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	return errBadMetadataKey
}

// checkImage accepts JPEG, PNG, GIF and WebP within the size limits. The
// header's declared dimensions, the memory decoding would take and the
// structure caps (scans, frames, chunks) are checked before any pixel is
// allocated, so a decompression bomb costs nothing; then the whole image is
// decoded once, in a decode slot and within Config.DecodeTimeout (or until
// ctx, the client's request, ends), so that a truncated or corrupt file is
// refused at upload rather than failing every delivery.
func (e *Emulator) checkImage(ctx context.Context, b []byte) *codedError {
	hd, err := readHeader(b)
	if errors.Is(err, errTooComplex) {
		return errTooComplexUpload
	}
	if err != nil {
		return errUnsupported
	}
	if cerr := checkDimensions(hd.Width, hd.Height); cerr != nil {
		return cerr
	}
	if hd.decodeBytes > e.cfg.MaxDecodeBytes {
		return errf(http.StatusRequestEntityTooLarge, codeTooLarge,
			fmt.Sprintf("Image would take more than %d MiB of memory to decode", e.cfg.MaxDecodeBytes>>20))
	}
	release := e.decodeSlot()
	defer release()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.DecodeTimeout)
	defer cancel()
	if _, err := decodeWithin(ctx, hd, b); errors.Is(err, errDecodeTimeout) {
		return errSlowUpload
	} else if err != nil {
		return errUnsupported
	}
	return nil
}

var (
	errTooComplexUpload = errf(http.StatusRequestEntityTooLarge, codeTooLarge,
		"Image has too many scans, frames or chunks")
	errSlowUpload = errf(http.StatusRequestEntityTooLarge, codeTooLarge,
		"Image takes too long to decode")
)

var errUnsupported = errf(http.StatusUnsupportedMediaType, codeBadFormat, "Unsupported image format or corrupt image; accepted: image/jpeg, image/png, image/gif, image/webp")

// createDirectUpload is POST images/v2/direct_upload: it creates a draft
// and returns its one-time upload URL.
func (e *Emulator) createDirectUpload(r *http.Request) (any, []byte, *codedError) {
	form, cerr := readForm(r, false)
	if cerr != nil {
		return nil, nil, cerr
	}
	opts, cerr := form.imageOptions("expiry")
	if cerr != nil {
		return nil, nil, cerr
	}
	now := e.now()
	expiry := now.Add(DefaultUploadExpiry)
	if s, ok := form.fields["expiry"]; ok {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "expiry must be an RFC 3339 date-time")
		}
		if t.Before(now.Add(MinUploadExpiry)) || t.After(now.Add(MaxUploadExpiry)) {
			return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "expiry must be between 2 minutes and 6 hours from now")
		}
		expiry = t
	}
	rec, cerr := e.insert(Record{
		ID:                opts.id,
		Uploaded:          now,
		RequireSignedURLs: opts.requireSigned,
		Meta:              opts.meta,
		Creator:           opts.creator,
		Draft:             true,
		Expiry:            expiry,
	}, nil)
	if cerr != nil {
		return nil, nil, cerr
	}
	return struct {
		ID        string `json:"id"`
		UploadURL string `json:"uploadURL"`
	}{rec.ID, e.baseURL(r) + "/" + e.cfg.AccountHash + "/" + escapeID(rec.ID)}, nullInfo, nil
}

// serveUpload serves the upload host: POST /<account_hash>/<image_id>, the
// one-time URL a direct upload returned. It takes no credentials (the URL
// is the capability), so browsers may call it cross-origin.
func (e *Emulator) serveUpload(w http.ResponseWriter, r *http.Request, p string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "POST")
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	hash, rawID, ok := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if !ok || hash != e.cfg.AccountHash {
		writeError(w, errf(http.StatusForbidden, 5403, "The given account is not valid or is not authorized to access this service"))
		return
	}
	id, ok := unescapeID(rawID)
	if !ok {
		writeError(w, errUploadURL)
		return
	}
	if cerr := e.checkUploadURL(id); cerr != nil {
		writeError(w, cerr)
		return
	}
	form, cerr := readForm(r, true)
	if cerr != nil {
		writeError(w, cerr)
		return
	}
	if form.file == nil {
		writeError(w, errf(http.StatusBadRequest, codeBadRequest, "A file is required"))
		return
	}
	if cerr := e.checkImage(r.Context(), form.file); cerr != nil {
		writeError(w, cerr)
		return
	}

	// Claim the draft only now, under the lock: a rejected file does not
	// use up the URL, and of two concurrent uploads exactly one wins.
	e.mu.Lock()
	if cerr := e.checkUploadURL(id); cerr != nil {
		e.mu.Unlock()
		writeError(w, cerr)
		return
	}
	rec, _ := e.store.Get(id)
	rec.Draft = false
	rec.Expiry = time.Time{}
	rec.Filename = form.filename
	rec.Uploaded = e.now()
	rec, err := e.store.Put(rec, form.file)
	e.mu.Unlock()
	if err != nil {
		writeError(w, errInternal)
		return
	}
	writeResult(w, http.StatusOK, e.view(r, rec), nullInfo)
}

var (
	errUploadURL     = errf(http.StatusNotFound, codeImageNotFound, "Upload URL not found")
	errUploadUsed    = errf(http.StatusConflict, codeBadRequest, "Upload URL has already been used")
	errUploadExpired = errf(http.StatusGone, codeBadRequest, "Upload URL has expired")
)

// checkUploadURL reports whether id names a draft whose upload URL is
// still usable. An expired draft is deleted, so it answers 410 once and
// 404 after.
func (e *Emulator) checkUploadURL(id string) *codedError {
	rec, ok := e.store.Get(id)
	switch {
	case !ok:
		return errUploadURL
	case !rec.Draft:
		return errUploadUsed
	case !e.now().Before(rec.Expiry):
		e.store.Delete(id)
		return errUploadExpired
	}
	return nil
}
