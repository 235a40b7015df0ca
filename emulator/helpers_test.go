package emulator_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6/images"
	"github.com/cloudflare/cloudflare-go/v6/option"

	"github.com/seed-a64a90cf/imagegate/emulator"

	"github.com/seed-a64a90cf/imagegate/internal/testclock"
)

// fakeClock is the injected clock: tests move time, they never sleep.
type fakeClock = testclock.Clock

// delivery is one call of the OnDelivery hook.
type delivery struct {
	variant     string
	status      int
	notModified bool
}

// testEnv is an emulator behind a real HTTP server on 127.0.0.1, with an
// official SDK client pointed at it.
type testEnv struct {
	emu   *emulator.Emulator
	srv   *httptest.Server
	clock *fakeClock
	api   *images.ImageService
	cfg   emulator.Config

	mu         sync.Mutex
	grew       *sync.Cond // broadcast, with mu held, at each delivery
	deliveries []emulator.Delivery
}

// start is a fixed instant so that tests are reproducible.
var start = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func newEnv(t *testing.T, configure func(*emulator.Config)) *testEnv {
	t.Helper()
	env := &testEnv{clock: testclock.New(start)}
	env.grew = sync.NewCond(&env.mu)
	cfg := emulator.Config{
		Now: env.clock.Now,
		OnDelivery: func(d emulator.Delivery) {
			env.mu.Lock()
			defer env.mu.Unlock()
			env.deliveries = append(env.deliveries, d)
			env.grew.Broadcast()
		},
	}
	if configure != nil {
		configure(&cfg)
	}
	emu, err := emulator.New(cfg)
	if err != nil {
		t.Fatalf("emulator.New: %v", err)
	}
	env.emu = emu
	env.cfg = cfg
	env.srv = httptest.NewServer(emu)
	t.Cleanup(env.srv.Close)
	env.api = images.NewImageService(
		option.WithBaseURL(env.srv.URL+"/client/v4/"),
		option.WithAPIToken(emulator.DefaultAPIToken),
		option.WithMaxRetries(0),
	)
	return env
}

// recorded returns the hook's calls, without image ids and formats.
func (env *testEnv) recorded() []delivery {
	var out []delivery
	for _, d := range env.delivered() {
		out = append(out, delivery{d.Variant, d.Status, d.NotModified})
	}
	return out
}

// waitDeliveries waits until the hook has been called n times in all: it
// runs after the answer is written, so a client can see the answer first.
func (env *testEnv) waitDeliveries(n int) {
	env.mu.Lock()
	defer env.mu.Unlock()
	for len(env.deliveries) < n {
		env.grew.Wait()
	}
}

// delivered returns the hook's calls as the emulator made them.
func (env *testEnv) delivered() []emulator.Delivery {
	env.mu.Lock()
	defer env.mu.Unlock()
	return append([]emulator.Delivery(nil), env.deliveries...)
}

// do sends a request to the emulator and returns the response with its body read.
func (env *testEnv) do(t *testing.T, method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, env.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := env.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// api sends an authenticated API request to images/<sub>.
func (env *testEnv) apiDo(t *testing.T, method, sub string, body io.Reader, contentType string) (*http.Response, []byte) {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}}
	if contentType != "" {
		h.Set("Content-Type", contentType)
	}
	return env.do(t, method, "/client/v4/accounts/"+emulator.DefaultAccountID+"/images/"+sub, body, h)
}

// apiEnvelope is the v4 envelope as a test reads it.
type apiEnvelope struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Messages   []any           `json:"messages"`
	Result     json.RawMessage `json:"result"`
	ResultInfo json.RawMessage `json:"result_info"`
}

func decodeEnvelope(t *testing.T, b []byte) apiEnvelope {
	t.Helper()
	var env apiEnvelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatalf("response is not a v4 envelope: %v: %s", err, b)
	}
	return env
}

// wantAPIError checks a failed envelope with one error of the given code.
func wantAPIError(t *testing.T, resp *http.Response, body []byte, status, code int) {
	t.Helper()
	env := decodeEnvelope(t, body)
	if resp.StatusCode != status || env.Success || len(env.Errors) != 1 || env.Errors[0].Code != code ||
		string(env.Result) != "null" || env.Messages == nil {
		t.Fatalf("got %d %s, want %d with error code %d", resp.StatusCode, body, status, code)
	}
}

// form builds a multipart body; file is omitted when nil.
func form(t testing.TB, fields map[string]string, file []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if file != nil {
		fw, err := mw.CreateFormFile("file", "photo.bin")
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(file)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

// gradient is a w×h opaque test picture that is not uniform, so that
// resizing and cropping produce visibly different bytes.
func gradient(w, h int) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.NRGBA{uint8(x * 255 / max(1, w-1)), uint8(y * 255 / max(1, h-1)), 128, 255})
		}
	}
	return img
}

func pngBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jpegBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gifBytes(t *testing.T, w, h int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := gif.Encode(&buf, gradient(w, h), nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// sign computes a Cloudflare signed path independently of the emulator:
// lowercase hex HMAC-SHA256, keyed with the key's UTF-8 bytes, over
// path + "?exp=<exp>", appended as the last parameter.
func sign(key, path string, exp int64) string {
	q := "exp=" + strconv.FormatInt(exp, 10)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(path + "?" + q))
	return path + "?" + q + "&sig=" + hex.EncodeToString(mac.Sum(nil))
}

// decodeSize returns the dimensions and format of delivered bytes.
func decodeSize(t *testing.T, b []byte) (int, int, string) {
	t.Helper()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("delivered bytes are not an image: %v", err)
	}
	return cfg.Width, cfg.Height, format
}

// signRaw is the HMAC of msg alone, hex encoded.
func signRaw(key, msg string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(msg))
	return hex.EncodeToString(mac.Sum(nil))
}

func mustBase64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
