package emulator_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// bitWriter writes a JPEG entropy-coded segment MSB first, stuffing a zero
// byte after every 0xFF as the format requires.
type bitWriter struct {
	out  []byte
	acc  uint32
	nacc uint
}

func (w *bitWriter) write(v uint32, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		w.acc = w.acc<<1 | (v>>uint(i))&1
		if w.nacc++; w.nacc == 8 {
			w.out = append(w.out, byte(w.acc))
			if byte(w.acc) == 0xff {
				w.out = append(w.out, 0)
			}
			w.acc, w.nacc = 0, 0
		}
	}
}

// flush pads the last byte with 1 bits.
func (w *bitWriter) flush() []byte {
	for w.nacc != 0 {
		w.write(1, 1)
	}
	return w.out
}

// progressiveJPEG is the stall attack: a w×h greyscale progressive JPEG
// whose DC scan sets every block to grey, followed by scans empty AC
// scans, each a handful of end-of-band runs that cover every block. Each
// costs the decoder a pass over every block, but only tens of bytes. The
// file has scans+1 scans in all.
func progressiveJPEG(w, h, scans int) []byte {
	b := []byte{0xff, 0xd8}
	segment := func(marker byte, data ...byte) {
		b = append(b, 0xff, marker, byte((len(data)+2)>>8), byte(len(data)+2))
		b = append(b, data...)
	}
	dqt := make([]byte, 65)
	for i := 1; i < 65; i++ {
		dqt[i] = 1
	}
	segment(0xdb, dqt...)
	segment(0xc2, 8, byte(h>>8), byte(h), byte(w>>8), byte(w), 1, 1, 0x11, 0)
	// DC table 0: one code, "0", for category 0 (a zero difference).
	dc := append([]byte{0x00, 0}, make([]byte, 15)...)
	dc[1] = 1
	segment(0xc4, append(dc, 0)...)
	// AC table 0: EOBRUN r=14 ("0", the longest run) and r=0..13 (5 bits).
	ac := make([]byte, 17)
	ac[0], ac[1], ac[5] = 0x10, 1, 14
	ac = append(ac, 0xe0)
	for r := range 14 {
		ac = append(ac, byte(r<<4))
	}
	segment(0xc4, ac...)

	blocks := ((w + 7) / 8) * ((h + 7) / 8)
	segment(0xda, 1, 1, 0x00, 0, 0, 0)
	var dcw bitWriter
	for range blocks {
		dcw.write(0, 1)
	}
	b = append(b, dcw.flush()...)
	var acw bitWriter
	for left := blocks; left > 0; {
		run := min(left, 1<<15-1)
		r := 0
		for 1<<(r+1) <= run {
			r++
		}
		if r == 14 {
			acw.write(0, 1)
		} else {
			acw.write(uint32(0x10+r), 5) // 10000 + r: canonical codes after "0"
		}
		acw.write(uint32(run-1<<r), uint(r))
		left -= run
	}
	acScan := acw.flush()
	for range scans {
		segment(0xda, 1, 1, 0x00, 1, 63, 0)
		b = append(b, acScan...)
	}
	return append(b, 0xff, 0xd9)
}

// manyFrameGIF is a 1×1 GIF with n frames.
func manyFrameGIF(t testing.TB, n int) []byte {
	t.Helper()
	anim := &gif.GIF{}
	for range n {
		anim.Image = append(anim.Image, image.NewPaletted(image.Rect(0, 0, 1, 1), color.Palette{color.Black, color.White}))
		anim.Delay = append(anim.Delay, 1)
	}
	var buf bytes.Buffer
	if err := gif.EncodeAll(&buf, anim); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The generated attack decodes with image/jpeg (so only the caps refuse
// it), and a few scans of it are an ordinary image.
func TestProgressiveJPEGGenerator(t *testing.T) {
	img, err := jpeg.Decode(bytes.NewReader(progressiveJPEG(64, 48, 3)))
	if err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if img.Bounds().Dx() != 64 || img.Bounds().Dy() != 48 {
		t.Fatalf("decoded %v", img.Bounds())
	}
	if n := len(progressiveJPEG(6000, 6000, 400)); n > 100_000 {
		t.Fatalf("the 400-scan attack is %d bytes; measured in the wild at 99 KB", n)
	}
}

// The measured attacks (a 6000×6000 progressive JPEG with 400 scans, a
// 5,000-frame GIF) and a PNG of too many chunks are refused as too large
// from their structure, at upload through the API and through a one-time
// upload URL, and on delivery when already stored. Each is answered well
// under a second (BenchmarkRefuseStall measures it); the bound here only
// catches a hang.
func TestStallingImagesRefused(t *testing.T) {
	cases := map[string][]byte{
		"jpeg 400 scans":   progressiveJPEG(6000, 6000, 400),
		"jpeg 1 scan over": progressiveJPEG(6000, 6000, emulator.MaxJPEGScans), // and a DC scan
		"gif 5000 frames":  manyFrameGIF(t, 5000),
		"gif 1001 frames":  manyFrameGIF(t, emulator.MaxGIFFrames+1),
		"png many chunks":  manyChunkPNG(t, emulator.MaxPNGChunks+1),
	}
	store := emulator.NewMemoryStore()
	env := newEnv(t, func(c *emulator.Config) { c.Store = store })
	for name, file := range cases {
		t.Run(name, func(t *testing.T) {
			began := time.Now()
			resp, b := env.postV1(t, nil, file)
			wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, 5413)
			_, up := env.createDraft(t, nil)
			resp, b = env.postFile(t, up, file)
			wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, 5413)

			if _, err := store.Put(emulator.Record{ID: "stored"}, file); err != nil {
				t.Fatal(err)
			}
			req := httptest.NewRequest("GET", "http://127.0.0.1/"+emulator.DefaultAccountHash+"/stored/public", nil)
			rec := httptest.NewRecorder()
			env.emu.ServeHTTP(rec, req)
			if rec.Code != http.StatusForbidden || rec.Header().Get("Cf-Resized") != "err=9413" {
				t.Fatalf("delivery: %d (Cf-Resized %q), want 403 with err=9413", rec.Code, rec.Header().Get("Cf-Resized"))
			}
			store.Delete("stored")
			if took := time.Since(began); took > 5*time.Second {
				t.Errorf("three refusals took %v", took)
			}
		})
	}
	// Just under each cap is accepted: the caps refuse only what is over.
	for name, file := range map[string][]byte{
		"jpeg 3 scans":    progressiveJPEG(600, 400, 3),
		"gif 1000 frames": manyFrameGIF(t, emulator.MaxGIFFrames),
		"png at the cap":  manyChunkPNG(t, emulator.MaxPNGChunks),
	} {
		resp, b := env.postV1(t, nil, file)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d %s, want 200", name, resp.StatusCode, b)
		}
	}
}

