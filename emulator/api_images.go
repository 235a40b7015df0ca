package emulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// imageJSON is the image object of the API.
type imageJSON struct {
	ID                string          `json:"id"`
	Filename          string          `json:"filename"`
	Uploaded          string          `json:"uploaded"`
	RequireSignedURLs bool            `json:"requireSignedURLs"`
	Variants          []string        `json:"variants"`
	Meta              json.RawMessage `json:"meta,omitempty"`
	Creator           *string         `json:"creator"`
	Draft             bool            `json:"draft,omitempty"`
}

// uploadedFormat is Cloudflare's timestamp: RFC 3339, milliseconds, UTC.
const uploadedFormat = "2006-01-02T15:04:05.000Z"

// view renders rec as the API shows it.
func (e *Emulator) view(r *http.Request, rec Record) imageJSON {
	return e.viewer(r)(rec)
}

// viewer returns a function that renders records as the API shows them,
// with one full delivery URL per named variant, in name order. Lists use
// it to read the variants once rather than once per image.
func (e *Emulator) viewer(r *http.Request) func(Record) imageJSON {
	st, _ := e.store.State()
	names := make([]string, 0, len(st.Variants))
	for _, v := range st.Variants {
		names = append(names, v.ID)
	}
	slices.Sort(names)
	prefix := e.baseURL(r) + "/" + e.cfg.AccountHash + "/"
	return func(rec Record) imageJSON {
		base := prefix + escapeID(rec.ID) + "/"
		variants := make([]string, len(names))
		for i, n := range names {
			variants[i] = base + n
		}
		return imageJSON{
			ID:                rec.ID,
			Filename:          rec.Filename,
			Uploaded:          rec.Uploaded.UTC().Format(uploadedFormat),
			RequireSignedURLs: rec.RequireSignedURLs,
			Variants:          variants,
			Meta:              rec.Meta,
			Creator:           optional(rec.Creator),
			Draft:             rec.Draft,
		}
	}
}

// optional is nil for "", which the API shows as null.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// lookup returns the image or live draft with id. An expired draft is
// deleted on sight: its upload URL can no longer be used, so it is gone.
func (e *Emulator) lookup(id string) (Record, bool) {
	rec, ok := e.store.Get(id)
	if ok && rec.Draft && !e.now().Before(rec.Expiry) {
		e.mu.Lock()
		if cur, ok := e.store.Get(id); ok && cur.Draft && cur.Seq == rec.Seq {
			e.store.Delete(id)
		}
		e.mu.Unlock()
		return Record{}, false
	}
	return rec, ok
}

// uploadV1 is POST images/v1: a server-side upload of a file, or of the
// image at a url the emulator fetches.
func (e *Emulator) uploadV1(r *http.Request) (any, []byte, *codedError) {
	form, cerr := readForm(r, true)
	if cerr != nil {
		return nil, nil, cerr
	}
	opts, cerr := form.imageOptions("url")
	if cerr != nil {
		return nil, nil, cerr
	}
	file, filename := form.file, form.filename
	if raw, ok := form.fields["url"]; ok {
		if file != nil {
			return nil, nil, errURLAndFile
		}
		u, cerr := parseFetchURL(raw)
		if cerr != nil {
			return nil, nil, cerr
		}
		if file, filename, cerr = e.fetchImage(r.Context(), u); cerr != nil {
			return nil, nil, cerr
		}
	}
	if file == nil {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "A file or a url is required")
	}
	if cerr := e.checkImage(r.Context(), file); cerr != nil {
		return nil, nil, cerr
	}
	rec := Record{
		ID:                opts.id,
		Filename:          filename,
		Uploaded:          e.now(),
		RequireSignedURLs: opts.requireSigned,
		Meta:              opts.meta,
		Creator:           opts.creator,
	}
	rec, cerr = e.insert(rec, file)
	if cerr != nil {
		return nil, nil, cerr
	}
	return e.view(r, rec), nil, nil
}

// insert stores a new record, generating its id if it has none, refusing a
// custom id that is taken and an account that is full.
func (e *Emulator) insert(rec Record, blob []byte) (Record, *codedError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.countImages() >= e.cfg.ImageQuota {
		return Record{}, errf(http.StatusForbidden, codeServiceLimit, "The account has reached its image storage limit")
	}
	if rec.ID == "" {
		rec.ID = newImageID()
	} else if _, taken := e.lookupLocked(rec.ID); taken {
		return Record{}, errf(http.StatusBadRequest, codeBadRequest, "An image with this id already exists")
	}
	rec, err := e.store.Put(rec, blob)
	if err != nil {
		return Record{}, errInternal
	}
	return rec, nil
}

