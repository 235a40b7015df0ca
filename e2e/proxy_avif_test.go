package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/gen2brain/avif"
)

// TestProxyBrowserAVIF: Chromium, which accepts AVIF, views an image
// through a proxy-mode gateway and gets AVIF bytes from the emulator,
// through the byte cache; clients in the WebP and original buckets get
// their own formats; and the emulator delivers once per format bucket,
// however many views each bucket has.
func TestProxyBrowserAVIF(t *testing.T) {
	r := startProxyRig(t, proxyRigConfig{
		site: "header /gallery.html Content-Type \"text/html; charset=utf-8\"\n\trespond /gallery.html `" + galleryPage + "` 200",
		settings: `mode proxy {
			cache_size 64MiB
		}`,
	})
	user := mintToken(t, r.jwtSecret, "--sub", "viewer")
	id := upload(t, r.gateway, user).ID
	waitEmulatorAVIF(t, r.emulator, id)
	thumb := "http://" + r.gateway + "/img/" + id + "/thumbnail"

	ctx := browser(t)
	host, _, _ := strings.Cut(r.gateway, ":")
	httpOnly := true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: "session", Value: user, Domain: host, Path: "/", HTTPOnly: &httpOnly,
	}); err != nil {
		t.Fatal(err)
	}
	const views = 3
	for v := range views {
		w, mime := viewThumbnail(t, ctx, r.gateway, id)
		if w != 200 || mime != "image/avif" {
			t.Fatalf("view %d: Chromium got %q, decoded %d px wide; want the 200-px thumbnail as image/avif", v+1, mime, w)
		}
	}

	// The same bytes to a client with Chromium's Accept: a real AVIF.
	auth := "Bearer " + user
	resp, body := get(t, "GET", thumb, map[string]string{"Authorization": auth, "Accept": acceptChrome})
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/avif" {
		t.Fatalf("Chrome's Accept: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if cfg, err := avif.DecodeConfig(strings.NewReader(body)); err != nil || cfg.Width != 200 || cfg.Height != 200 {
		t.Fatalf("the AVIF bucket's bytes do not decode as a 200×200 AVIF: %v %+v", err, cfg)
	}
	avifETag := resp.Header.Get("Etag")

	// The other two buckets, each viewed twice.
	etags := map[string]string{"image/avif": avifETag}
	for _, tc := range []struct{ accept, want string }{
		{"image/webp,*/*", "image/webp"},
		{"*/*", "image/png"}, // the upload is a PNG
	} {
		for range 2 {
			resp, _ := get(t, "GET", thumb, map[string]string{"Authorization": auth, "Accept": tc.accept})
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.want {
				t.Fatalf("Accept %q: %d %q, want %s", tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), tc.want)
			}
			if v := resp.Header.Get("Vary"); !strings.Contains(v, "Accept") {
				t.Errorf("Accept %q: Vary %q", tc.accept, v)
			}
			etags[tc.want] = resp.Header.Get("Etag")
		}
	}
	if len(etags) != 3 || etags["image/avif"] == etags["image/webp"] || etags["image/webp"] == etags["image/png"] ||
		etags["image/avif"] == etags["image/png"] {
		t.Errorf("ETags per format: %v, want three different", etags)
	}
	if n := deliveries(t, r.admin, "thumbnail"); n != 3 {
		t.Errorf("the emulator delivered the thumbnail %v times, want 3: one per format bucket (%d AVIF views, 2 WebP, 2 original)", n, views+1)
	}
}

// viewThumbnail shows the gallery of one image in a new tab with the
// browser cache off, and returns the image's natural width and the MIME
// type of the response Chromium received for it, from its network events.
func viewThumbnail(t *testing.T, ctx context.Context, gateway, id string) (width int, mime string) {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	defer cancel()
	url := "http://" + gateway + "/img/" + id + "/thumbnail"
	var mu sync.Mutex
	if err := chromedp.Listen(tab, func(ev any) {
		if ev, ok := ev.(*network.EventResponseReceived); ok && ev.Response.URL == url {
			mu.Lock()
			mime = ev.Response.MimeType
			mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("listening to the tab: %v", err)
	}
	if _, err := chromedp.Call(tab, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("enabling network events: %v", err)
	}
	if _, err := chromedp.Call(tab, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatalf("turning the browser cache off: %v", err)
	}
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+gateway+"/gallery.html#"+id)); err != nil {
		t.Fatalf("loading the gallery: %v", err)
	}
	widths, err := chromedp.Run(tab, chromedp.Poll[[]int](
		`(() => { const a = [...document.images]; return a.length && a.every(i => i.complete) ? a.map(i => i.naturalWidth) : null })()`,
		chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil || len(widths) != 1 {
		t.Fatalf("waiting for the image: %v (%v)", err, widths)
	}
	// The response event comes before the image is complete.
	mu.Lock()
	defer mu.Unlock()
	return widths[0], mime
}

// waitEmulatorAVIF waits until the emulator answers AVIF: until its AVIF
// encoder is compiled (seconds, in the background from its start) it
// answers WebP, as Cloudflare does when AVIF would be slow. It asks for
// the public variant, signed, directly, so the gateway's cache and the
// thumbnail's delivery count are untouched.
func waitEmulatorAVIF(t *testing.T, emulator, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		exp := time.Now().Add(time.Hour).Unix()
		resp, _ := get(t, "GET", signedURL(emuKey, emulator, id, "public", exp), map[string]string{"Accept": "image/avif"})
		if resp.StatusCode != 200 {
			t.Fatalf("the emulator answered %d", resp.StatusCode)
		}
		if resp.Header.Get("Content-Type") == "image/avif" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the emulator still answered WebP to AVIF clients after 2 minutes")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
