package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/gen2brain/avif" // the emulator answers AVIF
	_ "golang.org/x/image/webp"   // and WebP

	"github.com/seed-a64a90cf/imagegate/signer"
)

// The emulator's account, as the rig configures it.
const (
	emuAccountID = "0123456789abcdef0123456789abcdef" // the emulator's default
	emuHash      = "emu-account-hash"                 // the emulator's default
	emuAPIToken  = "e2e-emulator-api-token"
	emuKey       = "e2e-emulator-signing-key-one"
)

// Accept headers that browsers send for <img>. Both name image/avif, so
// both are in the AVIF bucket and share one cached object; the emulator
// answers AVIF to both (WebP while its AVIF encoder is compiling).
const (
	acceptChrome  = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
	acceptFirefox = "image/avif,image/webp,*/*"
	// acceptAVIFUpstream is what the gateway sends upstream for that bucket.
	acceptAVIFUpstream = "image/avif,image/webp,image/*,*/*;q=0.8"
)

// proxyRig is one imagegate process serving the emulator and a gateway in
// front of it, with the admin endpoint on (for /metrics, purges and
// reloads).
type proxyRig struct {
	gateway, emulator, admin string
	jwtSecret                string // path of the JWT secret file
}

// proxyRigConfig is what varies between rigs.
type proxyRigConfig struct {
	site     string // site directives before cf_images
	key      string // the signing key line; default: the emulator's key
	settings string // more cf_images lines: mode, authorize
}

