package imageproxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// flightState is how far one upstream fetch has come.
type flightState uint8

const (
	stateHeaders flightState = iota // waiting for upstream's answer
	stateBody                       // 200 received; the body is arriving in buf
	stateDone                       // obj holds the whole body, stored in the tiers
	stateFailed                     // err is an *UpstreamError
	stateHandoff                    // body over MaxObject: the leader streams resp, others fetch their own
)

// meta is what a stored object keeps from upstream's response headers.
type meta struct {
	contentType  string
	etag         string // upstream's ETag if strong, else ""
	lastModified time.Time
	length       int64 // Content-Length, or -1 when unknown
}

// flight is one upstream fetch for one key and the requests it answers:
// the leader, whose miss started it, and the requests that joined while it
// ran. A goroutine of its own reads upstream (fetch), so neither a slow
// nor a departed client holds the fetch back; the requests follow its
// progress through the fields below.
type flight struct {
	start  time.Time
	purged atomic.Bool // Purge ran for the key: store nothing

	mu         sync.Mutex
	wake       chan struct{} // closed and replaced on every change below
	state      flightState
	meta       meta   // set from stateBody on
	buf        []byte // body bytes so far; bytes below len(buf) never change
	obj        *Object
	err        error
	refused    bool               // stateFailed: Config.Admit refused the fetch; err is its error
	resp       *http.Response     // stateHandoff: the response the leader streams
	cancel     context.CancelFunc // stateHandoff: ends resp's fetch
	leaderGone bool               // the leader returned: nobody takes a handoff
}

// signal wakes every request following f. f.mu must be held.
func (f *flight) signal() {
	close(f.wake)
	f.wake = make(chan struct{})
}

// leave records that the leader returned, and ends a handoff it did not
// take.
func (f *flight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leaderGone = true
	if f.resp != nil {
		f.resp.Body.Close()
		f.cancel()
		f.resp = nil
	}
}

// join returns the flight for k, making it, with leader true, if there is
// none.
func (p *Proxy) join(k Key) (f *flight, leader bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, ok := p.flights[k]; ok {
		return f, false
	}
	f = &flight{start: time.Now(), wake: make(chan struct{})}
	p.flights[k] = f
	return f, true
}

// forget removes f, if it is still k's flight, so later misses start a
// fetch of their own; stored reports that f left an object in the tiers.
func (p *Proxy) forget(k Key, f *flight, stored bool) {
	p.mu.Lock()
	if p.flights[k] == f {
		delete(p.flights, k)
	}
	if stored {
		p.stored.Add(1)
	}
	p.mu.Unlock()
}

// complete ends f with obj, already stored.
func (p *Proxy) complete(k Key, f *flight, obj *Object) {
	f.mu.Lock()
	f.state, f.obj, f.buf = stateDone, obj, nil
	f.signal()
	f.mu.Unlock()
	p.forget(k, f, true)
}

// fail ends f with err, an *UpstreamError. Nothing is stored. f is
// forgotten first: a request that arrives after the failure must fetch
// again, not be handed the old error.
func (p *Proxy) fail(k Key, f *flight, err error) {
	p.forget(k, f, false)
	f.mu.Lock()
	f.state, f.err, f.buf = stateFailed, err, nil
	f.signal()
	f.mu.Unlock()
}

// refuse ends f with err, the refusal of Config.Admit: its leader gets
// err, the others start over.
func (p *Proxy) refuse(k Key, f *flight, err error) {
	p.forget(k, f, false)
	f.mu.Lock()
	f.state, f.err, f.refused = stateFailed, err, true
	f.signal()
	f.mu.Unlock()
}

// handoff ends f for everyone but its leader, which gets resp to stream,
// buf being the body read so far. It reports false if the leader is gone,
// after closing resp; the caller then cancels the fetch.
func (p *Proxy) handoff(k Key, f *flight, m meta, buf []byte, resp *http.Response, cancel context.CancelFunc) bool {
	p.forget(k, f, false) // later requests fetch their own, like those that joined
	f.mu.Lock()
	f.state, f.meta, f.buf = stateHandoff, m, buf
	taken := !f.leaderGone
	if taken {
		f.resp, f.cancel = resp, cancel
	}
	f.signal()
	f.mu.Unlock()
	if !taken {
		resp.Body.Close()
		p.obs.Fetched(k, resp.StatusCode, time.Since(f.start))
	}
	return taken
}

