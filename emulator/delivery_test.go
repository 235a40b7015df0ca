package emulator_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/images"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// upload stores a w×h PNG through the API and returns its id.
func (env *testEnv) upload(t *testing.T, private bool, file []byte) string {
	t.Helper()
	img, err := env.api.V1.New(context.Background(), images.V1NewParams{
		AccountID:         acct,
		File:              cloudflare.F[io.Reader](bytes.NewReader(file)),
		RequireSignedURLs: cloudflare.F(private),
	})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return img.ID
}

// wantDenied checks Cloudflare's 9425 answer.
func wantDenied(t *testing.T, resp *http.Response, body []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusForbidden || string(body) != "ERROR 9425: Image access denied" ||
		resp.Header.Get("Cf-Resized") != "err=9425" {
		t.Fatalf("got %d %q Cf-Resized=%q, want 403 ERROR 9425", resp.StatusCode, body, resp.Header.Get("Cf-Resized"))
	}
}

// Signing vectors computed independently with Python's hmac,
// served by emulators whose account hash, key and clock match each vector.
func TestSigningVectors(t *testing.T) {
	for _, v := range []struct {
		key, hash, id, variant, path string
		exp                          int64
		sig                          string
	}{
		{"k3y", "acc", "img1", "public", "/acc/img1/public", 1700000000,
			"771f51010c17ffb2b065bc35eff1a8e88ffc4f3d9f7448877b42845743ebfb9e"},
		{"Oix0bbNaT8Rge9PuyxUBrjI6zrgnsyJ5=", "ZWd9g1K7eljCn_KDTu_MWA", "bc27a117-9509-446b-8c69-c81bfeac0a01", "mobile",
			"/ZWd9g1K7eljCn_KDTu_MWA/bc27a117-9509-446b-8c69-c81bfeac0a01/mobile", 1631289275,
			"f865547eef7eac7e08b8d3164e01e9b9e85c22b7fa41f3031c3b4700a63d8727"},
		{"a-longer-key-with-unicode-é", "AccHash_x1", "2cdc28f0-017a-49c4-9ed7-87056c83901f", "thumbnail",
			"/AccHash_x1/2cdc28f0-017a-49c4-9ed7-87056c83901f/thumbnail", 1800000000,
			"3e09b8f0613cacdcb3e9943365134e753108ebf60a639b0344ccfb5305404906"},
		{"k3y", "acc", "folder/sub/photo.jpg", "public", "/acc/folder/sub/photo.jpg/public", 1700003600,
			"a93fe9961d653f01d9c898044e477c9d862b5f6ba8ac2258e52a77bdf0a57836"},
		{"k3y", "acc", "100%-real", "public", "/acc/100%25-real/public", 1700007200,
			"cc78c478549141424d4478c78254277792f69de13ed617ecc01b1420f756d4ef"},
	} {
		t.Run(v.path, func(t *testing.T) {
			store := emulator.NewMemoryStore()
			// Cloudflare never lets a custom id be private; the vectors use
			// such ids anyway, so they are stored directly, not via the API.
			if _, err := store.Put(emulator.Record{ID: v.id, RequireSignedURLs: true}, pngBytes(t, 10, 10)); err != nil {
				t.Fatal(err)
			}
			env := newEnv(t, func(c *emulator.Config) {
				c.AccountHash = v.hash
				c.SigningKey = v.key
				c.Store = store
				c.Variants = []emulator.Variant{{ID: v.variant, Options: emulator.VariantOptions{Fit: "scale-down", Width: 5, Height: 5, Metadata: "none"}}}
			})
			env.clock.Set(time.Unix(v.exp-60, 0))
			if got := sign(v.key, v.path, v.exp); got != v.path+"?exp="+strconv.FormatInt(v.exp, 10)+"&sig="+v.sig {
				t.Fatalf("the test's own signer disagrees with the vector: %s", got)
			}
			url := v.path + "?exp=" + strconv.FormatInt(v.exp, 10) + "&sig=" + v.sig
			if resp, b := env.do(t, "GET", url, nil, nil); resp.StatusCode != http.StatusOK {
				t.Fatalf("vector refused: %d %s", resp.StatusCode, b)
			}
			if resp, b := env.do(t, "GET", "/cdn-cgi/imagedelivery"+url, nil, nil); resp.StatusCode != http.StatusForbidden {
				// The custom-domain path is a different pathname, so the
				// same signature does not cover it.
				t.Fatalf("vector accepted on the /cdn-cgi path: %d %s", resp.StatusCode, b)
			}
			env.clock.Add(60 * time.Second) // now == exp: expired
			resp, b := env.do(t, "GET", url, nil, nil)
			wantDenied(t, resp, b)
		})
	}
}

