package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/seed-a64a90cf/imagegate/config"
	"github.com/seed-a64a90cf/imagegate/session"
)

// page is served by the gateway's site in the browser test: it shows the
// image whose id follows '#', as an app's page would with an <img> tag.
const page = `<!doctype html><title>gallery</title><img id="t" alt="">` +
	`<script>document.getElementById("t").src = "/img/" + location.hash.slice(1) + "/thumbnail";</script>`

// browser starts headless Chromium (Debian's package) with flags that keep
// it off the network, and returns a context for its first tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := requireTool(t, "chromium")
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

// placeholderSize is the side of the SVG Caddyfile.example's handle_errors
// serves for a refused image.
const placeholderSize = 64

// thumbCounts is what the gateway and the emulator have counted for the
// thumbnail variant, read from Caddy's /metrics.
type thumbCounts struct {
	redirects  float64 // 302s the gateway answered
	forbidden  float64 // 403s the gateway answered
	delivered  float64 // images the emulator delivered (200): what Cloudflare bills
	emuAnswers float64 // every answer of the emulator's delivery path: any status, and 304s
}

var (
	thumbRedirects  = regexp.MustCompile(`(?m)^imagegate_requests_total\{outcome="redirect",variant="thumbnail"\} (\S+)$`)
	thumbForbidden  = regexp.MustCompile(`(?m)^imagegate_requests_total\{outcome="forbidden",variant="thumbnail"\} (\S+)$`)
	thumbDelivered  = regexp.MustCompile(`(?m)^imagegate_emulator_deliveries_total\{code="200",variant="thumbnail"\} (\S+)$`)
	thumbEmuAnswers = regexp.MustCompile(`(?m)^imagegate_emulator_(?:deliveries_total\{code="\d+",variant="thumbnail"\}|not_modified_total\{variant="thumbnail"\}) (\S+)$`)
)

func scrapeThumb(t *testing.T, admin string) thumbCounts {
	t.Helper()
	resp, body := get(t, "GET", "http://"+admin+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	sum := func(re *regexp.Regexp) float64 {
		var n float64
		for _, m := range re.FindAllStringSubmatch(body, -1) {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", m[0], err)
			}
			n += v
		}
		return n
	}
	return thumbCounts{sum(thumbRedirects), sum(thumbForbidden), sum(thumbDelivered), sum(thumbEmuAnswers)}
}

// TestBrowserCachesStableURL loads a page with an <img> through the
// gateway in a real browser, twice, in two tabs, with the session cookie
// renewed in between (a fresh token for the same user, as an app re-issues
// them). The gateway answers Vary: Cookie, so the browser cannot reuse its
// cached 302 and must ask the gateway again; the gateway answers with the
// same stable URL, whose image the browser still holds, so the emulated
// Cloudflare delivers once and is not even asked to revalidate. With
// per-request signing the second answer would be a new URL and a second
// delivery. A browser without a session gets no image, and neither does
// another user who signs in on the same browser.
func TestBrowserCachesStableURL(t *testing.T) {
	requireTool(t, "chromium") // before starting anything
	gateway, _, admin := startExampleWith(t, map[string]string{
		`respond "imagegate: GET /img/<id>/<variant>, POST /img/upload" 404`: "header /page.html Content-Type \"text/html; charset=utf-8\"\n\trespond /page.html `" + page + "` 200",
	})
	// Tokens as `imagegate token --secret-file dev/jwt-secret` mints them
	// (TestExampleEndToEnd runs that command), minted in-process because
	// each run of a race-enabled binary costs a second.
	secret, err := config.ReadSecretFile("secret_file", repoPath(t, "dev/jwt-secret"))
	if err != nil {
		t.Fatal(err)
	}
	token := func(sub string, claims map[string]string) string {
		t.Helper()
		tok, err := session.MintHS256(secret, sub, time.Hour, claims, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	alice := token("alice", nil)
	up := upload(t, gateway, alice)

	ctx := browser(t)
	// Without a session the gateway answers 401, and Caddyfile.example's
	// handle_errors shows its 64×64 placeholder instead of the image.
	if w, h := showImage(t, ctx, gateway, up.ID, "anonymous"); w != placeholderSize || h != placeholderSize {
		t.Fatalf("an anonymous browser loaded a %dx%d image, want the %dx%[3]d placeholder", w, h, placeholderSize)
	}
	host, _, _ := strings.Cut(gateway, ":")
	httpOnly := true
	setSession := func(token string) {
		t.Helper()
		if _, err := chromedp.Call(ctx, network.SetCookie, network.SetCookieParams{
			Name: "session", Value: token, Domain: host, Path: "/", HTTPOnly: &httpOnly,
		}); err != nil {
			t.Fatal(err)
		}
	}
	setSession(alice)
	if w, h := showImage(t, ctx, gateway, up.ID, "first"); w != 200 || h != 200 {
		t.Fatalf("first view: image is %dx%d, want 200x200", w, h)
	}
	first := scrapeThumb(t, admin)
	if first != (thumbCounts{redirects: 1, delivered: 1, emuAnswers: 1}) {
		t.Fatalf("after the first view: %+v, want one 302 and one delivery", first)
	}

	// A renewed token for alice: a different cookie value, the same user.
	renewed := token("alice", map[string]string{"renewed": "yes"})
	if renewed == alice {
		t.Fatal("the renewed token equals the first one, so the browser would not ask again")
	}
	setSession(renewed)
	if w, h := showImage(t, ctx, gateway, up.ID, "second"); w != 200 || h != 200 {
		t.Fatalf("second view: image is %dx%d, want 200x200", w, h)
	}
	second := scrapeThumb(t, admin)
	t.Logf("gateway 302s: %v then %v; emulator deliveries: %v then %v; emulator answers: %v then %v",
		first.redirects, second.redirects, first.delivered, second.delivered, first.emuAnswers, second.emuAnswers)
	if second.redirects != 2 {
		t.Fatalf("after the second view: the gateway answered %v 302s, want 2 (the renewed cookie must bypass the browser's cached 302)", second.redirects)
	}
	if second.delivered != 1 {
		t.Fatalf("after the second view: %v deliveries, want still 1 (the same URL, served from the browser's cache)", second.delivered)
	}
	if second.emuAnswers != 1 {
		t.Fatalf("after the second view: the emulator answered %v delivery requests, want still 1 (no revalidation)", second.emuAnswers)
	}

	// Another user signs in on the same browser. The cached answer varies on
	// the cookie, so the browser asks the gateway again, which refuses bob.
	setSession(token("bob", nil))
	if w, h := showImage(t, ctx, gateway, up.ID, "bob"); w != placeholderSize || h != placeholderSize {
		t.Fatalf("bob, on alice's browser, saw a %dx%d image, want the placeholder, not her image from the cache", w, h)
	}
	if third := scrapeThumb(t, admin); third != (thumbCounts{redirects: 2, forbidden: 1, delivered: 1, emuAnswers: 1}) {
		t.Fatalf("after bob's view: %+v, want the gateway to have refused bob once and nothing more delivered", third)
	}
}