// errNotImage is the cause of a 200 whose Content-Type is not image/*.
var errNotImage = errors.New("Content-Type is not an image type")

// errTooBig ends a body read that passed MaxObject.
var errTooBig = errors.New("body larger than MaxObject")

// fetch runs f's upstream request: it reads the body into f.buf as it
// arrives, stores the object in every tier and completes f. Its context
// is detached from the leader's request, so a client that leaves does not
// waste a delivery that others can use; Timeout bounds it. A body over
// MaxObject is handed to the leader instead, uncached.
//
// With Config.Leases it first takes k's fill lease, or waits for its
// holder elsewhere and completes f from the shared tier if the holder
// filled it. Holding the lease, it stores in SyncTiers synchronously, and
// only then gives the lease up, so the waiters find the object.
func (p *Proxy) fetch(parent context.Context, k Key, f *flight, rawURL string) {
	base := context.WithoutCancel(parent)
	var lease Lease
	filled := false
	if p.leases != nil {
		var obj *Object
		if lease, obj = p.takeLease(base, k); obj != nil {
			p.complete(k, f, obj)
			return
		}
		if lease != nil {
			defer func() { lease.Done(base, filled) }()
		}
	}
	if p.admit != nil {
		if err := p.admit(base, k); err != nil {
			p.refuse(k, f, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(base, p.timeout)
	handedOff := false
	defer func() {
		if !handedOff {
			cancel()
		}
	}()
	resp, err := p.get(ctx, k, rawURL, f.start)
	if err != nil {
		if ue, ok := err.(*UpstreamError); ok && ue.Upstream == http.StatusNotFound {
			// Deleted upstream: a stale copy must not outlive it.
			p.deleteAll(base, k)
		}
		p.fail(k, f, err)
		return
	}
	m := metaOf(resp)
	if m.length > p.maxObject {
		handedOff = p.handoff(k, f, m, nil, resp, cancel)
		return
	}
	f.mu.Lock()
	f.state, f.meta = stateBody, m
	f.signal()
	f.mu.Unlock()

	body, err := p.read(f, resp.Body, m.length)
	if err == errTooBig {
		handedOff = p.handoff(k, f, m, body, resp, cancel)
		return
	}
	resp.Body.Close()
	if err != nil {
		p.obs.Fetched(k, 0, time.Since(f.start))
		p.fail(k, f, fetchError(ctx, err, rawURL))
		return
	}
	p.obs.Fetched(k, resp.StatusCode, time.Since(f.start))
	obj := newObject(body, m, time.Now().Add(p.ttl))
	keep := p.ttl + p.stale
	// Store before completing, so a miss that finds no flight finds the
	// object (see Proxy.stored). A shared tier's Set may outlive this
	// fetch, so it gets a context that is never canceled. A SyncTier,
	// while the lease is held, is written after completing (the requests
	// here need not wait for it) and before the lease is given up.
	var later []SyncTier
	if !f.purged.Load() {
		for _, t := range p.tiers {
			if st, ok := t.(SyncTier); ok && lease != nil {
				later = append(later, st)
				continue
			}
			t.Set(base, k, obj, keep)
		}
		if f.purged.Load() { // Purge ran during the Sets
			p.deleteAll(base, k)
		}
	}
	p.complete(k, f, obj)
	if len(later) > 0 {
		filled = true
		for _, st := range later {
			filled = st.SetSync(base, k, obj, keep) == nil && filled
		}
		if f.purged.Load() {
			p.deleteAll(base, k)
			filled = false
		}
	}
}

// deleteAll removes k from every tier.
func (p *Proxy) deleteAll(ctx context.Context, k Key) {
	for _, t := range p.tiers {
		t.Delete(ctx, k)
	}
}

// takeLease takes k's fill lease, or waits for the process holding it,
// at most Timeout (the lease's own time), and returns the object if that
// process stored it (or one did just before the lease was taken). If not, it tries once more for the lease, and
// returns without one if it is held again: then this fetch may duplicate
// another, a cost bounded by one lease time per dead or failing holder.
func (p *Proxy) takeLease(ctx context.Context, k Key) (Lease, *Object) {
	lease, wait := p.leases.Acquire(ctx, k, p.timeout)
	if lease != nil {
		// The last holder may have filled the shared tier between this
		// miss's lookup and the lease: look once more before fetching.
		if obj, _, fresh := p.lookup(ctx, k); fresh {
			lease.Done(ctx, false)
			return nil, obj
		}
		return lease, nil
	}
	if wait == nil {
		return nil, nil
	}
	t := time.NewTimer(p.timeout)
	select {
	case <-wait:
	case <-t.C:
	}
	t.Stop()
	if obj, _, fresh := p.lookup(ctx, k); fresh {
		return nil, obj
	}
	lease, _ = p.leases.Acquire(ctx, k, p.timeout)
	return lease, nil
}

// read reads body into a buffer sized for length (-1: unknown), publishing
// every read in f.buf. It stops with errTooBig, and the bytes read, once
// the body passes MaxObject.
func (p *Proxy) read(f *flight, body io.Reader, length int64) ([]byte, error) {
	size := length + 1 // room to read EOF without growing
	if length < 0 {
		size = min(64<<10, p.maxObject+1)
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(int64(2*cap(buf)), p.maxObject+1))
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		if n > 0 {
			buf = buf[:len(buf)+n]
			f.mu.Lock()
			f.buf = buf
			f.signal()
			f.mu.Unlock()
		}
		switch {
		case int64(len(buf)) > p.maxObject:
			return buf, errTooBig
		case err == io.EOF:
			return buf, nil
		case err != nil:
			return buf, err
		}
	}
}

// get sends the upstream request: GET rawURL with only Accept (the
// bucket's) and User-Agent. Any answer but 200 is an *UpstreamError, its
// body drained a little so the connection can be reused, then closed; so
// is a 200 whose Content-Type is not an image type (IsImageType).
func (p *Proxy) get(ctx context.Context, k Key, rawURL string, start time.Time) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &UpstreamError{Status: http.StatusBadGateway, Err: scrub(err, rawURL)}
	}
	req.Header = http.Header{"Accept": {k.Format.Accept()}, "User-Agent": p.userAgent}
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		p.obs.Fetched(k, 0, time.Since(start))
		return nil, fetchError(ctx, err, rawURL)
	}
	if resp.StatusCode != http.StatusOK {
		io.CopyN(io.Discard, resp.Body, 4<<10)
		resp.Body.Close()
		p.obs.Fetched(k, resp.StatusCode, time.Since(start))
		if resp.StatusCode == http.StatusNotFound {
			p.neg.remember(k, time.Now())
		}
		return nil, statusError(resp.StatusCode)
	}
	if !IsImageType(resp.Header.Get("Content-Type")) {
		// Never served, so never sniffed into something a browser runs.
		resp.Body.Close()
		p.obs.Fetched(k, resp.StatusCode, time.Since(start))
		return nil, &UpstreamError{Status: http.StatusBadGateway, Upstream: resp.StatusCode, Err: errNotImage}
	}
	return resp, nil
}

