package emulator_test

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/png"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// blankPNG is a valid w×h PNG of colour type colorType and bit depth
// depth whose pixels are all zero, built row by row without holding the
// image: encoding a 10000×10000 16-bit image with image/png takes seconds,
// this takes milliseconds. Each row is deflated on its own and ends in a
// sync flush, so the identical compressed rows can be repeated; the
// Adler-32 of n zero bytes is (n mod 65521)<<16 | 1.
func blankPNG(t testing.TB, w, h int, colorType, depth byte, interlaced bool) []byte {
	t.Helper()
	channels := map[byte]int{0: 1, 2: 3, 4: 2, 6: 4}[colorType]
	rowBytes := 1 + w*channels*int(depth)/8
	var row bytes.Buffer
	fw, _ := flate.NewWriter(&row, flate.BestCompression)
	fw.Write(make([]byte, rowBytes))
	fw.Flush()

	var idat bytes.Buffer
	idat.Write([]byte{0x78, 0xda}) // zlib header, best compression
	for range h {
		idat.Write(row.Bytes())
	}
	idat.Write([]byte{0x01, 0x00, 0x00, 0xff, 0xff}) // final empty stored block
	binary.Write(&idat, binary.BigEndian, uint32((int64(rowBytes)*int64(h))%65521)<<16|1)

	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = depth, colorType
	if interlaced {
		ihdr[12] = 1
	}
	chunk("IHDR", ihdr)
	chunk("IDAT", idat.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

// The generator makes PNGs that image/png decodes in full.
func TestBlankPNGIsValid(t *testing.T) {
	img, err := png.Decode(bytes.NewReader(blankPNG(t, 300, 200, 6, 16, false)))
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if _, ok := img.(*image.NRGBA64); !ok || img.Bounds().Dx() != 300 || img.Bounds().Dy() != 200 {
		t.Fatalf("decoded %T %v", img, img.Bounds())
	}
}

// jpegHeader is the start of a w×h JPEG up to its frame header: enough
// for image.DecodeConfig, not for decoding. sof is 0xc0 (baseline) or
// 0xc2 (progressive).
func jpegHeader(w, h int, sof byte, components int) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0}
	frame := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(components)}
	for i := range components {
		frame = append(frame, byte(i+1), 0x11, 0)
	}
	b = append(b, 0xff, sof, 0, byte(2+len(frame)))
	return append(b, frame...)
}

// The 760 KB 16-bit PNG that decodes to 800 MB is refused from its header,
// through the API and through a one-time upload URL.
func TestDecodeBombRefusedAtUpload(t *testing.T) {
	bomb := blankPNG(t, 10000, 10000, 6, 16, false)
	if len(bomb) > 4<<20 {
		t.Fatalf("the bomb is %d bytes; it should fit any upload limit", len(bomb))
	}
	env := newEnv(t, nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	resp, b := env.postV1(t, nil, bomb)
	runtime.ReadMemStats(&after)
	wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, 5413)
	// The test's own form copy is about 1 MB; decoding would be 800 MB.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("refusing the bomb allocated %d bytes", alloc)
	}

	_, up := env.createDraft(t, nil)
	resp, b = env.postFile(t, up, bomb)
	wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, 5413)
}

// The decode estimate follows the colour model and the format's extras.
func TestDecodeMemoryLimit(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) { c.MaxDecodeBytes = 1 << 20 })
	paletted := func(w, h int) []byte {
		var buf bytes.Buffer
		gif.Encode(&buf, image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White}), nil)
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name   string
		file   []byte
		status int
	}{
		{"gray 1000x1000: 1 MB", blankPNG(t, 1000, 1000, 0, 8, false), 200},
		{"gray16 1000x1000: 2 MB", blankPNG(t, 1000, 1000, 0, 16, false), 413},
		{"nrgba 500x500: 1 MB", blankPNG(t, 500, 500, 6, 8, false), 200},
		{"nrgba 600x600: 1.4 MB", blankPNG(t, 600, 600, 6, 8, false), 413},
		{"nrgba64 360x360: 1 MB", blankPNG(t, 360, 360, 6, 16, false), 200},
		{"nrgba64 400x400: 1.3 MB", blankPNG(t, 400, 400, 6, 16, false), 413},
		{"interlaced gray 800x800: twice 0.64 MB", blankPNG(t, 800, 800, 0, 8, true), 413},
		{"paletted 1000x1000: 1 MB", paletted(1000, 1000), 200},
		// Headers only: within the limit they are decoded and found truncated.
		{"baseline gray 1000x1000", jpegHeader(1000, 1000, 0xc0, 1), 415},
		{"progressive gray 1000x1000: 1 MB + 4 MB of coefficients", jpegHeader(1000, 1000, 0xc2, 1), 413},
		{"baseline YCbCr 590x590: 1 MB", jpegHeader(590, 590, 0xc0, 3), 415},
		{"baseline YCbCr 600x600: 1.08 MB", jpegHeader(600, 600, 0xc0, 3), 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := env.postV1(t, nil, tc.file)
			if resp.StatusCode != tc.status {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, b, tc.status)
			}
			if tc.status == 413 {
				wantAPIError(t, resp, b, 413, 5413)
			}
		})
	}
}