// A decode that passes the caps but runs past Config.DecodeTimeout is
// stopped and refused as too large, at upload and on delivery.
func TestDecodeDeadline(t *testing.T) {
	slow := progressiveJPEG(6000, 6000, emulator.MaxJPEGScans-1) // at the cap; about 1.5 s to decode
	store := emulator.NewMemoryStore()
	env := newEnv(t, func(c *emulator.Config) {
		c.Store = store
		c.DecodeTimeout = 50 * time.Millisecond
	})
	began := time.Now()
	resp, b := env.postV1(t, nil, slow)
	wantAPIError(t, resp, b, http.StatusRequestEntityTooLarge, 5413)
	if env := decodeEnvelope(t, b); env.Errors[0].Message != "Image takes too long to decode" {
		t.Errorf("message %q", env.Errors[0].Message)
	}

	if _, err := store.Put(emulator.Record{ID: "slow"}, slow); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "http://127.0.0.1/"+emulator.DefaultAccountHash+"/slow/public", nil)
	rec := httptest.NewRecorder()
	env.emu.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || rec.Header().Get("Cf-Resized") != "err=9413" {
		t.Fatalf("delivery: %d (Cf-Resized %q), want 403 with err=9413", rec.Code, rec.Header().Get("Cf-Resized"))
	}
	// The decode runs in the request's goroutine, so its answer means it
	// stopped; this bound only catches a decode that ran to its end.
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("two deadline refusals took %v", took)
	}
}

// BenchmarkRefuseStall measures how long the measured attacks take to be
// refused at upload, through the API.
func BenchmarkRefuseStall(b *testing.B) {
	for name, file := range map[string][]byte{
		"jpeg400scans":  progressiveJPEG(6000, 6000, 400),
		"gif5000frames": manyFrameGIF(b, 5000),
	} {
		b.Run(name, func(b *testing.B) {
			emu, err := emulator.New(emulator.Config{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				body, ct := form(b, nil, file)
				req := httptest.NewRequest("POST", "http://127.0.0.1/client/v4/accounts/"+emulator.DefaultAccountID+"/images/v1", body)
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
				rec := httptest.NewRecorder()
				emu.ServeHTTP(rec, req)
				if rec.Code != http.StatusRequestEntityTooLarge {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkDecodeScans measures what one scan of the attack costs the
// decoder, by decoding it under the cap with 1 and with MaxJPEGScans scans.
func BenchmarkDecodeScans(b *testing.B) {
	for _, scans := range []int{1, emulator.MaxJPEGScans} {
		file := progressiveJPEG(6000, 6000, scans)
		b.Run(strconv.Itoa(scans), func(b *testing.B) {
			for b.Loop() {
				if _, err := jpeg.Decode(bytes.NewReader(file)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// manyChunkPNG is a valid 1×1 PNG of n chunks in all: IHDR, IDAT, IEND
// and n-3 empty private ancillary chunks, which decoders skip.
func manyChunkPNG(t testing.TB, n int) []byte {
	t.Helper()
	var one bytes.Buffer
	if err := png.Encode(&one, image.NewGray(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	src := one.Bytes()
	ihdrEnd := 8 + 12 + 13
	filler := []byte{0, 0, 0, 0, 'z', 'z', 'Z', 'z'}
	filler = binary.BigEndian.AppendUint32(filler, crc32.ChecksumIEEE([]byte("zzZz")))
	out := append([]byte(nil), src[:ihdrEnd]...)
	for range n - 3 {
		out = append(out, filler...)
	}
	return append(out, src[ihdrEnd:]...)
}
