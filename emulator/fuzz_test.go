package emulator_test

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// Images every fuzz iteration starts with: a private one (a generated id,
// so it may require signed URLs) and a public one with a custom id.
const (
	fuzzPrivateID = "0b6ea1cc-30a5-4a36-a0a8-c6d9a1a9d07d"
	fuzzPublicID  = "pub/photo.png"
)

// fuzzEmulator returns a new emulator holding the two fuzz images, with a
// clock stopped at start so that signed seeds stay valid.
func fuzzEmulator(tb testing.TB, file []byte) *emulator.Emulator {
	tb.Helper()
	store := emulator.NewMemoryStore()
	for _, rec := range []emulator.Record{
		{ID: fuzzPrivateID, RequireSignedURLs: true, Uploaded: start},
		{ID: fuzzPublicID, Uploaded: start},
	} {
		if _, err := store.Put(rec, file); err != nil {
			tb.Fatal(err)
		}
	}
	emu, err := emulator.New(emulator.Config{Store: store, FlexibleVariants: true, Now: func() time.Time { return start }})
	if err != nil {
		tb.Fatal(err)
	}
	return emu
}

// FuzzServeHTTP sends arbitrary requests to every host the emulator plays
// (API, upload, delivery): none may panic or answer 5xx, since nothing a
// client sends is the emulator's own failure, and no answer but the keys
// endpoints' may contain the signing key. Each iteration gets a fresh
// emulator holding a private and a public image; the seeds include a
// correctly signed URL of the private one, so that mutations reach the
// signature check and rendering rather than stopping at "not found".
func FuzzServeHTTP(f *testing.F) {
	var buf bytes.Buffer
	img := image.NewNRGBA(image.Rect(0, 0, 48, 32))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	img.Set(0, 0, color.NRGBA{}) // one transparent pixel: the PNG keeps alpha
	png.Encode(&buf, img)
	file := buf.Bytes()

	h := "/" + emulator.DefaultAccountHash + "/"
	api := "/client/v4/accounts/" + emulator.DefaultAccountID + "/images/"
	signed := sign(emulator.DefaultSigningKey, h+fuzzPrivateID+"/thumbnail", start.Add(time.Hour).Unix())
	for _, s := range []struct{ method, target, accept string }{
		{"GET", signed, ""},
		{"GET", signed, "image/webp"},
		{"GET", sign(emulator.DefaultSigningKey, "/cdn-cgi/imagedelivery"+h+fuzzPrivateID+"/public", start.Add(time.Minute).Unix()), "image/avif,image/webp,*/*"},
		{"GET", h + fuzzPrivateID + "/thumbnail?exp=1&sig=00", ""},
		{"GET", h + fuzzPrivateID + "/avatar", "image/webp;q=0"},
		{"GET", h + "pub/photo.png/public", "image/webp"},
		{"HEAD", h + "pub/photo.png/thumbnail", ""},
		{"GET", h + "pub/photo.png/w=10,h=10,fit=pad", ""},
		{"GET", "/cdn-cgi/imagedelivery" + h + "a%2Fb/w=100", ""},
		{"POST", h + "abc", ""},
		{"GET", api + "v1", ""},
		{"GET", api + "v1/" + fuzzPrivateID, ""},
		{"GET", api + "v2?per_page=10&continuation_token=x", ""},
		{"GET", api + "v1/variants/thumbnail", ""},
		{"POST", api + "v2/direct_upload", ""},
	} {
		f.Add(s.method, s.target, "multipart/form-data; boundary=x", s.accept)
	}
	f.Fuzz(func(t *testing.T, method, target, contentType, accept string) {
		switch method {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		default:
			method = "GET"
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" {
			return
		}
		emu := fuzzEmulator(t, file)
		r := httptest.NewRequest(method, "http://127.0.0.1:8787/", strings.NewReader("--x\r\n\r\n--x--\r\n"))
		r.URL = u
		r.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("Accept", accept)
		w := httptest.NewRecorder()
		emu.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s (%q): status %d %s", method, target, contentType, w.Code, w.Body.String())
		}
		if w.Code < 200 {
			t.Fatalf("%s %s: status %d", method, target, w.Code)
		}
		if strings.Contains(w.Body.String(), emulator.DefaultSigningKey) && !strings.Contains(u.Path, "/images/v1/keys") {
			t.Fatalf("%s %s: the answer contains the signing key", method, target)
		}
	})
}
