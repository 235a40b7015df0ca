package imageproxy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Serve answers r, already authorized for k, with the image body: from
// the first tier that holds k, or else from upstreamURL, a signed
// delivery URL that never appears in errors.
//
// A stored object is answered through http.ServeContent, so conditional
// requests get 304, ranges 206, HEAD no body, and every answer carries
// Content-Length, Content-Type, a strong ETag and Last-Modified when
// upstream sent one. Headers the caller set on w, such as Cache-Control
// and Vary, are kept.
//
// On a miss, one upstream fetch per key runs at a time; every miss for k
// that arrives while it runs is answered from it. A plain GET (no Range,
// no preconditions) is streamed as the body arrives: by the request that
// started the fetch always, by the others when upstream sent a
// Content-Length. Streamed answers carry upstream's ETag only if it is
// strong, as the hash ETag needs the whole body. Other requests wait for
// the whole body and are answered as from a tier. A body over MaxObject
// is not stored: it streams with constant memory to the request that
// started the fetch, as a 200 whatever the request's range or
// preconditions, while the requests that joined make fetches of their own.
//
// A stored object past its FreshUntil is refetched, and served stale only
// if the refetch fails as Config.StaleIfError allows. A 404 remembered
// for Config.NegativeTTL is answered without a fetch. With Config.Leases,
// a miss first takes the key's fill lease, or waits for the process that
// holds it to store the object in the shared tier.
//
// Serve returns nil once the answer is written. An *UpstreamError means
// nothing was written and the caller answers with its Status; so does the
// error of Config.Admit, returned unchanged. Any other
// error wraps http.ErrAbortHandler: the answer was cut short (upstream
// failed after bytes were sent, or the client left), and the caller writes
// nothing more; it may panic with http.ErrAbortHandler to reset the
// connection, so that a client reading a body without Content-Length does
// not take a truncated image for a whole one.
func (p *Proxy) Serve(w http.ResponseWriter, r *http.Request, k Key, upstreamURL string) error {
	if len(p.tiers) == 0 {
		// Nothing to share a fetch through: stream like a plain reverse
		// proxy, with constant memory and no per-request body buffer.
		p.obs.CacheMiss()
		return p.direct(w, r, k, upstreamURL)
	}
	ctx := r.Context()
	for missed := false; ; missed = true {
		stored := p.stored.Load()
		obj, tier, fresh := p.lookup(ctx, k)
		if fresh {
			p.obs.CacheHit(p.tiers[tier].Name())
			p.serveObject(w, r, obj)
			return nil
		}
		stale := obj // nil, or k's object past FreshUntil
		if stale == nil && p.neg.has(k, time.Now()) {
			if !missed {
				p.obs.CacheMiss()
			}
			return &UpstreamError{Status: http.StatusNotFound, Upstream: http.StatusNotFound, Remembered: true}
		}
		f, leader := p.join(k)
		if leader && p.stored.Load() != stored {
			// A fetch stored an object after the lookup above, and may
			// have been k's: look again rather than fetch twice.
			if obj, tier, fresh := p.lookup(ctx, k); fresh {
				p.complete(k, f, obj)
				p.obs.CacheHit(p.tiers[tier].Name())
				p.serveObject(w, r, obj)
				return nil
			}
		}
		if !missed {
			p.obs.CacheMiss()
		}
		if leader {
			go p.fetch(ctx, k, f, upstreamURL)
		}
		err := p.follow(w, r, k, upstreamURL, f, leader, stale)
		if err != errRetry {
			return err
		}
	}
}

// lookup returns k's fresh object from the first tier that holds one, and
// that tier's index, filling the tiers before it. Without a fresh one, it
// returns the first stale one it saw, or nil, and fresh false.
func (p *Proxy) lookup(ctx context.Context, k Key) (obj *Object, tier int, fresh bool) {
	var stale *Object
	now := time.Now()
	for i, t := range p.tiers {
		obj, ok := t.Get(ctx, k)
		if !ok {
			continue
		}
		if !obj.FreshUntil.IsZero() && !now.Before(obj.FreshUntil) {
			if stale == nil {
				stale = obj
			}
			continue
		}
		if keep := p.keep(obj, now); i > 0 && keep > 0 {
			sctx := context.WithoutCancel(ctx)
			for _, e := range p.tiers[:i] {
				e.Set(sctx, k, obj, keep)
			}
		}
		return obj, i, true
	}
	return stale, 0, false
}

// keep returns how long tiers keep obj from now: until StaleIfError past
// its FreshUntil, or TTL for an object without one.
func (p *Proxy) keep(obj *Object, now time.Time) time.Duration {
	if obj.FreshUntil.IsZero() {
		return p.ttl
	}
	return obj.FreshUntil.Add(p.stale).Sub(now)
}

// serveObject answers r with obj through http.ServeContent, with the
// safety headers, a Content-Type always (ServeContent would sniff one),
// and Range ignored when it asks for too many or overlapping ranges.
func (p *Proxy) serveObject(w http.ResponseWriter, r *http.Request, obj *Object) {
	h := w.Header()
	h["Content-Type"] = []string{cmp.Or(obj.ContentType, "application/octet-stream")}
	if obj.ETag != "" {
		h["Etag"] = []string{obj.ETag}
	}
	setSafetyHeaders(h)
	a := &answer{cw: countingWriter{w: w}}
	a.body.Reset(obj.Body)
	http.ServeContent(&a.cw, boundedRange(r, int64(len(obj.Body))), "", obj.LastModified, &a.body)
	p.obs.Sent(a.cw.n)
}

