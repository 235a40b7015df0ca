package e2e

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/session"
)

// TestGatewayBacksOffEmulatorRateLimit drives the gateway binary with
// `authorize owner` against an emulator whose API allows 5 calls a minute
// and then blocks for 5 s. When a lookup is refused (429, Retry-After 5)
// the gateway's API guard makes no call to the emulator until the block
// is over: an owner it cached keeps deciding (alice's view of her image,
// bob's refusal), an owner it never saw answers 503 with Retry-After;
// afterwards it recovers by itself.
func TestGatewayBacksOffEmulatorRateLimit(t *testing.T) {
	const block = 5 * time.Second
	emu := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, fmt.Sprintf(`{
	admin %[1]s
	persist_config off
}
http://%[2]s {
	bind 127.0.0.1
	cf_images_emulator {
		storage        memory
		api_rate_limit 5 1m
		api_rate_block %[4]s
	}
}
`, admin, emu, site, block)+gatewaySite(site, "", `account_hash  emu-account-hash
		variants      public
		session jwt {
			header Authorization
			secret {env.JWT_SECRET}
		}
		authorize owner owner {
			metadata_ttl   1s
			metadata_stale 1h
			lookup_limit   off
		}
		account_id `+emuAccountID+`
		api_token  `+devAPIToken+`
		api_url    http://`+emu+`/client/v4`),
		append([]string{"JWT_SECRET=" + e2eJWTSecret}, gatewayEnv...), emu, site, admin)

	alice, _ := session.MintHS256([]byte(e2eJWTSecret), "alice", time.Hour, nil, time.Now())
	bob, _ := session.MintHS256([]byte(e2eJWTSecret), "bob", time.Hour, nil, time.Now())
	view := func(token, id string) (int, string) {
		resp, _ := get(t, "GET", "http://"+site+"/img/"+id+"/public", map[string]string{"Authorization": "Bearer " + token})
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	const (
		calls200 = `imagegate_emulator_api_calls_total{code="200",host="api"}`
		calls429 = `imagegate_emulator_api_calls_total{code="429",host="api"}`
		refused  = `imagegate_emulator_api_rate_limited_total{host="api"}`
	)
	apiCalls := func() float64 { return fleetMetric(t, admin, calls200) + fleetMetric(t, admin, calls429) }

	// Five calls in the window: two uploads, the gateway's lookup of
	// alice's first image, two of the test's own.
	owned := emuUpload(t, emu, testPNG(t), `{"owner":"alice"}`)
	other := emuUpload(t, emu, testPNG(t), `{"owner":"alice"}`)
	if code, _ := view(alice, owned); code != 302 {
		t.Fatalf("alice, before the limit: %d, want 302", code)
	}
	for range 2 {
		if resp := emuAPIGet(t, emu, "v1/stats"); resp.StatusCode != 200 {
			t.Fatalf("stats: %d", resp.StatusCode)
		}
	}
	if n := apiCalls(); n != 5 {
		t.Fatalf("the emulator answered %v API calls, want 5", n)
	}

	// The sixth, the gateway's lookup of an owner it never saw, is refused.
	blockedAt := time.Now()
	code, retry := view(alice, other)
	if code != 503 || retry == "" {
		t.Fatalf("alice, uncached owner, over the limit: %d (Retry-After %q), want 503 with Retry-After", code, retry)
	}
	if secs, err := strconv.Atoi(retry); err != nil || secs < 1 || secs > int(block/time.Second) {
		t.Errorf("gateway's Retry-After %q, want 1..%d seconds", retry, int(block/time.Second))
	}
	if n := fleetMetric(t, admin, refused); n != 1 {
		t.Fatalf("emulator refused %v calls, want 1", n)
	}

	// While blocked, past metadata_ttl: the cached owner still decides
	// both ways, the uncached one is 503, and nothing reaches the API.
	time.Sleep(1200 * time.Millisecond)
	before := apiCalls()
	for i := range 3 {
		if code, _ := view(alice, owned); code != 302 {
			t.Errorf("alice, cached owner, blocked (%d): %d, want 302", i, code)
		}
		if code, _ := view(bob, owned); code != 403 {
			t.Errorf("bob, cached owner, blocked (%d): %d, want 403", i, code)
		}
		if code, retry := view(alice, other); code != 503 || retry == "" {
			t.Errorf("alice, uncached owner, blocked (%d): %d (Retry-After %q), want 503 with Retry-After", i, code, retry)
		}
	}
	if time.Since(blockedAt) >= block {
		t.Fatalf("the checks took longer than the block (%v); the machine is too slow for this test to mean anything", block)
	}
	if n := apiCalls() - before; n != 0 {
		t.Errorf("%v API calls reached the emulator during the block, want none", n)
	}
	if n := fleetMetric(t, admin, refused); n != 1 {
		t.Errorf("emulator refused %v calls in all, want 1: the gateway called during the block", n)
	}

	// After the block the gateway calls again, by itself.
	time.Sleep(time.Until(blockedAt.Add(block + 500*time.Millisecond)))
	if code, _ := view(alice, other); code != 302 {
		t.Fatalf("alice, after the block: %d, want 302", code)
	}
	if code, _ := view(bob, other); code != 403 {
		t.Errorf("bob, after the block: %d, want 403", code)
	}
	if n := fleetMetric(t, admin, calls200); n != 6 {
		t.Errorf("emulator answered %v calls with 200, want 6 (one lookup after the block)", n)
	}
}