// An image stored before the limit (here: put in the store directly) is
// answered with 9413, without being decoded.
func TestStoredBombNotDecoded(t *testing.T) {
	store := emulator.NewMemoryStore()
	if _, err := store.Put(emulator.Record{ID: "bomb"}, blankPNG(t, 10000, 10000, 6, 16, false)); err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, func(c *emulator.Config) { c.Store = store })
	for _, accept := range []string{"", "image/webp"} {
		req := httptest.NewRequest("GET", "http://127.0.0.1/"+emulator.DefaultAccountHash+"/bomb/public", nil)
		req.Header.Set("Accept", accept)
		rec := httptest.NewRecorder()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		env.emu.ServeHTTP(rec, req)
		runtime.ReadMemStats(&after)
		if rec.Code != http.StatusForbidden || rec.Header().Get("Cf-Resized") != "err=9413" {
			t.Fatalf("Accept %q: %d (Cf-Resized %q), want 403 with err=9413", accept, rec.Code, rec.Header().Get("Cf-Resized"))
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
			t.Errorf("Accept %q: refusing the stored bomb allocated %d bytes", accept, alloc)
		}
	}
}

// A variant whose resizing would take more than the limit is refused
// with 9413 even though its source decodes within it.
func TestResizeMemoryLimit(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) {
		c.MaxDecodeBytes = 8 << 20
		c.Variants = []emulator.Variant{{ID: "huge", Options: emulator.VariantOptions{Fit: emulator.FitCover, Width: 2000, Height: 2000, Metadata: "none"}}}
	})
	id := env.upload(t, false, pngBytes(t, 100, 100))
	resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/huge", nil, nil)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Cf-Resized") != "err=9413" {
		t.Fatalf("2000x2000 cover of a 100x100 image under an 8 MiB limit: %d %s", resp.StatusCode, b)
	}
	if resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/public", nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("public: %d %s", resp.StatusCode, b)
	}
}

// gateStore is a MemoryStore whose Get and Blob, once armed, count their
// calls; Blob then blocks until release is closed: a render in progress,
// held open.
type gateStore struct {
	*emulator.MemoryStore
	mu       sync.Mutex
	armed    bool
	gets     int
	blobs    int
	getsFor  chan struct{} // receives once per Get while armed
	blobsFor chan struct{} // receives once per Blob while armed
	release  chan struct{}
}

func newGateStore(n int) *gateStore {
	return &gateStore{
		MemoryStore: emulator.NewMemoryStore(),
		getsFor:     make(chan struct{}, n),
		blobsFor:    make(chan struct{}, n),
		release:     make(chan struct{}),
	}
}

func (s *gateStore) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = true
}

func (s *gateStore) Get(id string) (emulator.Record, bool) {
	s.mu.Lock()
	armed := s.armed
	if armed {
		s.gets++
	}
	s.mu.Unlock()
	if armed {
		s.getsFor <- struct{}{}
	}
	return s.MemoryStore.Get(id)
}

func (s *gateStore) Blob(id string) ([]byte, error) {
	s.mu.Lock()
	armed := s.armed
	if armed {
		s.blobs++
	}
	s.mu.Unlock()
	if armed {
		s.blobsFor <- struct{}{}
		<-s.release
	}
	return s.MemoryStore.Blob(id)
}

// Concurrent requests for one variant in one format decode the original
// once: the first render is held open until every request has looked the
// image up, so without coalescing each of them would render it.
func TestConcurrentMissesRenderOnce(t *testing.T) {
	const n = 6
	store := newGateStore(n)
	env := newEnv(t, func(c *emulator.Config) { c.Store = store })
	id := env.upload(t, false, jpegBytes(t, 800, 600))
	url := "/" + emulator.DefaultAccountHash + "/" + id + "/public"

	store.arm()
	wait := env.getAll(t, url, n)
	for range n {
		<-store.getsFor
	}
	close(store.release)
	for i, c := range wait() {
		if c != http.StatusOK {
			t.Errorf("request %d: %d", i, c)
		}
	}
	store.mu.Lock()
	defer store.mu.Unlock()
	if store.gets != n || store.blobs != 1 {
		t.Fatalf("%d requests looked the image up %d times and read (decoded) it %d times, want once", n, store.gets, store.blobs)
	}
	env.waitDeliveries(n)
	if got := env.delivered(); len(got) != n {
		t.Fatalf("%d deliveries counted, want %d", len(got), n)
	}
}

// getAll sends n GETs of path, and one of each of more, all at once, and returns the function
// that waits for the answers and returns their status codes.
func (env *testEnv) getAll(t *testing.T, path string, n int, more ...string) func() []int {
	paths := append(slices.Repeat([]string{path}, n), more...)
	codes := make([]int, len(paths))
	var wg sync.WaitGroup
	for i, p := range paths {
		wg.Go(func() {
			resp, err := env.srv.Client().Get(env.srv.URL + p)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	return func() []int {
		wg.Wait()
		return codes
	}
}

// With one decode slot, two renders of different variants never decode at
// once: the second does not read its original while the first holds the
// slot. (The wait is only a window for a broken cap to show itself; a
// working cap passes whatever the timing.)
func TestDecodeSlotsCapRenders(t *testing.T) {
	store := newGateStore(2)
	env := newEnv(t, func(c *emulator.Config) { c.Store = store; c.MaxConcurrentDecodes = 1 })
	id := env.upload(t, false, jpegBytes(t, 300, 200))
	h := "/" + emulator.DefaultAccountHash + "/" + id + "/"

	store.arm()
	wait := env.getAll(t, h+"public", 1, h+"thumbnail")
	<-store.blobsFor
	select {
	case <-store.blobsFor:
		t.Error("a second original was read while the only decode slot was taken")
	case <-time.After(200 * time.Millisecond):
	}
	close(store.release)
	for i, c := range wait() {
		if c != http.StatusOK {
			t.Errorf("request %d: %d", i, c)
		}
	}
}
