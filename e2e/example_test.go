package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	_ "image/jpeg"
)

// startExample runs Caddyfile.example as the README does, from the
// repository root, with its ports moved to free loopback ones and the
// admin endpoint too, so a developer's running copy cannot interfere.
func startExample(t *testing.T) (gateway, emulator, admin string) {
	return startExampleWith(t, nil)
}

// startExampleWith also applies edits (old → new) to the Caddyfile.
func startExampleWith(t *testing.T, edits map[string]string) (gateway, emulator, admin string) {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	gateway = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	emulator = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := string(src)
	for old, repl := range map[string]string{
		"127.0.0.1:8787":     emulator,
		"\n:8080 {":          "\nhttp://" + gateway + " {",
		"{file.dev/":         "{file." + repoPath(t, "dev") + "/",
		" dev/":              " " + repoPath(t, "dev") + "/",
		"persist_config off": "persist_config off\n\tadmin " + admin,
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("Caddyfile.example no longer contains %q; update this test", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	for old, repl := range edits {
		if !strings.Contains(cfg, old) {
			t.Fatalf("Caddyfile.example no longer contains %q; update this test", old)
		}
		cfg = strings.ReplaceAll(cfg, old, repl)
	}
	start(t, cfg, nil, gateway, emulator, admin)
	return gateway, emulator, admin
}

func repoPath(t *testing.T, p string) string {
	abs, err := filepath.Abs(filepath.Join("..", p))
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// testPNG is a 640×480 gradient.
func testPNG(t *testing.T) []byte {
	m := image.NewRGBA(image.Rect(0, 0, 640, 480))
	for y := range 480 {
		for x := range 640 {
			m.Set(x, y, color.RGBA{uint8(x), uint8(y), 128, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func postFile(t *testing.T, uploadURL string, data []byte) *http.Response {
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("file", "photo.png")
	_, _ = fw.Write(data)
	_ = w.Close()
	resp, err := noRedirect.Post(uploadURL, w.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func imageSize(t *testing.T, body string) (int, int) {
	t.Helper()
	cfg, _, err := image.DecodeConfig(strings.NewReader(body))
	if err != nil {
		t.Fatalf("delivered bytes are not an image: %v", err)
	}
	return cfg.Width, cfg.Height
}

// TestExampleEndToEnd follows the README's "Try it" section against the
// real binary and Caddyfile.example: a token, an upload URL from the
// gateway, the upload to the emulator, and the thumbnail through the
// gateway; then what must be refused.
func TestExampleEndToEnd(t *testing.T) {
	gateway, emulator, admin := startExample(t)
	secret := repoPath(t, "dev/jwt-secret")
	alice := mintToken(t, secret, "--sub", "alice")
	bob := mintToken(t, secret, "--sub", "bob")

	up := upload(t, gateway, alice)
	if r := postFile(t, up.UploadURL, testPNG(t)); r.StatusCode < 400 || r.StatusCode >= 500 {
		t.Fatalf("second upload to a one-time URL: status %d, want 4xx", r.StatusCode)
	}

	cookie := map[string]string{"Cookie": "session=" + alice}
	thumb := "http://" + gateway + "/img/" + up.ID + "/thumbnail"
	resp, _ := get(t, "GET", thumb, cookie)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 302 || !strings.HasPrefix(loc, "http://"+emulator+"/emu-account-hash/"+up.ID+"/thumbnail?exp=") {
		t.Fatalf("thumbnail: status %d Location %q", resp.StatusCode, loc)
	}
	if resp2, _ := get(t, "GET", thumb, cookie); resp2.Header.Get("Location") != loc {
		t.Fatal("two requests in a row got different URLs")
	}
	resp, img := get(t, "GET", loc, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("delivery: status %d %q", resp.StatusCode, img)
	}
	if w, h := imageSize(t, img); w != 200 || h != 200 {
		t.Fatalf("thumbnail is %dx%d, want the variant's 200x200", w, h)
	}

	// The public variant needs no signature; its URL carries none.
	resp, _ = get(t, "GET", "http://"+gateway+"/img/"+up.ID+"/avatar", cookie)
	avatar := resp.Header.Get("Location")
	if strings.Contains(avatar, "sig=") {
		t.Fatalf("public variant URL is signed: %s", avatar)
	}
	if resp, img = get(t, "GET", avatar, nil); resp.StatusCode != 200 {
		t.Fatalf("avatar delivery: status %d", resp.StatusCode)
	} else if w, h := imageSize(t, img); w != 96 || h != 96 {
		t.Fatalf("avatar is %dx%d, want 96x96", w, h)
	}

	// Refusals: another user, no session, a tampered or expired signature.
	if resp, _ := get(t, "GET", thumb, map[string]string{"Cookie": "session=" + bob}); resp.StatusCode != 403 {
		t.Errorf("bob: status %d, want 403", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", thumb, nil); resp.StatusCode != 401 {
		t.Errorf("no session: status %d, want 401", resp.StatusCode)
	}
	u, _ := url.Parse(loc)
	sig := u.Query().Get("sig")
	flipped := map[byte]byte{'0': '1'}[sig[0]]
	if flipped == 0 {
		flipped = '0'
	}
	tampered := strings.Replace(loc, "sig="+sig, "sig="+string(flipped)+sig[1:], 1)
	expiredExp := "1700000000"
	mac := hmac.New(sha256.New, []byte("dev-signing-key"))
	mac.Write([]byte(u.EscapedPath() + "?exp=" + expiredExp))
	expired := "http://" + emulator + u.EscapedPath() + "?exp=" + expiredExp + "&sig=" + hex.EncodeToString(mac.Sum(nil))
	unsigned := "http://" + emulator + u.EscapedPath()
	for name, target := range map[string]string{"tampered sig": tampered, "expired": expired, "unsigned": unsigned} {
		resp, body := get(t, "GET", target, nil)
		if resp.StatusCode != 403 || resp.Header.Get("Cf-Resized") != "err=9425" || !strings.HasPrefix(body, "ERROR 9425") {
			t.Errorf("%s: status %d Cf-Resized %q body %q, want 403 9425", name, resp.StatusCode, resp.Header.Get("Cf-Resized"), body)
		}
	}

	// The emulator counted the deliveries: thumbnail and avatar once each.
	for _, variant := range []string{"thumbnail", "avatar"} {
		if n := deliveries(t, admin, variant); n != 1 {
			t.Errorf("%s deliveries = %v, want 1", variant, n)
		}
	}
}

// upload gets a one-time upload URL from the gateway as the token's
// subject and uploads testPNG to it.
func upload(t *testing.T, gateway, token string) (up struct{ ID, UploadURL string }) {
	t.Helper()
	resp, body := get(t, "POST", "http://"+gateway+"/img/upload", map[string]string{"Authorization": "Bearer " + token})
	if resp.StatusCode != 200 {
		t.Fatalf("upload URL: status %d %s", resp.StatusCode, body)
	}
	if err := json.Unmarshal([]byte(body), &up); err != nil || up.ID == "" {
		t.Fatalf("upload URL body %q: %v", body, err)
	}
	if r := postFile(t, up.UploadURL, testPNG(t)); r.StatusCode != 200 {
		t.Fatalf("upload: status %d", r.StatusCode)
	}
	return up
}

// deliveries reads the emulator's count of successful deliveries of a
// variant from Caddy's /metrics: what Cloudflare would bill.
func deliveries(t *testing.T, admin, variant string) float64 {
	t.Helper()
	_, metrics := get(t, "GET", "http://"+admin+"/metrics", nil)
	re := regexp.MustCompile(`imagegate_emulator_deliveries_total\{code="200",variant="` + variant + `"\} (\S+)`)
	m := re.FindStringSubmatch(metrics)
	if m == nil {
		return 0
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