// metaOf reads the only upstream headers kept: Content-Type,
// Content-Length, a strong ETag and Last-Modified.
func metaOf(resp *http.Response) meta {
	m := meta{contentType: resp.Header.Get("Content-Type"), length: resp.ContentLength}
	if et := resp.Header.Get("Etag"); isStrongETag(et) {
		m.etag = et
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		m.lastModified = lm
	}
	return m
}

// isStrongETag reports whether et is a strong entity tag: a quoted string
// of visible characters without W/ (RFC 9110, section 8.8.3).
func isStrongETag(et string) bool {
	if len(et) < 2 || et[0] != '"' || et[len(et)-1] != '"' {
		return false
	}
	for _, c := range []byte(et[1 : len(et)-1]) {
		if c == '"' || c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// newObject makes the stored object for body, fresh until freshUntil:
// upstream's Content-Type (an image type: get refuses others); upstream's
// strong ETag, else "<hex of the first 16 bytes of SHA-256(body)>" quoted.
func newObject(body []byte, m meta, freshUntil time.Time) *Object {
	if cap(body)-len(body) > 1 { // grown for an unknown length: drop the slack
		body = bytes.Clone(body)
	}
	obj := &Object{Body: body, ContentType: m.contentType, ETag: m.etag, LastModified: m.lastModified, FreshUntil: freshUntil}
	if obj.ETag == "" {
		sum := sha256.Sum256(body)
		obj.ETag = `"` + hex.EncodeToString(sum[:16]) + `"`
	}
	return obj
}

// plainGet reports whether r is a GET without ranges or preconditions,
// one that a 200 with the whole body answers, so it can be streamed while
// the body arrives.
func plainGet(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, h := range [...]string{"Range", "If-Range", "If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if _, ok := r.Header[h]; ok {
			return false
		}
	}
	return true
}
