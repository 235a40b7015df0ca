package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/session"
)

// fleetAccountID is the emulator's default account id, which the replicas'
// api_url and account_id name.
const fleetAccountID = "0123456789abcdef0123456789abcdef"

// fleetReplica is one gateway process of the fleet: a redirect-mode site
// (which also issues upload URLs), a proxy-mode site, and Caddy's admin
// endpoint, each on its own loopback port.
type fleetReplica struct {
	name     string
	redirect string // host:port of the redirect-mode site
	proxy    string // host:port of the proxy-mode site
	admin    string // host:port of the admin endpoint (/metrics, /cf_images/purge)
	srv      *server
}

// fleetRig is two replicas sharing one Redis, next to one emulator in a
// third process. The replicas reach Redis through link, which can make it
// hang.
type fleetRig struct {
	redis    *redistest.Server
	link     *fleetRedisLink
	rdb      *redis.Client // straight to Redis, for the test's own look
	emu      string        // host:port of the emulator
	emuAdmin string        // host:port of the emulator process's admin endpoint
	r        [2]*fleetReplica

	// Secrets and identities, random per run, that Redis must never hold.
	apiToken, signingKey, jwtSecret string
	owner, uploader                 string // subjects
	ownerToken, uploaderToken       string // their JWTs
}