// lookupLocked is lookup for callers holding e.mu.
func (e *Emulator) lookupLocked(id string) (Record, bool) {
	rec, ok := e.store.Get(id)
	if ok && rec.Draft && !e.now().Before(rec.Expiry) {
		e.store.Delete(id)
		return Record{}, false
	}
	return rec, ok
}

// countImages counts stored images and live drafts, which both occupy an id.
func (e *Emulator) countImages() int {
	n := 0
	now := e.now()
	for _, rec := range e.store.List() {
		if !rec.Draft || now.Before(rec.Expiry) {
			n++
		}
	}
	return n
}

func (e *Emulator) getImage(r *http.Request, id string) (any, []byte, *codedError) {
	rec, ok := e.lookup(id)
	if !ok {
		return nil, nil, errNotFound
	}
	return e.view(r, rec), nil, nil
}

// updateImage is PATCH images/v1/<id>: fields left out are unchanged.
func (e *Emulator) updateImage(r *http.Request, id string) (any, []byte, *codedError) {
	var body struct {
		RequireSignedURLs *bool           `json:"requireSignedURLs"`
		Metadata          json.RawMessage `json:"metadata"`
		Creator           *string         `json:"creator"`
	}
	if cerr := decodeJSON(r, &body); cerr != nil {
		return nil, nil, cerr
	}
	var meta json.RawMessage
	if body.Metadata != nil && string(body.Metadata) != "null" {
		var cerr *codedError
		if meta, cerr = parseMetadata(body.Metadata); cerr != nil {
			return nil, nil, cerr
		}
	}
	if body.Creator != nil && len(*body.Creator) > MaxCreatorBytes {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "Creator must not exceed 1024 bytes")
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	rec, ok := e.lookupLocked(id)
	if !ok {
		return nil, nil, errNotFound
	}
	if body.RequireSignedURLs != nil {
		if *body.RequireSignedURLs && !imageref.IsUUID(rec.ID) {
			return nil, nil, errCustomIDPrivate
		}
		rec.RequireSignedURLs = *body.RequireSignedURLs
	}
	if meta != nil {
		rec.Meta = meta
	}
	if body.Creator != nil {
		rec.Creator = *body.Creator
	}
	rec, err := e.store.Put(rec, nil)
	if err != nil {
		return nil, nil, errInternal
	}
	return e.view(r, rec), nil, nil
}

var errCustomIDPrivate = errf(http.StatusBadRequest, codeBadRequest, "Images with a custom id cannot require signed URLs")

func (e *Emulator) deleteImage(id string) (any, []byte, *codedError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.lookupLocked(id); !ok {
		return nil, nil, errNotFound
	}
	if err := e.store.Delete(id); err != nil {
		return nil, nil, errInternal
	}
	return struct{}{}, nil, nil
}

// blob is GET images/v1/<id>/blob. The API writes the bytes itself, so
// this returns a rawBody that serveAPI passes through.
func (e *Emulator) blob(id string) (any, []byte, *codedError) {
	rec, ok := e.lookup(id)
	if !ok || rec.Draft {
		return nil, nil, errNotFound
	}
	b, err := e.store.Blob(id)
	if err != nil {
		return nil, nil, errNotFound
	}
	return rawBody(b), nil, nil
}

// rawBody is a result written as-is rather than wrapped in an envelope.
type rawBody []byte

func (e *Emulator) stats(r *http.Request) (any, []byte, *codedError) {
	n := 0
	for _, rec := range e.store.List() {
		if !rec.Draft {
			n++
		}
	}
	type count struct {
		Allowed int `json:"allowed"`
		Current int `json:"current"`
	}
	return struct {
		Count count `json:"count"`
	}{count{Allowed: e.cfg.ImageQuota, Current: n}}, nil, nil
}