// answer is what serveObject hands ServeContent, in one allocation: the
// body's reader and the writer that counts what the client was sent.
type answer struct {
	body bytes.Reader
	cw   countingWriter
}

// errRetry is follow's answer to a request that joined a fetch its leader
// was refused (Config.Admit): it starts over.
var errRetry = errors.New("imageproxy: fetch refused for its leader; start over")

// follow answers r from flight f, as its leader or as a request that
// joined it. stale, if not nil, is k's stale object, the answer should
// the fetch fail as servesStale allows.
func (p *Proxy) follow(w http.ResponseWriter, r *http.Request, k Key, rawURL string, f *flight, leader bool, stale *Object) error {
	if leader {
		defer f.leave()
	}
	stream := plainGet(r)
	started := false // the status line and headers are written
	var sent int64   // body bytes written
	var rc *http.ResponseController
	unflushed := false // bytes written since the last flush
	for {
		f.mu.Lock()
		state, m, buf, wake := f.state, f.meta, f.buf, f.wake
		obj, ferr, refused := f.obj, f.err, f.refused
		var resp *http.Response
		var cancel context.CancelFunc
		if state == stateHandoff && leader {
			resp, cancel, f.resp = f.resp, f.cancel, nil
		}
		f.mu.Unlock()

		switch state {
		case stateDone:
			if !started {
				p.serveObject(w, r, obj)
				return nil
			}
			n, err := w.Write(obj.Body[sent:])
			p.obs.Sent(sent + int64(n))
			if err != nil {
				return abort(err)
			}
			return nil
		case stateFailed:
			if refused && !leader {
				return errRetry
			}
			if !started {
				if ue, ok := servesStale(ferr); ok && stale != nil {
					p.serveStale(w, r, k, stale, ue)
					return nil
				}
				return ferr
			}
			p.obs.Sent(sent)
			return abort(ferr)
		case stateHandoff:
			if resp != nil {
				return p.passThrough(w, r, k, m, buf[sent:], resp, cancel, started, sent, f.start, rawURL)
			}
			if started { // a joined request streams only bodies of known length, which cannot outgrow MaxObject
				p.obs.Sent(sent)
				return abort(errTooBig)
			}
			return p.direct(w, r, k, rawURL)
		case stateBody:
			if stream && (leader || m.length >= 0) {
				if !started {
					writeHeader(w, m)
					started = true
					rc = http.NewResponseController(w)
				}
				if sent < int64(len(buf)) {
					n, err := w.Write(buf[sent:])
					sent += int64(n)
					if err != nil {
						p.obs.Sent(sent)
						return abort(err)
					}
					unflushed = true
					continue
				}
			}
		}
		if unflushed {
			// Flush only before waiting: what arrived in one burst goes
			// out in one write, and nothing waits on a slow upstream.
			rc.Flush() // an error means w cannot flush; the bytes go out later
			unflushed = false
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			p.obs.Sent(sent)
			return abort(context.Cause(r.Context()))
		}
	}
}

// writeHeader writes a 200 with the upstream headers in m.
func writeHeader(w http.ResponseWriter, m meta) {
	h := w.Header()
	if m.contentType != "" {
		h.Set("Content-Type", m.contentType)
	}
	if m.length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(m.length, 10))
	}
	if m.etag != "" {
		h.Set("Etag", m.etag)
	}
	if !m.lastModified.IsZero() {
		h.Set("Last-Modified", m.lastModified.UTC().Format(http.TimeFormat))
	}
	setSafetyHeaders(h)
	w.WriteHeader(http.StatusOK)
}

// passThrough streams an uncacheable body to r's client: prefix, the
// part already read, then the rest of resp. The client is its only reader
// now, so its departure cancels the fetch. sent counts the body bytes
// already written, started whether the headers were.
func (p *Proxy) passThrough(w http.ResponseWriter, r *http.Request, k Key, m meta, prefix []byte,
	resp *http.Response, cancel context.CancelFunc, started bool, sent int64, start time.Time, rawURL string) error {
	defer cancel()
	defer resp.Body.Close()
	stop := context.AfterFunc(r.Context(), cancel)
	defer stop()
	status := resp.StatusCode
	defer func() {
		p.obs.Fetched(k, status, time.Since(start))
		p.obs.Sent(sent)
	}()
	if !started {
		writeHeader(w, m)
		if r.Method == http.MethodHead {
			return nil
		}
	}
	n, err := w.Write(prefix)
	sent += int64(n)
	if err != nil {
		return abort(err)
	}
	// io.Copy uses w's ReadFrom when it has one (net/http's does, with
	// pooled buffers), else one 32 KiB buffer: constant memory either way.
	n64, err := io.Copy(w, resp.Body)
	sent += n64
	if err != nil {
		if r.Context().Err() == nil {
			status = 0 // upstream broke off, not the client
		}
		return abort(scrub(err, rawURL))
	}
	return nil
}

// direct is a request's own uncached fetch: for a key whose shared fetch
// found a body over MaxObject, or for every request when there are no
// tiers. Its context is the request's: nobody else reads this body.
func (p *Proxy) direct(w http.ResponseWriter, r *http.Request, k Key, rawURL string) error {
	if p.neg.has(k, time.Now()) {
		return &UpstreamError{Status: http.StatusNotFound, Upstream: http.StatusNotFound, Remembered: true}
	}
	if p.admit != nil {
		if err := p.admit(r.Context(), k); err != nil {
			return err
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(r.Context(), p.timeout)
	resp, err := p.get(ctx, k, rawURL, start)
	if err != nil {
		cancel()
		return err
	}
	return p.passThrough(w, r, k, metaOf(resp), nil, resp, cancel, false, 0, start, rawURL)
}
