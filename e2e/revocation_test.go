package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/session"
)

// issEmulator is a cf_images_emulator in a process of its own, so that a
// test can stop it as a Cloudflare outage. Its rig reuses fleetRig's
// helpers (api, putImage, fetch): only emu, emuAdmin, apiToken, owner and
// ownerToken are set.
type issEmulator struct {
	rig        *fleetRig
	srv        *server
	jwtSecret  string // HS256 secret of the gateways' sessions
	secretFile string // the file holding jwtSecret
	env        []string
}

// startIssEmulator starts the emulator and mints the owner's token.
func startIssEmulator(t *testing.T) *issEmulator {
	t.Helper()
	e := &issEmulator{
		rig: &fleetRig{
			emu:      fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			emuAdmin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			apiToken: "iss-api-token-" + fleetHex(t, 8),
			owner:    "iss-owner-" + fleetHex(t, 4),
		},
		jwtSecret: "iss-jwt-secret-" + fleetHex(t, 16),
	}
	e.secretFile = filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(e.secretFile, []byte(e.jwtSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.rig.ownerToken = e.mint(t, e.rig.owner, time.Now())
	e.env = []string{"ISS_API_TOKEN=" + e.rig.apiToken, "ISS_SIGNING_KEY=iss-signing-key-" + fleetHex(t, 8)}
	e.srv = start(t, fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://%s {
	bind 127.0.0.1
	cf_images_emulator {
		api_token   {env.ISS_API_TOKEN}
		signing_key {env.ISS_SIGNING_KEY}
		storage     memory
	}
}
`, e.rig.emuAdmin, e.rig.emu), e.env, e.rig.emu, e.rig.emuAdmin)
	return e
}

// mint returns an HS256 session token for sub issued at now.
func (e *issEmulator) mint(t *testing.T, sub string, now time.Time) string {
	t.Helper()
	tok, err := session.MintHS256([]byte(e.jwtSecret), sub, time.Hour, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// stop kills the emulator process: from then on, connections to it are
// refused, as in a Cloudflare outage.
func (e *issEmulator) stop(t *testing.T) {
	t.Helper()
	if err := e.srv.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Get("http://" + e.rig.emu + "/")
		if err != nil {
			return
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("the emulator still answers 5s after it was killed")
		}
	}
}

// issReplica is one gateway process: a proxy-mode site and Caddy's admin
// endpoint.
type issReplica struct {
	name, site, admin string
	srv               *server
}

// startIssReplica starts a gateway whose global cf_images block holds the
// emulator's account and appLines (a redis block, say), and whose one site
// serves proxy mode with an HS256 JWT session, `authorize any`, and
// siteLines. env adds variables (a Redis password, say).
func startIssReplica(t *testing.T, e *issEmulator, env []string, name, appLines, siteLines string) *issReplica {
	t.Helper()
	r := &issReplica{
		name:  name,
		site:  fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		admin: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	r.srv = start(t, fmt.Sprintf(`{
	admin %[1]s
	persist_config off
	cf_images {
		account_hash emu-account-hash
		signing_key  {env.ISS_SIGNING_KEY}
		delivery_url http://%[3]s
		%[5]s
	}
}
http://%[2]s {
	cf_images {
		variants public thumbnail
		session jwt {
			cookie      session
			header      Authorization
			secret_file %[4]s
		}
		authorize any
		%[6]s
	}
}
`, r.admin, r.site, e.rig.emu, e.secretFile, appLines, siteLines), append(env, e.env...), r.site, r.admin)
	return r
}

// view GETs /img/<id>/<variant> on a replica with the token as cookie and
// any extra header pairs.
func (r *issReplica) view(t *testing.T, token, id, variant string, kv ...string) (*http.Response, string) {
	t.Helper()
	h := hdrs(kv...)
	h["Cookie"] = "session=" + token
	return get(t, "GET", "http://"+r.site+"/img/"+id+"/"+variant, h)
}

// issMetricSum adds up every series of a metric family on a process's
// /metrics whose labels contain each of labels (such as
// `result="revoked"`).
func issMetricSum(t *testing.T, admin, family string, labels ...string) float64 {
	t.Helper()
	_, text := get(t, "GET", "http://"+admin+"/metrics", nil)
	sum := 0.0
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, family+"{") && !strings.HasPrefix(line, family+" ") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if !containsAll(line[:sp], labels) {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// revoke posts an admin revocation to a replica and returns what it
// recorded.
func (r *issReplica) revoke(t *testing.T, body string) []session.Revocation {
	t.Helper()
	resp, err := noRedirect.Post("http://"+r.admin+"/cf_images/revoke", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct{ Revoked []session.Revocation }
	if resp.StatusCode != 200 || json.Unmarshal(b, &out) != nil || len(out.Revoked) == 0 {
		t.Fatalf("%s: POST /cf_images/revoke %s: status %d %s", r.name, body, resp.StatusCode, b)
	}
	return out.Revoked
}

// revocations lists a replica's revocations in force.
func (r *issReplica) revocations(t *testing.T) []session.Revocation {
	t.Helper()
	resp, body := get(t, "GET", "http://"+r.admin+"/cf_images/revocations", nil)
	var out struct{ Revocations []session.Revocation }
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("%s: GET /cf_images/revocations: status %d %s", r.name, resp.StatusCode, body)
	}
	return out.Revocations
}

// lists reports whether revs holds a revocation of kind and value from
// source.
func issLists(revs []session.Revocation, kind session.RevocationKind, value, source string) bool {
	for _, r := range revs {
		if r.Kind == kind && r.Value == value && r.Source == source {
			return true
		}
	}
	return false
}

// waitStatus asks until a request answers want, for at most limit, and
// returns how long it took from since and how many requests it sent.
func waitStatus(t *testing.T, since time.Time, limit time.Duration, want int, do func() int) (time.Duration, int) {
	t.Helper()
	for n := 1; ; n++ {
		got := do()
		if got == want {
			return time.Since(since), n
		}
		if time.Since(since) > limit {
			t.Fatalf("still status %d after %v (%d requests), want %d", got, limit, n, want)
		}
		time.Sleep(time.Millisecond) // the machine is shared: no busy loop
	}
}

// TestRevocationFleetWide runs two replicas on one Redis (the global
// cf_images block's) in proxy mode with browser_max_age 0: an admin
// revocation on replica 1 refuses the subject on replica 2 within a
// second, on the browser's next revalidation (with no second Cloudflare
// delivery before it), leaves other subjects alone, lets a token issued
// later in, is listed, and reaches a replica that was cut off from Redis
// when it was made, once it reconnects.
func TestRevocationFleetWide(t *testing.T) {
	rs := redistest.Start(t)
	e := startIssEmulator(t)
	// Replica 2 reaches Redis through a link the test can hang, so that
	// it misses the Pub/Sub message of a revocation.
	link := startFleetRedisLink(t, rs.Addr)
	env := []string{"ISS_REDIS_PASSWORD=" + rs.Password}
	proxy := `mode proxy {
			cache_ttl 1h
			browser_max_age 0
		}`
	redisBlock := func(addr string) string {
		return fmt.Sprintf(`redis {
			url redis://:{env.ISS_REDIS_PASSWORD}@%s/0
			timeout 100ms
		}`, addr)
	}
	r1 := startIssReplica(t, e, env, "replica 1", redisBlock(rs.Addr), proxy)
	r2 := startIssReplica(t, e, env, "replica 2", redisBlock(link.Addr()), proxy)

	id := e.rig.putImage(t, fleetPNG(t, 64, 48, 1))
	alice := e.mint(t, "alice", time.Now())
	bob := e.mint(t, "bob", time.Now())
	carol := e.mint(t, "carol", time.Now())

	// Alice views the image on replica 1 (one Cloudflare delivery), then
	// on replica 2 (from Redis), as a browser: 200 with an ETag that may
	// not be reused without asking.
	before := deliveries(t, e.rig.emuAdmin, "public")
	if resp, body := r1.view(t, alice, id, "public"); resp.StatusCode != 200 || len(body) == 0 {
		t.Fatalf("replica 1, alice: status %d, %d bytes", resp.StatusCode, len(body))
	}
	var etag string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		// Replica 1 stores in Redis in the background; until then replica
		// 2 would fetch too (or wait on replica 1's lease).
		resp, body := r2.view(t, alice, id, "public")
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("replica 2, alice: status %d, %d bytes", resp.StatusCode, len(body))
		}
		etag = resp.Header.Get("ETag")
		if cc := resp.Header.Get("Cache-Control"); cc != "private, no-cache" {
			t.Errorf("replica 2, browser_max_age 0: Cache-Control %q, want %q", cc, "private, no-cache")
		}
		if etag != "" || time.Now().After(deadline) {
			break
		}
	}
	if etag == "" {
		t.Fatal("replica 2: no ETag on a proxied answer: the browser cannot revalidate")
	}
	resp, body := r2.view(t, alice, id, "public", "If-None-Match", etag)
	if resp.StatusCode != 304 || body != "" {
		t.Fatalf("replica 2, alice revalidates: status %d, %d bytes, want 304 and none", resp.StatusCode, len(body))
	}
	if d := deliveries(t, e.rig.emuAdmin, "public"); d != before+1 {
		t.Fatalf("Cloudflare deliveries %v → %v after two views and a revalidation on two replicas, want +1", before, d)
	}
	for _, tok := range []string{bob, carol} {
		if resp, _ := r2.view(t, tok, id, "public", "If-None-Match", etag); resp.StatusCode != 304 {
			t.Fatalf("replica 2, before any revocation: status %d, want 304", resp.StatusCode)
		}
	}

	t.Run("admin_revoke_bites_on_the_other_replica_within_a_second", func(t *testing.T) {
		revokedBefore := issMetricSum(t, r2.admin, "imagegate_session_checks_total", `result="revoked"`)
		began := time.Now()
		recorded := r1.revoke(t, `{"sub":"alice"}`)
		took, n := waitStatus(t, began, 5*time.Second, 401, func() int {
			resp, _ := r2.view(t, alice, id, "public", "If-None-Match", etag)
			if resp.StatusCode != 304 && resp.StatusCode != 401 {
				t.Fatalf("replica 2, alice, while the revocation travels: status %d, want 304 then 401", resp.StatusCode)
			}
			return resp.StatusCode
		})
		t.Logf("time to effect: admin revoke on replica 1 → first 401 on replica 2: %v (%d revalidations)", took.Round(100*time.Microsecond), n)
		if took >= time.Second {
			t.Errorf("replica 2 refused alice %v after the revocation on replica 1, want < 1s", took)
		}
		if len(recorded) != 1 || recorded[0].Kind != session.RevokeSubject || recorded[0].Value != "alice" {
			t.Errorf("revoke answered %+v, want one sub revocation of alice", recorded)
		}
		// The refusal on replica 1 too, and a full GET as well as a
		// revalidation; no delivery was needed for any of it.
		if resp, _ := r1.view(t, alice, id, "public"); resp.StatusCode != 401 {
			t.Errorf("replica 1, alice after her revocation: status %d, want 401", resp.StatusCode)
		}
		if resp, body := r2.view(t, alice, id, "public"); resp.StatusCode != 401 || strings.Contains(body, "PNG") {
			t.Errorf("replica 2, alice after her revocation, no If-None-Match: status %d, want 401 without the image", resp.StatusCode)
		}
		if d := deliveries(t, e.rig.emuAdmin, "public"); d != before+1 {
			t.Errorf("Cloudflare deliveries %v → %v, want +1 in all", before, d)
		}
		revoked := issMetricSum(t, r2.admin, "imagegate_session_checks_total", `result="revoked"`) - revokedBefore
		if revoked < 2 {
			t.Errorf(`replica 2: imagegate_session_checks_total{result="revoked"} grew by %v, want at least 2`, revoked)
		}
		if n := issMetricSum(t, r1.admin, "imagegate_revocations_total", `source="admin"`); n != 1 {
			t.Errorf(`replica 1: imagegate_revocations_total{source="admin"} = %v, want 1`, n)
		}
	})

	t.Run("others_unaffected", func(t *testing.T) {
		for _, r := range []*issReplica{r1, r2} {
			if resp, _ := r.view(t, bob, id, "public", "If-None-Match", etag); resp.StatusCode != 304 {
				t.Errorf("%s, bob revalidates after alice's revocation: status %d, want 304", r.name, resp.StatusCode)
			}
			if resp, body := r.view(t, bob, id, "public"); resp.StatusCode != 200 || len(body) == 0 {
				t.Errorf("%s, bob after alice's revocation: status %d, want 200", r.name, resp.StatusCode)
			}
		}
	})

	t.Run("listed_on_both_replicas", func(t *testing.T) {
		for _, r := range []*issReplica{r1, r2} {
			if revs := r.revocations(t); !issLists(revs, session.RevokeSubject, "alice", session.SourceAdmin) {
				t.Errorf("%s: GET /cf_images/revocations = %+v, want alice's sub revocation from admin", r.name, revs)
			}
		}
	})

	t.Run("a_new_login_works_again", func(t *testing.T) {
		// iat has whole seconds and a token of the revocation's second
		// counts as older: log in again in the next second.
		revs := r2.revocations(t)
		var at time.Time
		for _, r := range revs {
			if r.Kind == session.RevokeSubject && r.Value == "alice" {
				at = r.At
			}
		}
		for time.Now().Unix() <= at.Unix() {
			time.Sleep(10 * time.Millisecond)
		}
		again := e.mint(t, "alice", time.Now())
		for _, r := range []*issReplica{r1, r2} {
			if resp, _ := r.view(t, again, id, "public", "If-None-Match", etag); resp.StatusCode != 304 {
				t.Errorf("%s, alice's new login revalidates: status %d, want 304", r.name, resp.StatusCode)
			}
			if resp, _ := r.view(t, alice, id, "public", "If-None-Match", etag); resp.StatusCode != 401 {
				t.Errorf("%s, alice's old token: status %d, want 401", r.name, resp.StatusCode)
			}
		}
	})

	t.Run("survives_a_reconnect", func(t *testing.T) {
		// Replica 2 is cut off from Redis: its subscription is gone, so
		// the Pub/Sub message of carol's revocation never reaches it.
		link.setHung(true)
		r1.revoke(t, `{"sub":"carol"}`)
		time.Sleep(300 * time.Millisecond) // longer than the Pub/Sub path took above
		if resp, _ := r2.view(t, carol, id, "public", "If-None-Match", etag); resp.StatusCode != 304 {
			t.Fatalf("replica 2, cut off from Redis: carol got %d, want 304 (the message cannot have arrived, so the test would not show the load on reconnect)", resp.StatusCode)
		}
		// Redis is reachable again: replica 2 resubscribes and loads the
		// whole set.
		back := time.Now()
		link.setHung(false)
		took, _ := waitStatus(t, back, 10*time.Second, 401, func() int {
			resp, _ := r2.view(t, carol, id, "public", "If-None-Match", etag)
			return resp.StatusCode
		})
		t.Logf("replica 2 refused carol %v after it could reach Redis again", took.Round(time.Millisecond))
		if !issLists(r2.revocations(t), session.RevokeSubject, "carol", session.SourceAdmin) {
			t.Error("replica 2 does not list carol's revocation after its reconnect")
		}
		if resp, _ := r2.view(t, bob, id, "public", "If-None-Match", etag); resp.StatusCode != 304 {
			t.Errorf("replica 2, bob after the reconnect: status %d, want 304", resp.StatusCode)
		}
	})
}