// listed returns the uploaded (non-draft) images, newest first (or oldest
// first if asc), optionally only those of one creator.
func (e *Emulator) listed(r *http.Request, asc bool) []Record {
	q := r.URL.Query()
	creator, byCreator := q.Get("creator"), q.Has("creator")
	recs := slices.DeleteFunc(e.store.List(), func(rec Record) bool {
		return rec.Draft || byCreator && rec.Creator != creator
	})
	slices.SortFunc(recs, func(a, b Record) int {
		c := a.Uploaded.Compare(b.Uploaded)
		if c == 0 {
			c = cmpUint(a.Seq, b.Seq)
		}
		if asc {
			return c
		}
		return -c
	})
	return recs
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// listV1 is GET images/v1?page=&per_page= (per_page 10..100, default 100).
func (e *Emulator) listV1(r *http.Request) (any, []byte, *codedError) {
	q := r.URL.Query()
	page, cerr := intParam(q.Get("page"), 1, 1, 1<<30)
	if cerr != nil {
		return nil, nil, cerr
	}
	perPage, cerr := intParam(q.Get("per_page"), 100, 10, 100)
	if cerr != nil {
		return nil, nil, cerr
	}
	recs := e.listed(r, false)
	start := min((page-1)*perPage, len(recs))
	end := min(start+perPage, len(recs))
	view := e.viewer(r)
	images := make([]imageJSON, 0, end-start)
	for _, rec := range recs[start:end] {
		images = append(images, view(rec))
	}
	info, _ := json.Marshal(map[string]int{
		"page": page, "per_page": perPage, "count": len(images), "total_count": len(recs),
	})
	return map[string]any{"images": images}, info, nil
}

// listV2 is GET images/v2?continuation_token=&per_page=&sort_order=.
func (e *Emulator) listV2(r *http.Request) (any, []byte, *codedError) {
	q := r.URL.Query()
	for k := range q {
		if strings.HasPrefix(k, "meta.") {
			return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "Metadata filters are not supported by the emulator")
		}
	}
	perPage, cerr := intParam(q.Get("per_page"), 1000, 10, 10000)
	if cerr != nil {
		return nil, nil, cerr
	}
	var asc bool
	switch q.Get("sort_order") {
	case "", "desc":
	case "asc":
		asc = true
	default:
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "sort_order must be asc or desc")
	}
	recs := e.listed(r, asc)
	if tok := q.Get("continuation_token"); tok != "" {
		at, seq, ok := parseToken(tok)
		if !ok {
			return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "Invalid continuation token")
		}
		// Resume strictly after the last image the previous page returned.
		i, _ := slices.BinarySearchFunc(recs, struct{}{}, func(rec Record, _ struct{}) int {
			c := rec.Uploaded.Compare(at)
			if c == 0 {
				c = cmpUint(rec.Seq, seq)
			}
			if !asc {
				c = -c
			}
			if c <= 0 {
				return -1
			}
			return 1
		})
		recs = recs[i:]
	}
	page := recs[:min(perPage, len(recs))]
	view := e.viewer(r)
	images := make([]imageJSON, 0, len(page))
	for _, rec := range page {
		images = append(images, view(rec))
	}
	var token *string
	if len(recs) > len(page) {
		last := page[len(page)-1]
		t := makeToken(last.Uploaded, last.Seq)
		token = &t
	}
	return struct {
		Images            []imageJSON `json:"images"`
		ContinuationToken *string     `json:"continuation_token"`
	}{images, token}, nil, nil
}

// A continuation token is the sort key of the last image returned, so that
// pages stay consistent while images are added or deleted.
func makeToken(at time.Time, seq uint64) string {
	return base64.RawURLEncoding.EncodeToString(
		[]byte(strconv.FormatInt(at.UnixNano(), 10) + "." + strconv.FormatUint(seq, 10)))
}

func parseToken(tok string) (time.Time, uint64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return time.Time{}, 0, false
	}
	ns, seq, ok := strings.Cut(string(b), ".")
	if !ok {
		return time.Time{}, 0, false
	}
	n, err1 := strconv.ParseInt(ns, 10, 64)
	s, err2 := strconv.ParseUint(seq, 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, 0, false
	}
	return time.Unix(0, n), s, true
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(s string, def, lo, hi int) (int, *codedError) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, errf(http.StatusBadRequest, codeBadRequest, "Pagination parameter out of range")
	}
	return n, nil
}

// decodeJSON reads a bounded JSON object body, refusing unknown fields.
func decodeJSON(r *http.Request, v any) *codedError {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, codeBadRequest, "Malformed JSON body")
	}
	return nil
}