func TestSignedDelivery(t *testing.T) {
	env := newEnv(t, nil)
	id := env.upload(t, true, pngBytes(t, 300, 200))
	path := "/" + emulator.DefaultAccountHash + "/" + id + "/thumbnail"
	exp := start.Add(2 * time.Hour).Unix()
	good := sign(emulator.DefaultSigningKey, path, exp)

	resp, b := env.do(t, "GET", good, nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signed URL refused: %d %s", resp.StatusCode, b)
	}
	if w, h, _ := decodeSize(t, b); w != 200 || h != 200 {
		t.Errorf("thumbnail is %dx%d, want 200x200", w, h)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=7200" {
		t.Errorf("Cache-Control = %q, want private, max-age=7200", cc)
	}

	// One changed character of sig.
	sigAt := strings.LastIndex(good, "=") + 1
	flipped := []byte(good)
	flipped[sigAt] = map[bool]byte{true: 'b', false: 'a'}[flipped[sigAt] == 'a']
	resp, b = env.do(t, "GET", string(flipped), nil, nil)
	wantDenied(t, resp, b)

	for name, url := range map[string]string{
		"unsigned":           path,
		"no exp":             path + "?sig=" + good[sigAt:],
		"exp changed":        strings.Replace(good, "exp="+strconv.FormatInt(exp, 10), "exp="+strconv.FormatInt(exp+1, 10), 1),
		"other variant":      strings.Replace(good, "/thumbnail?", "/public?", 1),
		"uppercase sig":      good[:sigAt] + strings.ToUpper(good[sigAt:]),
		"sig twice":          good + "&sig=" + good[sigAt:],
		"wrong key":          sign("not-the-key", path, exp),
		"past exp":           sign(emulator.DefaultSigningKey, path, start.Add(-time.Second).Unix()),
		"exp now":            sign(emulator.DefaultSigningKey, path, start.Unix()),
		"path-only HMAC sig": path + "?exp=" + strconv.FormatInt(exp, 10) + "&sig=" + pathOnlySig(path),
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := env.do(t, "GET", url, nil, nil)
			wantDenied(t, resp, b)
		})
	}

	// sig need not be last: it is removed wherever it is, and the rest of
	// the query is signed as sent.
	mid := path + "?sig=" + good[sigAt:] + "&exp=" + strconv.FormatInt(exp, 10)
	if resp, b := env.do(t, "GET", mid, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("sig before exp refused: %d %s", resp.StatusCode, b)
	}

	// The avatar variant is neverRequireSignedURLs: no signature needed.
	resp, _ = env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/avatar", nil, nil)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Cache-Control"), "public, ") {
		t.Errorf("always-public variant: %d %s", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}

	// After exp, the same URL is refused (the injected clock moves).
	env.clock.Add(2 * time.Hour)
	resp, b = env.do(t, "GET", good, nil, nil)
	wantDenied(t, resp, b)
}

// pathOnlySig is the HMAC of the path without its query, the form
// cloudflare-docs PR #12323 reported; the documented form is the one enforced.
func pathOnlySig(path string) string {
	return signRaw(emulator.DefaultSigningKey, path)
}

func TestSignedDeliveryShortExpAndPercentIDs(t *testing.T) {
	store := emulator.NewMemoryStore()
	if _, err := store.Put(emulator.Record{ID: "100%-real", RequireSignedURLs: true}, pngBytes(t, 10, 10)); err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, func(c *emulator.Config) { c.Store = store })
	path := "/" + emulator.DefaultAccountHash + "/100%25-real/public"
	exp := start.Add(10 * time.Minute).Unix()
	resp, b := env.do(t, "GET", sign(emulator.DefaultSigningKey, path, exp), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("percent id: %d %s", resp.StatusCode, b)
	}
	// A short exp still gets Cloudflare's one-hour floor.
	if cc := resp.Header.Get("Cache-Control"); cc != "private, max-age=3600" {
		t.Errorf("Cache-Control = %q, want the 1 h floor", cc)
	}
}