// fleetHex returns n random bytes in hex.
func fleetHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startFleet starts Redis, the link to it, the emulator and two replicas
// with the same Caddyfile but for their ports.
func startFleet(t *testing.T) *fleetRig {
	t.Helper()
	f := &fleetRig{
		redis:      redistest.Start(t),
		apiToken:   "fleet-api-token-" + fleetHex(t, 8),
		signingKey: "fleet-signing-key-" + fleetHex(t, 8),
		jwtSecret:  "fleet-jwt-secret-" + fleetHex(t, 16),
		owner:      "fleet-owner-" + fleetHex(t, 4),
		uploader:   "fleet-uploader-" + fleetHex(t, 4),
	}
	f.link = startFleetRedisLink(t, f.redis.Addr)
	f.rdb = redis.NewClient(&redis.Options{Addr: f.redis.Addr, Password: f.redis.Password})
	t.Cleanup(func() { f.rdb.Close() })
	var err error
	if f.ownerToken, err = session.MintHS256([]byte(f.jwtSecret), f.owner, time.Hour, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if f.uploaderToken, err = session.MintHS256([]byte(f.jwtSecret), f.uploader, time.Hour, nil, time.Now()); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	secretFile := dir + "/jwt.secret"
	if err := os.WriteFile(secretFile, []byte(f.jwtSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"FLEET_API_TOKEN=" + f.apiToken,
		"FLEET_SIGNING_KEY=" + f.signingKey,
		"REDIS_PASSWORD=" + f.redis.Password,
	}

	f.emu = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	f.emuAdmin = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://%s {
	bind 127.0.0.1
	cf_images_emulator {
		api_token   {env.FLEET_API_TOKEN}
		signing_key {env.FLEET_SIGNING_KEY}
		storage     memory
	}
}
`, f.emuAdmin, f.emu), env, f.emu, f.emuAdmin)

	common := fmt.Sprintf(`account_hash  emu-account-hash
		signing_key   {env.FLEET_SIGNING_KEY}
		delivery_url  http://%[1]s
		variants      public thumbnail
		session jwt {
			cookie      session
			header      Authorization
			secret_file %[2]s
		}
		authorize     owner owner
		lookup_limit  10000 1m
		account_id    %[3]s
		api_token     {env.FLEET_API_TOKEN}
		api_url       http://%[1]s/client/v4
		redis         redis://:{env.REDIS_PASSWORD}@%[4]s/0
		redis_timeout 100ms`, f.emu, secretFile, fleetAccountID, f.link.Addr())
	for i := range f.r {
		r := &fleetReplica{
			name:     fmt.Sprintf("replica %d", i+1),
			redirect: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			proxy:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			admin:    fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		}
		r.srv = start(t, fmt.Sprintf(`{
	admin %[1]s
	persist_config off
}
http://%[2]s {
	cf_images {
		%[4]s
		upload_path  /img/upload
		upload_limit 3 1h
	}
}
http://%[3]s {
	cf_images {
		%[4]s
		mode proxy {
			cache_size 64MiB
			cache_ttl  1h
			timeout    5s
		}
	}
}
`, r.admin, r.redirect, r.proxy, common), env, r.redirect, r.proxy, r.admin)
		f.r[i] = r
	}
	return f
}

// fleetPNG is a w×h PNG whose pixels depend on seed, so different seeds
// give different images (and different rendered variants).
func fleetPNG(t *testing.T, w, h, seed int) []byte {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			m.Set(x, y, color.RGBA{uint8(seed * 37), uint8(x*3 + seed), uint8(y*5 + seed*11), 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// api calls the emulator's Images API as a backend would and returns the
// envelope's result.
func (f *fleetRig) api(t *testing.T, method, path, contentType string, body io.Reader) json.RawMessage {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+f.emu+"/client/v4/accounts/"+fleetAccountID+"/images/"+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+f.apiToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct{ Result json.RawMessage }
	if resp.StatusCode != 200 || json.Unmarshal(b, &env) != nil {
		t.Fatalf("emulator API %s %s: status %d %s", method, path, resp.StatusCode, b)
	}
	return env.Result
}

// putImage uploads a private image owned by the owner subject and returns
// its id. (Private images cannot have custom ids.)
func (f *fleetRig) putImage(t *testing.T, data []byte) string {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("file", "photo.png")
	_, _ = fw.Write(data)
	_ = w.WriteField("requireSignedURLs", "true")
	_ = w.WriteField("metadata", `{"owner":"`+f.owner+`"}`)
	_ = w.Close()
	var img struct{ ID string }
	if err := json.Unmarshal(f.api(t, "POST", "v1", w.FormDataContentType(), &body), &img); err != nil || img.ID == "" {
		t.Fatalf("upload: no id (%v)", err)
	}
	return img.ID
}

// fetch GETs an image through a replica's site (r.redirect or r.proxy) as
// the owner.
func (f *fleetRig) fetch(t *testing.T, site, id, variant string) (*http.Response, string) {
	t.Helper()
	return get(t, "GET", "http://"+site+"/img/"+id+"/"+variant, map[string]string{"Cookie": "session=" + f.ownerToken})
}

// proxied fetches an image through a replica's proxy site and requires a
// 200 with a body.
func (f *fleetRig) proxied(t *testing.T, r *fleetReplica, id, variant string) string {
	t.Helper()
	resp, body := f.fetch(t, r.proxy, id, variant)
	if resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("%s: GET %s/%s through the proxy: status %d, %d bytes", r.name, id, variant, resp.StatusCode, len(body))
	}
	return body
}

// fleetMetric reads one series (name plus labels exactly as exposed, such
// as `imagegate_byte_cache_hits_total{tier="redis"}`) from a process's
// /metrics; 0 if absent.
func fleetMetric(t *testing.T, admin, series string) float64 {
	t.Helper()
	_, text := get(t, "GET", "http://"+admin+"/metrics", nil)
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return n
		}
	}
	return 0
}

// Series the fleet test reads from the replicas' /metrics.
const (
	fleetRedisHits  = `imagegate_byte_cache_hits_total{tier="redis"}`
	fleetMemoryHits = `imagegate_byte_cache_hits_total{tier="memory"}`
	fleetRedisUp    = `imagegate_redis_up`
)

// waitRedisKey waits (bounded) until the byte tier holds an entry of id:
// replicas write to Redis in the background.
func (f *fleetRig) waitRedisKey(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		keys, err := f.rdb.Keys(context.Background(), "imagegate:v2:img:{*:"+id+"}:*").Result()
		if err == nil && len(keys) > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no Redis entry for %s within 5s (err %v)", id, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFleet runs two replicas that share one Redis: stable redirects are
// identical on both, proxy mode's bytes fetched by one are served by the
// other, upload limits hold fleet-wide, a purge reaches both, Redis holds
// no secret, and a hung or killed Redis costs neither availability nor
// more than a bounded latency, and sharing comes back without a reload.
func TestFleet(t *testing.T) {
	began := time.Now()
	f := startFleet(t)
	r1, r2 := f.r[0], f.r[1]
	t.Logf("fleet started in %v", time.Since(began).Round(time.Millisecond))

	// Images, uploaded straight to the emulator as a backend would.
	big := testPNG(t)
	shared, purged, after := f.putImage(t, big), f.putImage(t, big), f.putImage(t, big)
	cached := make([]string, 4)
	fresh := make([]string, 48)
	for i := range cached {
		cached[i] = f.putImage(t, fleetPNG(t, 48, 32, i))
	}
	for i := range fresh {
		fresh[i] = f.putImage(t, fleetPNG(t, 48, 32, 100+i))
	}

	t.Run("a_redirect_identical_on_both_replicas", func(t *testing.T) {
		for _, variant := range []string{"thumbnail", "public"} {
			resp1, _ := f.fetch(t, r1.redirect, shared, variant)
			// Let the clock pass a second boundary, so a URL signed with
			// exp = now + TTL would differ between the two replicas.
			sec := time.Now().Unix()
			for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Unix() == sec && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			resp2, _ := f.fetch(t, r2.redirect, shared, variant)
			loc1, loc2 := resp1.Header.Get("Location"), resp2.Header.Get("Location")
			if resp1.StatusCode != 302 || resp2.StatusCode != 302 {
				t.Fatalf("%s: statuses %d, %d, want 302", variant, resp1.StatusCode, resp2.StatusCode)
			}
			if loc1 != loc2 || !strings.Contains(loc1, "sig=") {
				t.Errorf("%s: replicas hand out different URLs:\n%s\n%s", variant, loc1, loc2)
			}
			// The URL works: the emulator verifies its signature.
			if resp, _ := get(t, "GET", loc2, nil); resp.StatusCode != 200 {
				t.Errorf("%s: delivery of the shared URL: status %d", variant, resp.StatusCode)
			}
		}
	})

	t.Run("b_proxy_bytes_fetched_once_for_the_fleet", func(t *testing.T) {
		before := deliveries(t, f.emuAdmin, "thumbnail")
		hits2 := fleetMetric(t, r2.admin, fleetRedisHits)
		body1 := f.proxied(t, r1, shared, "thumbnail")
		if d := deliveries(t, f.emuAdmin, "thumbnail"); d != before+1 {
			t.Fatalf("replica 1's miss: deliveries %v → %v, want +1", before, d)
		}
		f.waitRedisKey(t, shared)
		body2 := f.proxied(t, r2, shared, "thumbnail")
		if body2 != body1 {
			t.Error("replica 2 served other bytes than replica 1")
		}
		if d := deliveries(t, f.emuAdmin, "thumbnail"); d != before+1 {
			t.Errorf("replica 2 fetched upstream again: deliveries %v → %v, want %v", before, d, before+1)
		}
		if h := fleetMetric(t, r2.admin, fleetRedisHits); h != hits2+1 {
			t.Errorf("replica 2's redis-tier hits %v → %v, want +1", hits2, h)
		}
		// The Redis hit filled replica 2's memory tier.
		mem2 := fleetMetric(t, r2.admin, fleetMemoryHits)
		f.proxied(t, r2, shared, "thumbnail")
		if h := fleetMetric(t, r2.admin, fleetMemoryHits); h != mem2+1 {
			t.Errorf("replica 2's memory-tier hits %v → %v, want +1", mem2, h)
		}
	})

	t.Run("d_upload_limit_is_fleet_wide", func(t *testing.T) {
		statuses := f.uploads(t, []*fleetReplica{r1, r2, r1, r2, r1, r2})
		want := []int{200, 200, 200, 429, 429, 429}
		if fmt.Sprint(statuses) != fmt.Sprint(want) {
			t.Errorf("alternating uploads on replicas 1,2,1,2,1,2: statuses %v, want %v", statuses, want)
		}
	})

	t.Run("f_purge_reaches_every_replica", func(t *testing.T) {
		old := f.proxied(t, r1, purged, "thumbnail")
		f.waitRedisKey(t, purged)
		f.proxied(t, r2, purged, "thumbnail") // from Redis, into replica 2's memory
		// Delete the image in Cloudflare: both replicas still serve it from
		// memory, as they would until cache_ttl without a purge.
		f.api(t, "DELETE", "v1/"+purged, "", nil)
		for _, r := range f.r {
			if f.proxied(t, r, purged, "thumbnail") != old {
				t.Fatalf("%s served other bytes before the purge", r.name)
			}
		}

		resp, err := http.Post("http://"+r1.admin+"/cf_images/purge", "application/json", strings.NewReader(`{"id":"`+purged+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var answer struct{ Dropped int }
		if resp.StatusCode != 200 || json.Unmarshal(body, &answer) != nil || answer.Dropped <= 0 {
			t.Fatalf("purge through replica 1's admin API: status %d %s, want 200 {\"dropped\": N > 0}", resp.StatusCode, body)
		}
		t.Logf("purge answered %s", strings.TrimSpace(string(body)))

		// Replica 1 purged itself before answering; replica 2 hears of it
		// through Pub/Sub, and until then serves its memory tier.
		if resp, _ := f.fetch(t, r1.proxy, purged, "thumbnail"); resp.StatusCode != 404 {
			t.Errorf("replica 1 after its purge: status %d, want 404 (the image is gone upstream)", resp.StatusCode)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, _ := f.fetch(t, r2.proxy, purged, "thumbnail")
			if resp.StatusCode == 404 {
				break
			}
			if resp.StatusCode != 200 {
				t.Fatalf("replica 2 after the purge: status %d, want 200 (old bytes) until the purge arrives, then 404", resp.StatusCode)
			}
			if time.Now().After(deadline) {
				t.Fatal("replica 2 still serves the deleted image 5s after the purge")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	// Byte-tier entries and the upload limit's key (which lives about an
	// hour; the lookup limit's expire within milliseconds) must be there.
	t.Run("e_redis_holds_no_secrets", func(t *testing.T) { f.scanRedis(t, "imagegate:v2:img", "imagegate:v1:limit") })

	t.Run("c_redis_outage", func(t *testing.T) {
		for _, r := range f.r {
			if up := fleetMetric(t, r.admin, fleetRedisUp); up != 1 {
				t.Fatalf("%s: %s = %v before the outage, want 1", r.name, fleetRedisUp, up)
			}
			for _, id := range cached {
				f.proxied(t, r, id, "public")
			}
		}

		// Redis hangs: connections are accepted and never answered.
		f.link.setHung(true)
		worst := f.timedRound(t, "redis hung", fresh[:24], cached)
		for _, r := range f.r {
			if up := fleetMetric(t, r.admin, fleetRedisUp); up != 0 {
				t.Errorf("%s: %s = %v while Redis hangs, want 0", r.name, fleetRedisUp, up)
			}
		}

		// Redis dies: connections are refused (the link closes them).
		f.redis.Stop()
		f.link.setHung(false)
		worst = max(worst, f.timedRound(t, "redis killed", fresh[24:], cached))
		if worst >= time.Second {
			t.Errorf("slowest request during the outage took %v, want < 1s (redis_timeout 100ms)", worst)
		}

		// Each replica falls back to its own count of the upload limit,
		// which was charged while Redis answered: replica 1 issued 2 of
		// the 3 before the outage, replica 2 one, so an outage does not
		// start from a full budget.
		statuses := f.uploads(t, []*fleetReplica{r1, r1, r1, r1, r2, r2, r2, r2})
		t.Logf("uploads during the outage, replicas 1,1,1,1,2,2,2,2: %v", statuses)
		if want := []int{200, 429, 429, 429, 200, 200, 429, 429}; fmt.Sprint(statuses) != fmt.Sprint(want) {
			t.Errorf("uploads during the outage: %v, want %v (each replica counts from what it issued)", statuses, want)
		}

		// Redis is back, empty. The breaker lets a probe through after its
		// cool-down (5s); requests for unknown images make the probes
		// (each asks the fleet-wide lookup limiter).
		recovering := time.Now()
		f.redis.Restart()
		for _, r := range f.r {
			for fleetMetric(t, r.admin, fleetRedisUp) != 1 {
				if time.Since(recovering) > 15*time.Second {
					t.Fatalf("%s: %s still 0 15s after Redis came back", r.name, fleetRedisUp)
				}
				if resp, _ := f.fetch(t, r.redirect, "fleet-probe-"+fleetHex(t, 6), "public"); resp.StatusCode != 403 {
					t.Fatalf("%s: probe for an unknown image: status %d, want 403", r.name, resp.StatusCode)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Logf("both replicas use Redis again %v after it restarted", time.Since(recovering).Round(time.Millisecond))

		before := deliveries(t, f.emuAdmin, "thumbnail")
		hits2 := fleetMetric(t, r2.admin, fleetRedisHits)
		body1 := f.proxied(t, r1, after, "thumbnail")
		f.waitRedisKey(t, after)
		if f.proxied(t, r2, after, "thumbnail") != body1 {
			t.Error("replica 2 served other bytes than replica 1")
		}
		if d := deliveries(t, f.emuAdmin, "thumbnail"); d != before+1 {
			t.Errorf("after recovery: deliveries %v → %v, want +1 (replica 2 should hit Redis)", before, d)
		}
		if h := fleetMetric(t, r2.admin, fleetRedisHits); h != hits2+1 {
			t.Errorf("after recovery: replica 2's redis-tier hits %v → %v, want +1", hits2, h)
		}

		// The breaker's changes are logged once each, not per request.
		for _, r := range f.r {
			logs := r.srv.logs.String()
			failing := strings.Count(logs, "redis is failing")
			back := strings.Count(logs, "redis is answering again")
			if failing != 1 || back != 1 {
				t.Errorf("%s logged %d \"redis is failing\" and %d \"answering again\" lines, want 1 each", r.name, failing, back)
			}
			var ops []string
			for _, op := range []string{"get", "set", "limit"} {
				ops = append(ops, fmt.Sprintf("%s %v of %v failed", op,
					fleetMetric(t, r.admin, `imagegate_redis_errors_total{op="`+op+`"}`),
					fleetMetric(t, r.admin, `imagegate_redis_operations_total{op="`+op+`"}`)))
			}
			t.Logf("%s: Redis calls: %s", r.name, strings.Join(ops, ", "))
		}
	})

	t.Run("e_redis_holds_no_secrets_after_outage", func(t *testing.T) { f.scanRedis(t, "imagegate:v2:img") })
	t.Logf("TestFleet took %v", time.Since(began).Round(time.Millisecond))
}

// uploads asks each replica in turn for an upload URL as the uploader and
// returns the statuses. Every 429 must carry a Retry-After.
func (f *fleetRig) uploads(t *testing.T, order []*fleetReplica) []int {
	t.Helper()
	var statuses []int
	for _, r := range order {
		resp, _ := get(t, "POST", "http://"+r.redirect+"/img/upload", map[string]string{"Authorization": "Bearer " + f.uploaderToken})
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == 429 {
			ra := resp.Header.Get("Retry-After")
			if s, err := strconv.Atoi(ra); err != nil || s < 1 {
				t.Errorf("%s: 429 with Retry-After %q", r.name, ra)
			} else if len(statuses) == 4 {
				t.Logf("the first 429 says Retry-After: %s", ra)
			}
		}
	}
	return statuses
}

// timedRound sends, to each replica in turn, a request for one of fresh
// (never fetched by that replica: a miss in every tier) and one for cached
// (in its memory tier), requires 200s, and returns the slowest.
func (f *fleetRig) timedRound(t *testing.T, phase string, fresh, cached []string) time.Duration {
	t.Helper()
	var worst, total time.Duration
	n := 0
	for i := 0; i+1 < len(fresh); i += 2 {
		for j, r := range f.r {
			for _, id := range []string{fresh[i+j], cached[(i/2)%len(cached)]} {
				t0 := time.Now()
				f.proxied(t, r, id, "public")
				d := time.Since(t0)
				total += d
				n++
				worst = max(worst, d)
			}
		}
	}
	t.Logf("%s: %d requests, all 200, mean %v, max %v", phase, n, (total / time.Duration(n)).Round(time.Microsecond), worst.Round(time.Microsecond))
	return worst
}

// scanRedis reads every key and value in Redis and fails if one holds a
// subject, a token, a secret or a signed URL. It also requires a key of
// each kind in want (a prefix of three colon-separated parts), so an empty
// Redis cannot pass for a clean one.
func (f *fleetRig) scanRedis(t *testing.T, want ...string) {
	t.Helper()
	ctx := context.Background()
	secrets := map[string]string{
		"owner subject":    f.owner,
		"uploader subject": f.uploader,
		"owner JWT":        f.ownerToken,
		"uploader JWT":     f.uploaderToken,
		"API token":        f.apiToken,
		"signing key":      f.signingKey,
		"JWT secret":       f.jwtSecret,
		"Redis password":   f.redis.Password,
		"signed URL":       "sig=",
		"URL expiry":       "exp=",
	}
	n := 0
	kinds := map[string]int{}
	iter := f.rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		n++
		if !strings.HasPrefix(key, "imagegate:") {
			t.Errorf("key %q is outside the key prefix imagegate:", key)
		}
		kind, err := f.rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var value string
		switch kind {
		case "string":
			value, err = f.rdb.Get(ctx, key).Result()
		case "none": // expired since the scan
			continue
		default:
			t.Errorf("key %q is a %s; the fleet stores only strings", key, kind)
			continue
		}
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
		parts := strings.Split(key, ":")
		kinds[strings.Join(parts[:min(3, len(parts))], ":")]++
		for what, s := range secrets {
			if strings.Contains(key, s) || strings.Contains(value, s) {
				t.Errorf("Redis key %q (or its value) holds the %s", key, what)
			}
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("scanned %d Redis keys: %v", n, kinds)
	for _, k := range want {
		if kinds[k] == 0 {
			t.Errorf("Redis holds no %s key: the scan would show nothing", k)
		}
	}
}

// fleetRedisLink forwards TCP connections to Redis and can make Redis hang:
// while hung it accepts connections and never reads or answers them, as a
// stopped process or a black-holed network does. A killed Redis refuses
// connections at once, which does not test the timeouts.
type fleetRedisLink struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	hung  bool
	conns map[net.Conn]struct{} // every open connection, both sides
}

func startFleetRedisLink(t *testing.T, target string) *fleetRedisLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &fleetRedisLink{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go l.serve()
	t.Cleanup(func() {
		ln.Close()
		l.closeAll()
	})
	return l
}

// Addr is the address the replicas use for Redis.
func (l *fleetRedisLink) Addr() string { return l.ln.Addr().String() }

// setHung switches between hanging and forwarding, dropping every open
// connection so none outlives the switch.
func (l *fleetRedisLink) setHung(hung bool) {
	l.mu.Lock()
	l.hung = hung
	l.mu.Unlock()
	l.closeAll()
}

func (l *fleetRedisLink) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
		delete(l.conns, c)
	}
}

// track remembers c, and reports whether the link hangs.
func (l *fleetRedisLink) track(c net.Conn) (hung bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns[c] = struct{}{}
	return l.hung
}

func (l *fleetRedisLink) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		if l.track(c) {
			continue // held open, never read
		}
		go l.forward(c)
	}
}

func (l *fleetRedisLink) forward(c net.Conn) {
	up, err := net.DialTimeout("tcp", l.target, time.Second)
	if err != nil {
		c.Close()
		return
	}
	l.track(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
}
