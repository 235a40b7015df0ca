package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// page is served by the gateway's site in the browser test: it shows the
// image whose id follows '#', as an app's page would with an <img> tag.
const page = `<!doctype html><title>gallery</title><img id="t" alt="">` +
	`<script>document.getElementById("t").src = "/img/" + location.hash.slice(1) + "/thumbnail";</script>`

// browser starts headless Chromium (Debian's package) with flags that keep
// it off the network, and returns a context for its first tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium is not installed; .ci/run installs Debian's chromium package")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// showImage opens the gallery page for id in a new tab and returns the
// loaded image's natural size (0×0 if it failed to load).
func showImage(t *testing.T, browserCtx context.Context, gateway, id, query string) (w, h int) {
	t.Helper()
	tab, cancel := chromedp.NewContext(browserCtx)
	defer cancel()
	if err := chromedp.Do(tab, chromedp.Navigate("http://"+gateway+"/page.html?"+query+"#"+id)); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	size, err := chromedp.Run(tab, chromedp.Poll[[]int](
		`(() => { const i = document.getElementById("t"); return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null })()`,
		chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil || len(size) != 2 {
		t.Fatalf("waiting for the image: %v", err)
	}
	return size[0], size[1]
}

// TestBrowserCachesStableURL loads a page with an <img> through the
// gateway in a real browser, twice, in two tabs: the first view is one
// delivery from the (emulated) Cloudflare, the second is served from the
// browser's cache because the 302 and the signed URL are stable and
// cacheable, so Cloudflare is not asked (and would not bill) again. A
// browser without a session gets no image, and neither does another user
// who signs in on the same browser.
func TestBrowserCachesStableURL(t *testing.T) {
	gateway, _, admin := startExampleWith(t, map[string]string{
		`respond "imagegate: GET /img/<id>/<variant>, POST /img/upload" 404`: "header /page.html Content-Type \"text/html; charset=utf-8\"\n\trespond /page.html `" + page + "` 200",
	})
	alice := mintToken(t, repoPath(t, "dev/jwt-secret"), "--sub", "alice")
	up := upload(t, gateway, alice)

	ctx := browser(t)
	// Without a session the gateway answers 401 and the image does not load.
	if w, h := showImage(t, ctx, gateway, up.ID, "anonymous"); w != 0 || h != 0 {
		t.Fatalf("an anonymous browser loaded a %dx%d image", w, h)
	}
	host, _, _ := strings.Cut(gateway, ":")
	httpOnly := true
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: "session", Value: alice, Domain: host, Path: "/", HTTPOnly: &httpOnly,
	}); err != nil {
		t.Fatal(err)
	}
	if w, h := showImage(t, ctx, gateway, up.ID, "first"); w != 200 || h != 200 {
		t.Fatalf("first view: image is %dx%d, want 200x200", w, h)
	}
	if n := deliveries(t, admin, "thumbnail"); n != 1 {
		t.Fatalf("after the first view: %v deliveries, want 1", n)
	}
	if w, h := showImage(t, ctx, gateway, up.ID, "second"); w != 200 || h != 200 {
		t.Fatalf("second view: image is %dx%d, want 200x200", w, h)
	}
	if n := deliveries(t, admin, "thumbnail"); n != 1 {
		t.Fatalf("after the second view: %v deliveries, want still 1 (served from the browser's cache)", n)
	}

	// Another user signs in on the same browser. The cached answer varies on
	// the cookie, so the browser asks the gateway again, which refuses bob.
	bob := mintToken(t, repoPath(t, "dev/jwt-secret"), "--sub", "bob")
	if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
		Name: "session", Value: bob, Domain: host, Path: "/", HTTPOnly: &httpOnly,
	}); err != nil {
		t.Fatal(err)
	}
	if w, h := showImage(t, ctx, gateway, up.ID, "bob"); w != 0 || h != 0 {
		t.Fatalf("bob, on alice's browser, saw her %dx%d image from the cache", w, h)
	}
}
