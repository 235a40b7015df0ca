package emulator_test

import (
	"bytes"
	"cmp"
	"net/http"
	"testing"
	"time"

	"github.com/gen2brain/avif"
	"golang.org/x/image/webp"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// AVIF is sent to clients whose Accept names it with q>0, else WebP if it
// names that, the original format otherwise; every answer varies on
// Accept; each format has its own ETag; and the hook counts each 200 with
// its image, variant and format.
func TestFormatNegotiation(t *testing.T) {
	env := newEnv(t, nil)
	waitAVIF(t)
	jpg := env.upload(t, false, jpegBytes(t, 400, 300))
	png := env.upload(t, false, pngBytes(t, 400, 300))
	path := func(id string) string { return "/" + emulator.DefaultAccountHash + "/" + id + "/public" }

	etags := map[string]string{} // format → ETag of the jpeg original
	for _, tc := range []struct {
		accept string
		id     string
		want   string
	}{
		{"image/avif,image/webp,image/apng,image/*,*/*;q=0.8", jpg, "image/avif"}, // Chrome
		{"image/avif", png, "image/avif"},
		{"image/avif;q=0,image/webp", jpg, "image/webp"},
		{"image/webp", jpg, "image/webp"},
		{"image/webp,*/*", png, "image/webp"},
		{"IMAGE/WEBP;q=0.5", jpg, "image/webp"},
		{"image/png, image/webp ; q=0.1", jpg, "image/webp"},
		{"", jpg, "image/jpeg"},
		{"", png, "image/png"},
		{"*/*", jpg, "image/jpeg"},
		{"image/*", jpg, "image/jpeg"},
		{"image/avif;q=x,image/webp;q=0", jpg, "image/jpeg"}, // a malformed q is ignored
		{"image/webp;q=0", jpg, "image/jpeg"},
		{"image/webp;q=0.000", png, "image/png"},
		{"image/webp;q=2", jpg, "image/jpeg"},
		{"image/webp;q=NaN", jpg, "image/jpeg"},
		{"image/webpx", jpg, "image/jpeg"},
	} {
		t.Run(cmp.Or(tc.accept, "no Accept"), func(t *testing.T) {
			resp, b := env.do(t, "GET", path(tc.id), nil, http.Header{"Accept": {tc.accept}})
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.want {
				t.Errorf("Content-Type = %q, want %q", got, tc.want)
			}
			if resp.Header.Get("Vary") != "Accept" {
				t.Errorf("Vary = %q", resp.Header.Get("Vary"))
			}
			if tc.want == "image/webp" {
				img, err := webp.Decode(bytes.NewReader(b))
				if err != nil || img.Bounds().Dx() != 400 || img.Bounds().Dy() != 300 {
					t.Fatalf("body is not a 400x300 WebP: %v", err)
				}
			} else if tc.want == "image/avif" {
				img, err := avif.Decode(bytes.NewReader(b))
				if err != nil || img.Bounds().Dx() != 400 || img.Bounds().Dy() != 300 {
					t.Fatalf("body is not a 400x300 AVIF: %v", err)
				}
			} else if _, _, format := decodeSize(t, b); "image/"+format != tc.want {
				t.Errorf("body is %s", format)
			}
			if tc.id == jpg {
				etags[tc.want] = resp.Header.Get("ETag")
			}
		})
	}
	if etags["image/webp"] == "" || etags["image/avif"] == "" || etags["image/webp"] == etags["image/jpeg"] ||
		etags["image/avif"] == etags["image/webp"] || etags["image/avif"] == etags["image/jpeg"] {
		t.Fatalf("ETags per format: %v", etags)
	}

	// A client revalidates the copy it has, in the format it gets.
	webpHeader := http.Header{"Accept": {"image/webp"}, "If-None-Match": {etags["image/webp"]}}
	if resp, _ := env.do(t, "GET", path(jpg), nil, webpHeader); resp.StatusCode != http.StatusNotModified || resp.Header.Get("Vary") != "Accept" {
		t.Errorf("WebP revalidation: %d, Vary %q", resp.StatusCode, resp.Header.Get("Vary"))
	}
	if resp, _ := env.do(t, "GET", path(jpg), nil, http.Header{"If-None-Match": {etags["image/webp"]}}); resp.StatusCode != http.StatusOK {
		t.Errorf("a WebP ETag matched the JPEG answer: %d", resp.StatusCode)
	}
	// Errors vary on Accept too.
	if resp, _ := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/nothing/public", nil, nil); resp.Header.Get("Vary") != "Accept" {
		t.Errorf("error answer Vary = %q", resp.Header.Get("Vary"))
	}

	// One delivery per 200, each with its image, variant and format.
	type key struct{ image, variant, format string }
	counts := map[key]int{}
	env.waitDeliveries(20) // every request above
	for _, d := range env.delivered() {
		if d.Status == http.StatusOK {
			counts[key{d.Image, d.Variant, d.Format}]++
		}
	}
	want := map[key]int{
		{jpg, "public", "avif"}: 1, {jpg, "public", "webp"}: 4, {jpg, "public", "jpeg"}: 9,
		{png, "public", "avif"}: 1, {png, "public", "webp"}: 1, {png, "public", "png"}: 2,
	}
	for k, n := range want {
		if counts[k] != n {
			t.Errorf("deliveries of %v = %d, want %d", k, counts[k], n)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("deliveries = %v", counts)
	}
}

// A variant over 1,200 px on a side is delivered as WebP to a client that
// accepts AVIF, as Cloudflare documents; at 1,200 it is still AVIF.
func TestAVIFSideLimit(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) {
		c.Variants = append(emulator.DefaultVariants(), emulator.Variant{
			ID: "big", Options: emulator.VariantOptions{Fit: emulator.FitScaleDown, Width: 4000, Height: 4000, Metadata: "none"},
		})
	})
	waitAVIF(t)
	chrome := http.Header{"Accept": {"image/avif,image/webp,image/apng,image/*,*/*;q=0.8"}}
	for _, tc := range []struct {
		w, h int
		want string
	}{
		{1200, 900, "image/avif"},
		{900, 1200, "image/avif"},
		{1201, 900, "image/webp"},
		{900, 1201, "image/webp"},
	} {
		id := env.upload(t, false, jpegBytes(t, tc.w, tc.h))
		resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/big", nil, chrome)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != tc.want {
			t.Errorf("%dx%d: %d %q, want %s", tc.w, tc.h, resp.StatusCode, resp.Header.Get("Content-Type"), tc.want)
			continue
		}
		if w, h, _ := decodeSize(t, b); w != tc.w || h != tc.h {
			t.Errorf("%dx%d: delivered %dx%d", tc.w, tc.h, w, h)
		}
	}
}

// waitAVIF waits until the AVIF encoder, which New starts compiling, is
// ready: until then AVIF requests are answered as WebP.
func waitAVIF(t *testing.T) {
	t.Helper()
	select {
	case <-emulator.AVIFReady():
	case <-time.After(2 * time.Minute):
		t.Fatal("the AVIF encoder was not compiled within 2 minutes")
	}
}