func TestKeyRotation(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	id := env.upload(t, true, pngBytes(t, 50, 50))
	path := "/" + emulator.DefaultAccountHash + "/" + id + "/public"
	exp := start.Add(time.Hour).Unix()

	keys, err := env.api.V1.Keys.Update(ctx, "next", images.V1KeyUpdateParams{AccountID: acct})
	if err != nil {
		t.Fatal(err)
	}
	next := keys.Keys[1].Value
	// While both keys exist, either signs.
	for _, key := range []string{emulator.DefaultSigningKey, next} {
		if resp, b := env.do(t, "GET", sign(key, path, exp), nil, nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("key %d refused during rotation: %d %s", len(key), resp.StatusCode, b)
		}
	}
	if _, err := env.api.V1.Keys.Delete(ctx, "default", images.V1KeyDeleteParams{AccountID: acct}); err != nil {
		t.Fatal(err)
	}
	resp, b := env.do(t, "GET", sign(emulator.DefaultSigningKey, path, exp), nil, nil)
	wantDenied(t, resp, b)
	if resp, b := env.do(t, "GET", sign(next, path, exp), nil, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("new key refused after rotation: %d %s", resp.StatusCode, b)
	}
}

func TestDeliveryErrors(t *testing.T) {
	env := newEnv(t, nil)
	pub := env.upload(t, false, pngBytes(t, 20, 20))
	priv := env.upload(t, true, pngBytes(t, 20, 20))
	h := "/" + emulator.DefaultAccountHash + "/"
	for _, tc := range []struct {
		name, path string
		status     int
		code       int
	}{
		{"wrong hash", "/not-the-hash/" + pub + "/public", 403, 9427},
		{"unknown image", h + "0b6ea1cc-30a5-4a36-a0a8-c6d9a1a9d07d/public", 404, 9431},
		{"unknown variant", h + pub + "/nope", 404, 9431},
		{"flexible disabled", h + pub + "/w=100", 403, 9429},
		{"flexible on private", h + priv + "/w=100", 403, 9429},
		{"too short", h + pub, 400, 9432},
		{"custom domain wrong hash", "/cdn-cgi/imagedelivery/x/" + pub + "/public", 403, 9427},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := env.do(t, "GET", tc.path, nil, nil)
			want := "ERROR " + strconv.Itoa(tc.code) + ": "
			if resp.StatusCode != tc.status || !strings.HasPrefix(string(b), want) ||
				resp.Header.Get("Cf-Resized") != "err="+strconv.Itoa(tc.code) {
				t.Fatalf("got %d %q, want %d %s…", resp.StatusCode, b, tc.status, want)
			}
		})
	}
}

func TestFlexibleVariants(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) { c.FlexibleVariants = true })
	pub := env.upload(t, false, pngBytes(t, 400, 200))
	priv := env.upload(t, true, pngBytes(t, 400, 200))
	h := "/" + emulator.DefaultAccountHash + "/"
	resp, b := env.do(t, "GET", h+pub+"/w=100,fit=scale-down", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("flexible: %d %s", resp.StatusCode, b)
	}
	if w, hh, _ := decodeSize(t, b); w != 100 || hh != 50 {
		t.Errorf("w=100 gave %dx%d", w, hh)
	}
	// Flexible variants cannot be signed, so a private image never gets one.
	path := h + priv + "/w=100"
	resp, b = env.do(t, "GET", sign(emulator.DefaultSigningKey, path, start.Add(time.Hour).Unix()), nil, nil)
	wantDenied(t, resp, b)
	if resp, _ := env.do(t, "GET", h+pub+"/w=100,blur=5", nil, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unsupported flexible option: %d, want 400", resp.StatusCode)
	}
	if got := env.recorded(); got[0].variant != "flexible" {
		t.Errorf("flexible delivery counted as %q", got[0].variant)
	}
}