// startProxyRig runs a rig. The gateway reads JWTs from the `session`
// cookie and the Authorization header, and issues upload URLs at
// /img/upload.
func startProxyRig(t *testing.T, cfg proxyRigConfig) proxyRig {
	t.Helper()
	r := proxyRig{
		gateway:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		emulator:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		admin:     fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		jwtSecret: filepath.Join(t.TempDir(), "jwt-secret"),
	}
	if err := os.WriteFile(r.jwtSecret, []byte(e2eJWTSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, r.caddyfile(cfg), []string{"EMU_API_TOKEN=" + emuAPIToken, "EMU_SIGNING_KEY=" + emuKey},
		r.gateway, r.emulator, r.admin)
	return r
}

// caddyfile renders the proxyRig's Caddyfile for cfg; a reload posts another.
func (r proxyRig) caddyfile(cfg proxyRigConfig) string {
	if cfg.key == "" {
		cfg.key = "signing_key {env.EMU_SIGNING_KEY}"
	}
	return fmt.Sprintf(`{
	admin %s
	persist_config off
	grace_period 5s
}
http://%s {
	cf_images_emulator {
		api_token   {env.EMU_API_TOKEN}
		signing_key {env.EMU_SIGNING_KEY}
		storage     memory
	}
}
http://%s {
	%s
	cf_images {
		account_hash %s
		%s
		delivery_url http://%s
		variants     public thumbnail
		session jwt {
			cookie      session
			header      Authorization
			secret_file %s
		}
		account_id  %s
		api_token   {env.EMU_API_TOKEN}
		api_url     http://%s/client/v4
		upload_path /img/upload
		%s
	}
}
`, r.admin, r.emulator, r.gateway, cfg.site, emuHash, cfg.key, r.emulator, r.jwtSecret,
		emuAccountID, r.emulator, cfg.settings)
}

// scrapeSeries reads one series from the admin endpoint's /metrics, written as
// the exposition writes it (labels in alphabetical order); 0 when absent.
func scrapeSeries(t *testing.T, admin, series string) float64 {
	t.Helper()
	resp, body := get(t, "GET", "http://"+admin+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// purgeImage posts a purge to the admin API and returns its count.
func purgeImage(t *testing.T, admin, body string) int {
	t.Helper()
	resp, err := noRedirect.Post("http://"+admin+"/cf_images/purge", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Dropped *int }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.Dropped == nil {
		t.Fatalf("purge %s: status %d, %v", body, resp.StatusCode, err)
	}
	return *out.Dropped
}

// signedURL signs a delivery URL the way Cloudflare checks it, without
// the gateway, to fetch from the emulator directly.
func signedURL(key, emulator, id, variant string, exp int64) string {
	path := "/" + emuHash + "/" + id + "/" + variant
	return "http://" + emulator + path + "?exp=" + strconv.FormatInt(exp, 10) + "&sig=" + signer.Sign([]byte(key), path, exp)
}

// hdrs makes request headers from name, value pairs.
func hdrs(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestProxyServesSharedBytes runs `mode proxy` in front of the emulator:
// the gateway answers the emulator's own bytes with private caching
// headers, ETag/304, ranges and HEAD; two allowed users with two browsers'
// Accept headers cost one delivery between them; a refused caller gets
// nothing even for a cached image; another format bucket is another
// fetch; a purge makes the next request fetch again.
func TestProxyServesSharedBytes(t *testing.T) {
	r := startProxyRig(t, proxyRigConfig{settings: `mode proxy {
			cache_size 64MiB
		}
		authorize claim role viewer`})
	alice := mintToken(t, r.jwtSecret, "--sub", "alice", "--claim", "role=viewer")
	bob := mintToken(t, r.jwtSecret, "--sub", "bob", "--claim", "role=viewer")
	carol := mintToken(t, r.jwtSecret, "--sub", "carol", "--claim", "role=guest")
	up := upload(t, r.gateway, alice)
	img := "http://" + r.gateway + "/img/" + up.ID + "/public"
	served := 0 // answers the gateway counts as proxied
	wantDeliveries := func(n float64, when string) {
		t.Helper()
		if got := deliveries(t, r.admin, "public"); got != n {
			t.Fatalf("%s: the emulator delivered %v times, want %v", when, got, n)
		}
	}

	resp, first := get(t, "GET", img, hdrs("Cookie", "session="+alice, "Accept", acceptChrome))
	served++
	// AVIF, or WebP while the emulator's AVIF encoder is still compiling
	// (Cloudflare's documented fallback when AVIF would be slow).
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || (ct != "image/avif" && ct != "image/webp") {
		t.Fatalf("alice: status %d Content-Type %q, want 200 image/avif (or image/webp)", resp.StatusCode, ct)
	}
	if w, h := imageSize(t, first); w != 640 || h != 480 {
		t.Fatalf("the public variant is %dx%d, want the upload's 640x480", w, h)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private, max-age=") {
		t.Errorf("Cache-Control %q, want private, max-age=…", cc)
	}
	if v := resp.Header.Get("Vary"); !strings.Contains(v, "Accept") || !strings.Contains(v, "Cookie") {
		t.Errorf("Vary %q, want Accept and the credential's headers", v)
	}
	etag := resp.Header.Get("Etag")
	if etag == "" || strings.HasPrefix(etag, "W/") {
		t.Fatalf("ETag %q, want a strong one", etag)
	}
	wantDeliveries(1, "after the first view")

	// The same user again, and another allowed user whose browser sends
	// another Accept in the same bucket: both from the byte cache.
	for name, hdr := range map[string]map[string]string{
		"alice again":       hdrs("Cookie", "session="+alice, "Accept", acceptChrome),
		"bob, Firefox":      hdrs("Cookie", "session="+bob, "Accept", acceptFirefox),
		"bob, bearer":       hdrs("Authorization", "Bearer "+bob, "Accept", acceptChrome),
		"alice, stale ETag": hdrs("Cookie", "session="+alice, "Accept", acceptFirefox, "If-None-Match", `"other"`),
		"bob, no-cache rq":  hdrs("Cookie", "session="+bob, "Accept", acceptChrome, "Cache-Control", "no-cache", "Pragma", "no-cache"),
	} {
		resp, body := get(t, "GET", img, hdr)
		served++
		if resp.StatusCode != 200 || body != first || resp.Header.Get("Etag") != etag {
			t.Errorf("%s: status %d, %d bytes, ETag %q; want 200 with the first answer's %d bytes and ETag", name, resp.StatusCode, len(body), resp.Header.Get("Etag"), len(first))
		}
	}
	wantDeliveries(1, "after five more views by two users")

	// Revalidation, a range and HEAD, all from the cache.
	resp, body := get(t, "GET", img, hdrs("Cookie", "session="+bob, "Accept", acceptChrome, "If-None-Match", etag))
	served++
	if resp.StatusCode != 304 || body != "" {
		t.Errorf("If-None-Match: status %d with %d bytes, want 304 without a body", resp.StatusCode, len(body))
	}
	resp, body = get(t, "GET", img, hdrs("Cookie", "session="+alice, "Accept", acceptChrome, "Range", "bytes=10-99"))
	served++
	if resp.StatusCode != 206 || body != first[10:100] || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 10-99/%d", len(first)) {
		t.Errorf("Range: status %d Content-Range %q, %d bytes (equal to the slice: %v); want 206 bytes 10-99/%d",
			resp.StatusCode, resp.Header.Get("Content-Range"), len(body), body == first[10:100], len(first))
	}
	resp, body = get(t, "HEAD", img, hdrs("Cookie", "session="+alice, "Accept", acceptChrome))
	served++
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != strconv.Itoa(len(first)) {
		t.Errorf("HEAD: status %d Content-Length %q body %d bytes; want 200, %d, none", resp.StatusCode, resp.Header.Get("Content-Length"), len(body), len(first))
	}

	// The cached bytes are no capability: a caller who may not see the
	// image, or who has no session, gets a refusal.
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"carol (not allowed)", hdrs("Cookie", "session="+carol, "Accept", acceptChrome), 403},
		{"no session", hdrs("Accept", acceptChrome), 401},
		{"a forged token", hdrs("Cookie", "session="+alice[:len(alice)-4]+"AAAA", "Accept", acceptChrome), 401},
	} {
		resp, body := get(t, "GET", img, tc.hdr)
		if resp.StatusCode != tc.want || resp.Header.Get("Cache-Control") != "no-store" || body != "" {
			t.Errorf("%s: status %d Cache-Control %q body %d bytes; want %d, no-store, no body", tc.name, resp.StatusCode, resp.Header.Get("Cache-Control"), len(body), tc.want)
		}
		if tc.want == 401 && resp.Header.Get("Www-Authenticate") != "Bearer" {
			t.Errorf("%s: WWW-Authenticate %q, want Bearer", tc.name, resp.Header.Get("Www-Authenticate"))
		}
	}
	wantDeliveries(1, "after revalidation, a range, HEAD and refusals")

	// A client that names neither AVIF nor WebP is another bucket: one
	// more fetch, answered in the original format, shared by the bucket.
	resp, original := get(t, "GET", img, hdrs("Cookie", "session="+alice, "Accept", "image/png"))
	served++
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("Accept image/png: status %d Content-Type %q, want 200 image/png", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	wantDeliveries(2, "after the first view in the original bucket")
	if resp, body := get(t, "GET", img, hdrs("Cookie", "session="+bob, "Accept", "*/*")); resp.StatusCode != 200 || body != original {
		t.Errorf("Accept */*: status %d, %d bytes; want the PNG answer", resp.StatusCode, len(body))
	}
	served++
	wantDeliveries(2, "after a second view in the original bucket")

	// A purge drops both buckets; the next view fetches again.
	if n := purgeImage(t, r.admin, `{"id":"`+up.ID+`","variant":"thumbnail"}`); n != 0 {
		t.Errorf("purging a variant never fetched dropped %d entries, want 0", n)
	}
	if n := purgeImage(t, r.admin, `{"id":"`+up.ID+`"}`); n != 2 {
		t.Errorf("purge dropped %d entries, want 2 (the AVIF and original buckets)", n)
	}
	if resp, body := get(t, "GET", img, hdrs("Cookie", "session="+bob, "Accept", acceptChrome)); resp.StatusCode != 200 || body != first {
		t.Errorf("after the purge: status %d, %d bytes; want the first answer", resp.StatusCode, len(body))
	}
	served++
	wantDeliveries(3, "after the purge and one view")

	for series, want := range map[string]float64{
		`imagegate_upstream_fetches_total{status="2xx"}`:                   3,
		`imagegate_requests_total{outcome="proxied",variant="public"}`:     float64(served),
		`imagegate_billable_deliveries_total{variant="public"}`:            3,
		`imagegate_requests_total{outcome="forbidden",variant="public"}`:   1,
		`imagegate_requests_total{outcome="redirect",variant="public"}`:    0,
		`imagegate_emulator_deliveries_total{code="200",variant="public"}`: 3,
	} {
		if got := scrapeSeries(t, r.admin, series); got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}

	// The bytes are the emulator's own: fetch a signed URL directly with
	// each bucket's Accept and compare.
	exp := time.Now().Add(time.Hour).Unix()
	for accept, want := range map[string]string{acceptAVIFUpstream: first, "image/*,*/*;q=0.8": original} {
		resp, body := get(t, "GET", signedURL(emuKey, r.emulator, up.ID, "public", exp), hdrs("Accept", accept))
		if resp.StatusCode != 200 || body != want {
			t.Errorf("direct delivery with Accept %q: status %d, %d bytes; the gateway's answer has %d, equal: %v", accept, resp.StatusCode, len(body), len(want), body == want)
		}
	}
}

// TestProxyMaxObjectStreamsUncached: an image over max_object is answered
// whole but not kept, so each view is a delivery.
func TestProxyMaxObjectStreamsUncached(t *testing.T) {
	r := startProxyRig(t, proxyRigConfig{settings: `mode proxy {
			cache_size 64MiB
			max_object 1KB
		}`})
	alice := mintToken(t, r.jwtSecret, "--sub", "alice")
	up := upload(t, r.gateway, alice)
	img := "http://" + r.gateway + "/img/" + up.ID + "/public"
	exp := time.Now().Add(time.Hour).Unix()
	_, direct := get(t, "GET", signedURL(emuKey, r.emulator, up.ID, "public", exp), hdrs("Accept", acceptAVIFUpstream))
	if len(direct) <= 1000 {
		t.Fatalf("the image is %d bytes, not over max_object: the test proves nothing", len(direct))
	}
	for i := 1; i <= 2; i++ {
		resp, body := get(t, "GET", img, hdrs("Cookie", "session="+alice, "Accept", acceptChrome))
		if resp.StatusCode != 200 || body != direct {
			t.Fatalf("view %d: status %d, %d bytes; want 200 with the emulator's %d bytes", i, resp.StatusCode, len(body), len(direct))
		}
		if got := deliveries(t, r.admin, "public"); got != float64(1+i) { // 1: the direct fetch
			t.Fatalf("after view %d: %v deliveries, want %d: an object over max_object was cached", i, got, 1+i)
		}
	}
	if n := scrapeSeries(t, r.admin, "imagegate_byte_cache_resident_bytes"); n != 0 {
		t.Errorf("the byte cache holds %v bytes, want 0", n)
	}
}

// standIn is an upstream that stands in for Cloudflare's delivery: it
// records every request's headers and answers by image id, with headers
// that must not reach the client.
type standIn struct {
	*httptest.Server
	png     []byte
	release chan struct{} // closed when the test ends, to free hung requests

	mu   sync.Mutex
	hits map[string]int // by image id
	reqs []http.Header
}

// Values that the stand-in sends and that must never leave the gateway.
const (
	upstreamCookie = "upstream-cookie-value-3b91"
	upstreamSecret = "upstream-secret-header-c07e"
	upstreamBody   = "upstream-error-body-5d2a"
)

func newStandIn(t *testing.T) *standIn {
	s := &standIn{png: smallPNG(t), release: make(chan struct{}), hits: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() { close(s.release); s.Close() })
	return s
}

func (s *standIn) serve(w http.ResponseWriter, r *http.Request) {
	segs := strings.Split(r.URL.Path, "/") // "", hash, id, variant
	id := ""
	if len(segs) == 4 {
		id = segs[2]
	}
	s.mu.Lock()
	s.hits[id]++
	s.reqs = append(s.reqs, r.Header.Clone())
	s.mu.Unlock()
	h := w.Header()
	h.Set("Set-Cookie", "cf_session="+upstreamCookie+"; Path=/; HttpOnly")
	h.Set("Location", s.URL+"/elsewhere")
	h.Set("Cf-Ray", "8f00000000000000-AMS")
	h.Set("X-Secret", upstreamSecret)
	switch id {
	case "ok":
		h.Set("Content-Type", "image/png")
		w.Write(s.png)
	case "missing":
		http.Error(w, upstreamBody, http.StatusNotFound)
	case "refused":
		http.Error(w, upstreamBody, http.StatusForbidden)
	case "broken":
		http.Error(w, upstreamBody, http.StatusInternalServerError)
	case "hang":
		select { // past the gateway's timeout, bounded
		case <-r.Context().Done():
		case <-s.release:
		case <-time.After(20 * time.Second):
		}
	default:
		http.Error(w, upstreamBody, http.StatusBadRequest)
	}
}

func (s *standIn) hitsOf(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[id]
}

// smallPNG is a 32×32 image.
func smallPNG(t *testing.T) []byte {
	m := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for i := range m.Pix {
		m.Pix[i] = uint8(i)
	}
	m.Set(0, 0, color.RGBA{255, 0, 0, 255})
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestProxyHeaderHygiene puts a recording stand-in where Cloudflare would
// be. The gateway must send it nothing of the caller's (cookies,
// credentials, forwarding headers) and pass nothing of its headers back;
// upstream 404, 403, 500 and a hang past the timeout become 404, 502, 502
// and 504 with no-store and are never cached; a refused signature is
// logged at error level with the key's fingerprint; and no answer, log
// line or metric carries a signature, the upstream's address or its
// cookie.
func TestProxyHeaderHygiene(t *testing.T) {
	up := newStandIn(t)
	upAddr := strings.TrimPrefix(up.URL, "http://")
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	deadSite := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	deadAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t)) // nothing listens there
	gateway := func(addr, delivery string) string {
		return fmt.Sprintf(`http://%s {
	log
	cf_images {
		account_hash {env.CF_ACCOUNT_HASH}
		signing_key  {env.CF_IMAGES_KEY}
		delivery_url %s
		variants     public
		mode proxy {
			timeout 1s
		}
		session jwt {
			cookie session
			header Authorization
			secret {env.JWT_SECRET}
		}
	}
}
`, addr, delivery)
	}
	global := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tlog {\n\t\tlevel DEBUG\n\t}\n}\n", admin)
	srv := start(t, global+gateway(site, up.URL)+gateway(deadSite, "http://"+deadAddr),
		append([]string{"JWT_SECRET=" + e2eJWTSecret}, gatewayEnv...), admin, site, deadSite)

	secret := filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(secret, []byte(e2eJWTSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	token := mintToken(t, secret, "--sub", "alice")
	const callerCookie = "caller-tracking-cookie-8e44"
	caller := hdrs(
		"Cookie", "session="+token+"; tracking="+callerCookie,
		"Authorization", "Bearer "+token,
		"Accept", acceptChrome,
		"X-Forwarded-For", "203.0.113.7",
		"X-Forwarded-Host", "app.example",
		"X-Forwarded-Proto", "https",
		"Forwarded", "for=203.0.113.7;proto=https",
		"X-Real-Ip", "203.0.113.7",
	)
	var answers []string // every status line, header and text body the client saw
	record := func(resp *http.Response, body string) {
		var b strings.Builder
		fmt.Fprintln(&b, resp.Status)
		_ = resp.Header.Write(&b)
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") { // the stand-in's PNG is the test's own
			b.WriteString(body)
		}
		answers = append(answers, b.String())
	}

	for i := range 2 {
		resp, body := get(t, "GET", "http://"+site+"/img/ok/public", caller)
		record(resp, body)
		if resp.StatusCode != 200 || body != string(up.png) {
			t.Fatalf("view %d: status %d, %d bytes; want 200 with the upstream's %d bytes", i+1, resp.StatusCode, len(body), len(up.png))
		}
		for _, h := range []string{"Set-Cookie", "Location", "Cf-Ray", "X-Secret"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("view %d: the upstream's %s reached the client: %q", i+1, h, v)
			}
		}
	}
	if n := up.hitsOf("ok"); n != 1 {
		t.Errorf("two views made %d upstream fetches, want 1", n)
	}

	for _, tc := range []struct {
		id   string
		want int
	}{
		{"missing", 404},
		{"refused", 502},
		{"broken", 502},
		{"hang", 504},
	} {
		for i := range 2 {
			began := time.Now()
			resp, body := get(t, "GET", "http://"+site+"/img/"+tc.id+"/public", caller)
			took := time.Since(began)
			record(resp, body)
			if resp.StatusCode != tc.want || resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s, request %d: status %d Cache-Control %q, want %d no-store", tc.id, i+1, resp.StatusCode, resp.Header.Get("Cache-Control"), tc.want)
			}
			if tc.id == "hang" && (took < 900*time.Millisecond || took > 5*time.Second) {
				t.Errorf("hang, request %d: answered after %v, want about the 1s timeout", i+1, took)
			}
		}
		// A 404 is remembered for negative_ttl (30s by default), so a
		// made-up id costs one fetch; a fault is never remembered.
		want := 2
		if tc.want == 404 {
			want = 1
		}
		if n := up.hitsOf(tc.id); n != want {
			t.Errorf("%s: two requests made %d upstream fetches, want %d (a 404 is remembered, a fault never)", tc.id, n, want)
		}
	}
	resp, body := get(t, "GET", "http://"+deadSite+"/img/ok/public", caller)
	record(resp, body)
	if resp.StatusCode != 502 || resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("upstream refusing connections: status %d Cache-Control %q, want 502 no-store", resp.StatusCode, resp.Header.Get("Cache-Control"))
	}

	// What upstream saw: only the bucket's Accept and the gateway's own
	// User-Agent.
	up.mu.Lock()
	reqs := up.reqs
	up.mu.Unlock()
	if len(reqs) != 8 { // ok once, the 404 once (remembered), each other fault twice
		t.Errorf("the stand-in saw %d requests, want 8", len(reqs))
	}
	unexpected := map[string]bool{}
	for _, h := range reqs {
		for name, vs := range h {
			switch name {
			case "Accept":
				if vs[0] != acceptAVIFUpstream {
					t.Errorf("upstream got Accept %q, want the bucket's %q", vs[0], acceptAVIFUpstream)
				}
			case "User-Agent":
				if !strings.HasPrefix(vs[0], "imagegate/") {
					t.Errorf("upstream got User-Agent %q", vs[0])
				}
			default:
				unexpected[name] = true // its value may be the caller's credential: not printed
			}
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("upstream got headers beyond Accept and User-Agent: %v", slices.Sorted(maps.Keys(unexpected)))
	}

	// The refused signature is an operator's problem: logged at error
	// level with the key's fingerprint.
	keyID := signer.Fingerprint([]byte(testKey))
	if !waitForLog(srv, 5*time.Second, func(l map[string]any) bool {
		msg, _ := l["msg"].(string)
		return l["level"] == "error" && l["key_id"] == keyID && strings.Contains(msg, "signature")
	}) {
		t.Errorf("no error-level log line names key_id %s for the refused signature", keyID)
	}

	_, metrics := get(t, "GET", "http://"+admin+"/metrics", nil)
	leaks := map[string]string{
		"a signature":          "sig=",
		"the upstream address": upAddr,
		"the dead address":     deadAddr,
		"the upstream cookie":  upstreamCookie,
		"the upstream header":  upstreamSecret,
		"the upstream body":    upstreamBody,
		"the caller's token":   token,
		"the caller's cookie":  callerCookie,
	}
	isAddress := map[string]bool{upAddr: true, deadAddr: true}
	// Addresses are configuration, not secrets: the lines that echo the
	// configuration may name them (the start-up line, and Caddy's debug
	// line with the adapted config), and nothing else: a failed dial's
	// error is logged without its address.
	echoesConfig := func(line string) bool {
		return strings.Contains(line, `"msg":"cf_images ready"`) || strings.Contains(line, `"msg":"adjusted config"`)
	}
	for what, s := range leaks {
		for i, a := range answers {
			if strings.Contains(a, s) {
				t.Errorf("answer %d carries %s:\n%s", i+1, what, a)
			}
		}
		if strings.Contains(metrics, s) {
			t.Errorf("/metrics carries %s", what)
		}
		for _, line := range strings.Split(srv.logs.String(), "\n") {
			if strings.Contains(line, s) && !(isAddress[s] && echoesConfig(line)) {
				t.Errorf("a log line carries %s: %s", what, line)
			}
		}
	}
}

// waitForLog reports whether a JSON log line for which match is true
// appears within d.
func waitForLog(srv *server, d time.Duration, match func(map[string]any) bool) bool {
	for deadline := time.Now().Add(d); ; {
		for _, line := range strings.Split(srv.logs.String(), "\n") {
			var l map[string]any
			if json.Unmarshal([]byte(line), &l) == nil && match(l) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
