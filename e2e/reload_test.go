package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/seed-a64a90cf/imagegate/signer"
)

// reloadWindow is the expiry policy of the reload test's gateway, spelled
// out so the test can compute the URLs it expects.
var reloadWindow = signer.Window{Size: time.Hour, MinRemaining: 5 * time.Minute}

func gatewayCaddyfile(adminAddr, siteAddr, jwksURL string, cacheSize int) string {
	global := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tgrace_period 5s\n}\n", adminAddr)
	return global + gatewaySite(siteAddr, "", fmt.Sprintf(`variants public thumbnail
		window        %v
		min_remaining %v
		cache_size    %d
		session jwt {
			header   Authorization
			jwks_url %s
		}`, reloadWindow.Size, reloadWindow.MinRemaining, cacheSize, jwksURL))
}

var redirectCount = regexp.MustCompile(`(?m)^imagegate_requests_total\{outcome="redirect",variant="public"\} (\S+)$`)

// scrapeRedirects reads the public variant's redirect counter from Caddy's
// admin /metrics.
func scrapeRedirects(t *testing.T, adminAddr string) float64 {
	t.Helper()
	resp, body := get(t, "GET", "http://"+adminAddr+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	m := redirectCount.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no redirect counter for public:\n%s", grepLines(body, "imagegate_requests_total"))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// identityProvider is a JWKS endpoint on loopback holding ES256 keys, and
// mints tokens with them as an identity provider would.
type identityProvider struct {
	srv     *httptest.Server
	fetches atomic.Int64

	mu   sync.Mutex
	keys map[string]*ecdsa.PrivateKey // by kid
	doc  []byte                       // the public keys as a JWKS document
}

func newIdentityProvider(t *testing.T) *identityProvider {
	p := &identityProvider{keys: map[string]*ecdsa.PrivateKey{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		doc := p.doc
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// addKey generates a key named kid and publishes it next to the others.
func (p *identityProvider) addKey(t *testing.T, kid string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[kid] = key
	set := jwk.NewSet()
	for kid, k := range p.keys {
		pub, err := jwk.Import(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		_ = pub.Set(jwk.KeyIDKey, kid)
		_ = pub.Set(jwk.AlgorithmKey, jwa.ES256())
		_ = pub.Set(jwk.KeyUsageKey, "sig")
		if err := set.AddKey(pub); err != nil {
			t.Fatal(err)
		}
	}
	if p.doc, err = json.Marshal(set); err != nil {
		t.Fatal(err)
	}
}

// mint returns an ES256 token for sub, valid for an hour, signed with the
// key named kid.
func (p *identityProvider) mint(t *testing.T, kid, sub string) string {
	t.Helper()
	p.mu.Lock()
	key := p.keys[kid]
	p.mu.Unlock()
	now := time.Now()
	tok, err := jwt.NewBuilder().Subject(sub).IssuedAt(now).Expiration(now.Add(time.Hour)).Build()
	if err != nil {
		t.Fatal(err)
	}
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.KeyIDKey, kid)
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// maxRetries bounds the connection-level retries of the whole reload test.
// Each reload can reset the few connections queued on the listener it
// replaces; more than that means reloads drop traffic.
const maxRetries = 30

// TestReloadUnderTraffic reloads the config ten times through the admin API
// while clients with JWTs keep asking for images. The session is checked
// against a JWKS endpoint, so every config starts its own key-set refresher
// and stops it when replaced; halfway through, the identity provider
// publishes a new key and the clients switch to tokens signed with it. No
// request may fail, every Location must be exactly the stable URL the
// signer package computes for the image and the moment of the request,
// metrics must stay registered (no duplicate-registration error, no panic),
// and the process-wide counters must keep counting across reloads. Under
// -race the binary is race-enabled, so a race between a reload and traffic
// (or a refresher) fails the test.
func TestReloadUnderTraffic(t *testing.T) {
	const reloads = 10
	idp := newIdentityProvider(t)
	idp.addKey(t, "k1")
	var token atomic.Pointer[string]
	tok := idp.mint(t, "k1", "alice")
	token.Store(&tok)

	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, gatewayCaddyfile(admin, site, idp.srv.URL, 1000), gatewayEnv, admin, site)

	// want computes Locations as the gateway does, from the same key,
	// account hash and window.
	want, err := signer.New(signer.Config{
		DeliveryURL: "http://127.0.0.1:1", AccountHash: testHash, Key: []byte(testKey),
		Window: reloadWindow,
	})
	if err != nil {
		t.Fatal(err)
	}
	// stable reports whether loc is the URL of id handed out at some moment
	// between before and after (a window boundary may fall in between).
	stable := func(loc, id string, before, after time.Time) bool {
		a, _ := want.URL(id, "public", false, before)
		b, _ := want.URL(id, "public", false, after)
		return loc == a.String || loc == b.String
	}

	var (
		served, failed atomic.Int64
		stop           = make(chan struct{})
		wg             sync.WaitGroup
		firstFailure   atomic.Value
	)
	// A fresh connection per request, retried on a transport error as
	// browsers retry idempotent requests: on Linux, Caddy's reload swaps
	// SO_REUSEPORT listeners, and connections still queued on the old
	// socket are reset by the kernel before any handler sees them. What the
	// gateway owns, every request that reaches it answered correctly, must
	// hold with no exception; the retries are counted and bounded.
	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: noRedirect.CheckRedirect,
		Transport:     &http.Transport{DisableKeepAlives: true},
	}
	var retried atomic.Int64
	fetch := func(target string) (*http.Response, error) {
		var err error
		for attempt := range 3 {
			if attempt > 0 {
				retried.Add(1)
			}
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+*token.Load())
			var resp *http.Response
			if resp, err = client.Do(req); err == nil {
				resp.Body.Close()
				return resp, nil
			}
		}
		return nil, err
	}
	answered := func() int64 { return served.Load() + failed.Load() }
	fail := func(msg string) {
		failed.Add(1)
		firstFailure.CompareAndSwap(nil, msg)
	}
	for w := range 2 {
		wg.Go(func() {
			for i := 0; i < 20_000; i++ { // bounded; stopped much earlier
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i%50)
				before := time.Now()
				resp, err := fetch(fmt.Sprintf("http://%s/img/%s/public", site, id))
				switch {
				case err != nil:
					fail(err.Error())
				case resp.StatusCode != http.StatusFound:
					fail(fmt.Sprint("status ", resp.StatusCode))
				case !stable(resp.Header.Get("Location"), id, before, time.Now()):
					// The URL carries a signature: say what differs, not what it is.
					u, _ := url.Parse(resp.Header.Get("Location"))
					fail(fmt.Sprintf("image %s: Location is not the stable URL (path %s, exp %s)", id, u.Path, u.Query().Get("exp")))
				default:
					served.Add(1)
				}
			}
		})
	}

	last := 0.0
	for i := 1; i <= reloads; i++ {
		// Let traffic flow between reloads (bounded wait).
		for target, deadline := answered()+20, time.Now().Add(3*time.Second); answered() < target && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		if i == reloads/2 {
			// Key rotation: the new config fetches the set with k2 when
			// it starts; clients switch once it serves.
			idp.addKey(t, "k2")
		}
		cfg := gatewayCaddyfile(admin, site, idp.srv.URL, 1000+i) // a real change, so Caddy reloads
		req, _ := http.NewRequest("POST", "http://"+admin+"/load", strings.NewReader(cfg))
		req.Header.Set("Content-Type", "text/caddyfile")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("reload %d: status %d", i, resp.StatusCode)
		}
		if i == reloads/2 {
			tok := idp.mint(t, "k2", "alice")
			token.Store(&tok)
		}
		got := scrapeRedirects(t, admin)
		if got < last {
			t.Fatalf("reload %d: redirect counter went back from %v to %v", i, last, got)
		}
		last = got
	}
	// Traffic on the last config, with the rotated key, before stopping.
	for target, deadline := answered()+20, time.Now().Add(3*time.Second); answered() < target && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	t.Logf("%d requests served across %d reloads; %d connection-level retries (bound %d); %d JWKS fetches",
		served.Load(), reloads, retried.Load(), maxRetries, idp.fetches.Load())
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d requests failed during reloads; first: %v", f, firstFailure.Load())
	}
	if served.Load() == 0 {
		t.Fatal("no traffic was served during the reloads")
	}
	if r := retried.Load(); r > maxRetries {
		t.Fatalf("%d connection-level retries across %d reloads, more than %d: reloads drop connections", r, reloads, maxRetries)
	}
	if final := scrapeRedirects(t, admin); final < float64(served.Load()) {
		t.Fatalf("counter %v is below the %d redirects served: counts were lost across reloads", final, served.Load())
	}
	// Every config fetched the key set when it started; with the default
	// refresh interval (15m) and no unknown kid reaching a config, none
	// fetched again.
	if n := idp.fetches.Load(); n != reloads+1 {
		t.Errorf("the JWKS was fetched %d times, want %d: one per config", n, reloads+1)
	}
}
