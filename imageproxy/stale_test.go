package imageproxy

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// staleObserver is an observer that also records stale answers.
type staleObserver struct {
	*observer
	stale atomic.Int64
	cause chan *UpstreamError
}

func (o *staleObserver) ServedStale(_ *http.Request, _ Key, cause *UpstreamError) {
	o.stale.Add(1)
	select {
	case o.cause <- cause:
	default:
	}
}

// failing is an upstream that serves body until told to fail.
type failing struct {
	body []byte
	mode atomic.Value // "" serves body; "500", "404", "403", "hang", "html"
}

func (f *failing) handler(w http.ResponseWriter, r *http.Request) {
	switch mode, _ := f.mode.Load().(string); mode {
	case "":
		serveBody(f.body, map[string]string{"Content-Type": "image/png"})(w, r)
	case "500":
		http.Error(w, "down", http.StatusInternalServerError)
	case "503":
		http.Error(w, "down", http.StatusServiceUnavailable)
	case "404":
		http.Error(w, "gone", http.StatusNotFound)
	case "403":
		http.Error(w, "ERROR 9425: Image access denied", http.StatusForbidden)
	case "hang":
		<-r.Context().Done()
	case "html":
		serveBody([]byte("<html>"), map[string]string{"Content-Type": "text/html"})(w, r)
	}
}

func TestStaleIfError(t *testing.T) {
	const ttl = 200 * time.Millisecond
	for _, tt := range []struct {
		mode   string // how the refetch fails; "refused" closes the upstream
		stale  bool   // answered with the stale object
		status int    // else the error's status
	}{
		{"500", true, 0},
		{"503", true, 0},
		{"hang", true, 0},
		{"refused", true, 0},
		{"404", false, 404},
		{"403", false, 502},
		{"html", false, 502},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			f := &failing{body: image(2000)}
			up := newUpstream(t, f.handler)
			mem := NewMemory(1<<20, nil)
			obs := &staleObserver{observer: newObserver(), cause: make(chan *UpstreamError, 10)}
			p := newProxy(t, Config{Tiers: []Tier{mem}, Observer: obs, TTL: ttl, StaleIfError: time.Hour, Timeout: 300 * time.Millisecond})
			serve := func() (*recorder, error) {
				rec := newRecorder()
				return rec, p.Serve(rec, request(context.Background(), "GET", nil), testKey, up.url("/acc/id/public"))
			}
			if _, err := serve(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(ttl + 50*time.Millisecond) // past FreshUntil
			if tt.mode == "refused" {
				up.Close()
			} else {
				f.mode.Store(tt.mode)
			}
			for i := range 2 {
				rec, err := serve()
				if tt.stale {
					status, got, _ := rec.result()
					if err != nil || status != 200 || !bytes.Equal(got, f.body) {
						t.Fatalf("request %d: err %v, status %d, %d bytes; want the stale object", i, err, status, len(got))
					}
					if rec.h.Get("X-Content-Type-Options") != "nosniff" {
						t.Error("a stale answer without nosniff")
					}
					select {
					case c := <-obs.cause:
						if c.Status == 404 || c.Upstream/100 == 4 {
							t.Errorf("stale served for %+v", c)
						}
					default:
						t.Errorf("request %d: ServedStale was not called", i)
					}
					continue
				}
				var ue *UpstreamError
				if !errors.As(err, &ue) || ue.Status != tt.status {
					t.Fatalf("request %d: %v, want an *UpstreamError with status %d", i, err, tt.status)
				}
				if _, _, wrote := rec.result(); wrote {
					t.Fatalf("request %d: wrote an answer", i)
				}
			}
			if !tt.stale && obs.stale.Load() != 0 {
				t.Errorf("%d stale answers after upstream's %s", obs.stale.Load(), tt.mode)
			}
			if tt.mode == "404" && mem.Len() != 0 {
				t.Error("the stale copy of an image deleted upstream was kept")
			}
			if tt.mode == "" || tt.mode == "refused" {
				return
			}
			// Upstream is back: the object is refetched, fresh again.
			f.mode.Store("")
			before := up.fetches.Load()
			if _, err := serve(); err != nil {
				t.Fatal(err)
			}
			if up.fetches.Load() != before+1 {
				t.Errorf("%d fetches once upstream was back, want 1", up.fetches.Load()-before)
			}
		})
	}
}

func TestStaleWindowEnds(t *testing.T) {
	f := &failing{body: image(100)}
	up := newUpstream(t, f.handler)
	p := newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, TTL: 50 * time.Millisecond, StaleIfError: 50 * time.Millisecond})
	if err := p.Serve(newRecorder(), request(context.Background(), "GET", nil), testKey, up.url("/x")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // past FreshUntil + StaleIfError
	f.mode.Store("500")
	err := p.Serve(newRecorder(), request(context.Background(), "GET", nil), testKey, up.url("/x"))
	if ue, ok := errors.AsType[*UpstreamError](err); !ok || ue.Status != 502 {
		t.Fatalf("after the stale window: %v, want a 502", err)
	}
}

