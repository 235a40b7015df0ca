package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// galleryPage is served by the gateway's site in the proxy browser test:
// it shows the thumbnail of every image whose id is listed, comma-separated,
// after '#'.
const galleryPage = `<!doctype html><title>gallery</title><div id="g"></div><script>` +
	`for (const id of location.hash.slice(1).split(",")) {` +
	`const i = document.createElement("img"); i.src = "/img/" + id + "/thumbnail"; document.getElementById("g").appendChild(i); }` +
	`</script>`

// viewGallery opens the gallery in a new tab of a user's browser context,
// with the browser's cache off so that every view reaches the gateway, and
// returns the loaded images' natural widths (0 for one that failed).
func viewGallery(t *testing.T, userCtx context.Context, gateway string, ids []string) []int {
	t.Helper()
	tab, cancel := chromedp.NewContext(userCtx)
	defer cancel()
	if _, err := chromedp.Call(tab, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true}); err != nil {
		t.Fatalf("turning the browser cache off: %v", err)
	}
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+gateway+"/gallery.html#"+strings.Join(ids, ","))); err != nil {
		t.Fatalf("loading the gallery: %v", err)
	}
	widths, err := chromedp.Run(tab, chromedp.Poll[[]int](
		`(() => { const a = [...document.images]; return a.length && a.every(i => i.complete) ? a.map(i => i.naturalWidth) : null })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		t.Fatalf("waiting for the gallery's images: %v", err)
	}
	return widths
}

// TestProxyBrowserGalleryDeliveries: three users, each in a browser
// context of their own (own cookies, own cache), view a gallery of four
// images twice through a proxy-mode gateway. Every view reaches the
// gateway (the browser cache is off), and Chromium's Accept puts them all
// in one format bucket, so the emulator must deliver each image once:
// deliveries equal the distinct (image, variant, format), not the views.
func TestProxyBrowserGalleryDeliveries(t *testing.T) {
	const users, images, loads = 3, 4, 2
	r := startProxyRig(t, proxyRigConfig{
		site: "header /gallery.html Content-Type \"text/html; charset=utf-8\"\n\trespond /gallery.html `" + galleryPage + "` 200",
		settings: `mode proxy {
			cache_size 64MiB
		}`,
	})
	uploader := mintToken(t, r.jwtSecret, "--sub", "uploader")
	var ids []string
	for range images {
		ids = append(ids, upload(t, r.gateway, uploader).ID)
	}

	ctx := browser(t)
	host, _, _ := strings.Cut(r.gateway, ":")
	httpOnly := true
	began := time.Now()
	tokens := map[context.Context]string{}
	for u := range users {
		userCtx, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
		defer cancel()
		token := mintToken(t, r.jwtSecret, "--sub", "user-"+string(rune('a'+u)))
		tokens[userCtx] = token
		if _, err := chromedp.Call(userCtx, network.SetCookie, network.SetCookieParams{
			Name: "session", Value: token, Domain: host, Path: "/", HTTPOnly: &httpOnly,
		}); err != nil {
			t.Fatal(err)
		}
		for load := range loads {
			for i, w := range viewGallery(t, userCtx, r.gateway, ids) {
				if w != 200 {
					t.Fatalf("user %d, load %d: image %d is %d wide, want the thumbnail's 200", u+1, load+1, i+1, w)
				}
			}
		}
	}
	// Each context kept its own user's cookie: three sessions, not one.
	for userCtx, token := range tokens {
		res, err := chromedp.Call(userCtx, network.GetCookies, network.GetCookiesParams{URLs: []string{"http://" + r.gateway + "/"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Cookies) != 1 || res.Cookies[0].Value != token {
			t.Fatalf("a user's browser context holds %d cookies, not just its own session", len(res.Cookies))
		}
	}
	views := users * images * loads
	proxied := scrapeSeries(t, r.admin, `imagegate_requests_total{outcome="proxied",variant="thumbnail"}`)
	delivered := deliveries(t, r.admin, "thumbnail")
	t.Logf("%d users × %d images × %d loads = %d views in %v: the gateway proxied %v requests, the emulator delivered %v times",
		users, images, loads, views, time.Since(began).Round(time.Millisecond), proxied, delivered)
	if proxied != float64(views) {
		t.Errorf("the gateway proxied %v requests, want one per view (%d): the test would not exercise the byte cache", proxied, views)
	}
	if delivered != images {
		t.Errorf("the emulator delivered %v times, want %d, one per (image, variant, format)", delivered, images)
	}
}