func TestDeliveryHeadersETagAndCounting(t *testing.T) {
	env := newEnv(t, nil)
	id := env.upload(t, false, jpegBytes(t, 2000, 1000))
	url := "/" + emulator.DefaultAccountHash + "/" + id + "/public"

	// Wildcards bring neither AVIF nor WebP: the original format is JPEG.
	resp, b := env.do(t, "GET", url, nil, http.Header{"Accept": {"image/*,*/*"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("public delivery: %d %s", resp.StatusCode, b)
	}
	if w, h, format := decodeSize(t, b); w != 1366 || h != 683 || format != "jpeg" {
		t.Errorf("public variant = %dx%d %s, want 1366x683 jpeg", w, h, format)
	}
	for k, want := range map[string]string{
		"Cache-Control":  "public, max-age=172800, stale-while-revalidate=7200",
		"Vary":           "Accept",
		"Content-Type":   "image/jpeg",
		"Content-Length": strconv.Itoa(len(b)),
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	etag := resp.Header.Get("ETag")
	if len(etag) < 10 || etag[0] != '"' || strings.HasPrefix(etag, "W/") {
		t.Fatalf("ETag = %q, want a strong tag", etag)
	}

	resp, b = env.do(t, "GET", url, nil, http.Header{"If-None-Match": {`"other", ` + etag}})
	if resp.StatusCode != http.StatusNotModified || len(b) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("If-None-Match: %d, %d bytes", resp.StatusCode, len(b))
	}
	resp, _ = env.do(t, "GET", url, nil, http.Header{"If-None-Match": {`"stale"`}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stale If-None-Match: %d", resp.StatusCode)
	}
	resp, b = env.do(t, "HEAD", url, nil, nil)
	if resp.StatusCode != http.StatusOK || len(b) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("HEAD: %d, %d bytes, etag %q", resp.StatusCode, len(b), resp.Header.Get("ETag"))
	}
	env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/"+strings.Repeat("x", 40), nil, nil)

	want := []delivery{
		{"public", 200, false}, {"public", 304, true}, {"public", 200, false}, {"public", 200, false}, {"other", 404, false},
	}
	got := env.recorded()
	if len(got) != len(want) {
		t.Fatalf("hook saw %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("delivery %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestVariantBrowserTTL(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) {
		c.BrowserTTL = time.Hour
		c.Variants = []emulator.Variant{{ID: "long", Options: emulator.VariantOptions{Fit: "contain", Width: 10, Height: 10, Metadata: "none", BrowserTTL: 31536000}}}
	})
	id := env.upload(t, false, pngBytes(t, 20, 20))
	resp, _ := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/public", nil, nil)
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=3600, stale-while-revalidate=7200" {
		t.Errorf("account TTL: %q", cc)
	}
	resp, _ = env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/long", nil, nil)
	if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=31536000, stale-while-revalidate=7200" {
		t.Errorf("variant TTL: %q", cc)
	}
}

func TestFits(t *testing.T) {
	for _, tc := range []struct {
		fit        string
		srcW, srcH int
		w, h       int
		wantW      int
		wantH      int
	}{
		{"scale-down", 400, 200, 100, 100, 100, 50},
		{"scale-down", 40, 20, 100, 100, 40, 20}, // never enlarges
		{"contain", 40, 20, 100, 100, 100, 50},   // enlarges
		{"contain", 400, 200, 100, 100, 100, 50},
		{"cover", 400, 200, 100, 100, 100, 100},
		{"cover", 40, 20, 100, 100, 100, 100},
		{"crop", 400, 200, 100, 100, 100, 100}, // larger: like cover
		{"crop", 40, 20, 100, 100, 40, 20},     // smaller: like scale-down
		{"crop", 400, 20, 100, 100, 100, 20},   // wider only: cropped, not enlarged
		{"pad", 400, 200, 100, 100, 100, 100},
		{"pad", 40, 20, 100, 100, 100, 100},
	} {
		t.Run(tc.fit+"/"+strconv.Itoa(tc.srcW)+"x"+strconv.Itoa(tc.srcH), func(t *testing.T) {
			env := newEnv(t, func(c *emulator.Config) {
				c.Variants = []emulator.Variant{{ID: "v", Options: emulator.VariantOptions{Fit: tc.fit, Width: tc.w, Height: tc.h, Metadata: "none"}}}
			})
			id := env.upload(t, false, pngBytes(t, tc.srcW, tc.srcH))
			resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/v", nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if w, h, format := decodeSize(t, b); w != tc.wantW || h != tc.wantH || format != "png" {
				t.Errorf("got %dx%d %s, want %dx%d png", w, h, format, tc.wantW, tc.wantH)
			}
		})
	}
}

func TestFormatsAccepted(t *testing.T) {
	env := newEnv(t, nil)
	for name, file := range map[string][]byte{
		"jpeg":          jpegBytes(t, 30, 20),
		"gif":           gifBytes(t, 30, 20),
		"webp lossless": mustBase64(t, "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="),
		"webp lossy":    mustBase64(t, "UklGRiIAAABXRUJQVlA4IBYAAAAwAQCdASoBAAEADsD+JaQAA3AAAAAA"),
	} {
		t.Run(name, func(t *testing.T) {
			id := env.upload(t, false, file)
			resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/thumbnail", nil, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if w, h, _ := decodeSize(t, b); w != 200 || h != 200 {
				t.Errorf("thumbnail %dx%d", w, h)
			}
		})
	}
}