func TestStaleObjectsGoFirst(t *testing.T) {
	ctx := context.Background()
	now := time.Unix(1700000000, 0)
	body := make([]byte, 1000)
	c := cost(memKey(0), memObject(1000))
	m := NewMemory(3*c, nil)
	m.now = func() time.Time { return now }
	stale := &Object{Body: body, ContentType: "image/webp", ETag: `"e"`, FreshUntil: now.Add(time.Minute)}
	fresh := &Object{Body: body, ContentType: "image/webp", ETag: `"e"`, FreshUntil: now.Add(time.Hour)}
	m.Set(ctx, memKey(0), fresh, 2*time.Hour)
	m.Set(ctx, memKey(1), stale, 2*time.Hour)
	m.Set(ctx, memKey(2), fresh, 2*time.Hour)
	now = now.Add(2 * time.Minute) // entry 1 is stale now
	m.Get(ctx, memKey(1))          // and the most recently used
	m.Set(ctx, memKey(3), fresh, 2*time.Hour)
	for i, want := range []bool{true, false, true, true} {
		if _, ok := m.Get(ctx, memKey(i)); ok != want {
			t.Errorf("entry %d present = %v, want %v (the stale entry goes before the least recently used)", i, ok, want)
		}
	}
	// With nothing stale, the least recently used goes.
	m.Set(ctx, memKey(4), fresh, 2*time.Hour)
	if _, ok := m.Get(ctx, memKey(0)); ok {
		t.Error("the least recently used fresh entry survived")
	}
	if m.Bytes() > 3*c || m.Len() != 3 {
		t.Errorf("Bytes %d, Len %d", m.Bytes(), m.Len())
	}
}

func TestNegativeTTL(t *testing.T) {
	for _, ttl := range []time.Duration{0, time.Hour} {
		f := &failing{body: image(100)}
		f.mode.Store("404")
		up := newUpstream(t, f.handler)
		p := newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, NegativeTTL: ttl})
		webp := testKey
		webp.Format = FormatWebP
		var remembered int
		for _, k := range []Key{testKey, testKey, webp} {
			err := p.Serve(newRecorder(), request(context.Background(), "GET", nil), k, up.url("/x"))
			ue, ok := errors.AsType[*UpstreamError](err)
			if !ok || ue.Status != 404 {
				t.Fatalf("NegativeTTL %v: %v, want a 404", ttl, err)
			}
			if ue.Remembered {
				remembered++
			}
		}
		want := int64(3)
		if ttl > 0 {
			want = 1 // per (id, variant): every format bucket
		}
		if n := up.fetches.Load(); n != want || remembered != 3-int(want) {
			t.Errorf("NegativeTTL %v: %d fetches, %d remembered; want %d fetches", ttl, n, remembered, want)
		}
		if ttl == 0 {
			continue
		}
		// Purge forgets it: the image may have been uploaded since.
		f.mode.Store("")
		p.Purge(context.Background(), webp)
		if err := p.Serve(newRecorder(), request(context.Background(), "GET", nil), testKey, up.url("/x")); err != nil {
			t.Fatalf("after Purge: %v", err)
		}
	}
}

type callerKey struct{}

// TestAdmit checks that only real upstream requests are admitted, and that
// a refusal reaches only its own request.
func TestAdmit(t *testing.T) {
	release := make(chan struct{})
	body := image(5000)
	up := newUpstream(t, serveBody(body, map[string]string{"Content-Type": "image/png"}))
	obs := newObserver()
	var mu sync.Mutex
	var admitted []string
	errLimited := errors.New("fetch limit reached")
	p := newProxy(t, Config{Tiers: []Tier{NewMemory(1<<20, nil)}, Observer: obs, Admit: func(ctx context.Context, k Key) error {
		caller, _ := ctx.Value(callerKey{}).(string)
		mu.Lock()
		admitted = append(admitted, caller)
		mu.Unlock()
		if caller == "over" {
			<-release // the others have joined by now
			return errLimited
		}
		return nil
	}})
	serve := func(caller string) (*recorder, error) {
		rec := newRecorder()
		ctx := context.WithValue(context.Background(), callerKey{}, caller)
		return rec, p.Serve(rec, request(ctx, "GET", nil), testKey, up.url("/x"))
	}
	errs := make(chan error, 4)
	go func() { _, err := serve("over"); errs <- err }()
	obs.waitMisses(t, 1)
	for _, c := range []string{"a", "b", "c"} {
		go func() {
			rec, err := serve(c)
			if _, got, _ := rec.result(); err == nil && !bytes.Equal(got, body) {
				err = errors.New("wrong body")
			}
			errs <- err
		}()
	}
	obs.waitMisses(t, 3)
	close(release)
	var refused int
	for range 4 {
		switch err := <-errs; {
		case errors.Is(err, errLimited):
			refused++
		case err != nil:
			t.Error(err)
		}
	}
	if refused != 1 {
		t.Errorf("%d requests refused, want only the one over its limit", refused)
	}
	serve("d") // a hit: not admitted
	mu.Lock()
	defer mu.Unlock()
	if len(admitted) != 2 || admitted[0] != "over" || up.fetches.Load() != 1 {
		t.Errorf("admitted %q with %d fetches; want the refused caller, then one of a, b, c, for one fetch", admitted, up.fetches.Load())
	}
}

// TestInvalidateBeatsAFetchInFlight: a purge from elsewhere lands while a
// fetch runs: the waiting request is answered, nothing is stored.
func TestInvalidateBeatsAFetchInFlight(t *testing.T) {
	release := make(chan struct{})
	body := image(3000)
	up := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		serveBody(body, map[string]string{"Content-Type": "image/png"})(w, r)
	})
	mem := NewMemory(1<<20, nil)
	obs := newObserver()
	p := newProxy(t, Config{Tiers: []Tier{mem}, Observer: obs})
	done := make(chan error, 1)
	rec := newRecorder()
	go func() { done <- p.Serve(rec, request(context.Background(), "GET", nil), testKey, up.url("/x")) }()
	obs.waitMisses(t, 1)
	p.Invalidate(testKey)
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, got, _ := rec.result(); !bytes.Equal(got, body) {
		t.Error("the waiting request was not answered")
	}
	obs.waitFetched(t)
	if mem.Len() != 0 {
		t.Error("a fetch invalidated in flight stored its object")
	}
}
