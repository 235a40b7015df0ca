package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestStaleIfErrorAndNegativeTTL runs a proxy-mode gateway with a short
// cache_ttl in front of an emulator in its own process: past cache_ttl a
// stored image is still served (outcome "stale", logged once) when
// Cloudflare cannot be reached, but an image deleted in Cloudflare (404)
// is never served stale; a 404 is asked upstream once within
// negative_ttl, and again after it.
func TestStaleIfErrorAndNegativeTTL(t *testing.T) {
	const (
		cacheTTL    = time.Second
		negativeTTL = 2 * time.Second
	)
	e := startIssEmulator(t)
	r := startIssReplica(t, e, nil, "gateway", "", `mode proxy {
			cache_ttl      1s
			stale_if_error 1h
			negative_ttl   2s
			timeout        2s
		}`)
	tok := e.rig.ownerToken
	kept := e.rig.putImage(t, fleetPNG(t, 40, 30, 1))
	deleted := e.rig.putImage(t, fleetPNG(t, 40, 30, 2))
	unseen := e.rig.putImage(t, fleetPNG(t, 40, 30, 3)) // never fetched before the outage

	stored := map[string]string{}
	for _, id := range []string{kept, deleted} {
		resp, body := r.view(t, tok, id, "public")
		if resp.StatusCode != 200 || len(body) == 0 {
			t.Fatalf("first view of %s: status %d, %d bytes", id, resp.StatusCode, len(body))
		}
		stored[id] = body
	}
	fetchedAt := time.Now()
	notFound := func() float64 {
		return issMetricSum(t, e.rig.emuAdmin, "imagegate_emulator_deliveries_total", `code="404"`, `variant="public"`)
	}
	stale := func() float64 {
		return issMetricSum(t, r.admin, "imagegate_requests_total", `outcome="stale"`, `variant="public"`)
	}

	t.Run("a_deleted_image_is_not_served_stale", func(t *testing.T) {
		e.rig.api(t, "DELETE", "v1/"+deleted, "", nil)
		time.Sleep(time.Until(fetchedAt.Add(cacheTTL + 200*time.Millisecond)))
		asked := notFound()
		resp, body := r.view(t, tok, deleted, "public")
		if resp.StatusCode != 404 || body == stored[deleted] {
			t.Fatalf("deleted image past cache_ttl: status %d (%d bytes), want 404 without the stored bytes", resp.StatusCode, len(body))
		}
		if n := notFound() - asked; n != 1 {
			t.Errorf("upstream 404s for the deleted image: +%v, want +1", n)
		}
		if s := stale(); s != 0 {
			t.Errorf(`outcome="stale" = %v after a 404, want 0`, s)
		}
	})

	t.Run("negative_ttl_asks_upstream_once", func(t *testing.T) {
		made := "iss-made-up-" + fleetHex(t, 8)
		asked := notFound()
		began := time.Now()
		for range 5 {
			if resp, _ := r.view(t, tok, made, "public"); resp.StatusCode != 404 {
				t.Fatalf("made-up id: status %d, want 404", resp.StatusCode)
			}
		}
		if n := notFound() - asked; n != 1 {
			t.Errorf("5 views of a made-up id within negative_ttl: %v upstream 404s, want 1", n)
		}
		if time.Since(began) >= negativeTTL {
			t.Fatalf("the views took %v, longer than negative_ttl: the count above means nothing", time.Since(began))
		}
		// The deleted image's 404 is remembered too.
		if resp, _ := r.view(t, tok, deleted, "public"); resp.StatusCode != 404 {
			t.Errorf("deleted image again: status %d, want 404", resp.StatusCode)
		}
		if n := notFound() - asked; n != 1 {
			t.Errorf("after the deleted image again: %v upstream 404s, want still 1", n)
		}
		// Past negative_ttl the gateway asks again.
		time.Sleep(time.Until(began.Add(negativeTTL + 200*time.Millisecond)))
		if resp, _ := r.view(t, tok, made, "public"); resp.StatusCode != 404 {
			t.Fatalf("made-up id past negative_ttl: status %d, want 404", resp.StatusCode)
		}
		if n := notFound() - asked; n != 2 {
			t.Errorf("past negative_ttl: %v upstream 404s in all, want 2", n)
		}
	})

	t.Run("stale_while_cloudflare_is_down", func(t *testing.T) {
		e.stop(t)
		if since := time.Since(fetchedAt); since <= cacheTTL {
			t.Fatalf("only %v since the fetch: not past cache_ttl", since)
		}
		for i := range 3 {
			resp, body := r.view(t, tok, kept, "public")
			if resp.StatusCode != 200 || body != stored[kept] {
				t.Fatalf("view %d of a stored image past cache_ttl, Cloudflare down: status %d, %d bytes, want 200 with the stored %d bytes",
					i+1, resp.StatusCode, len(body), len(stored[kept]))
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "image/") {
				t.Errorf("stale answer's Content-Type %q, want image/*", ct)
			}
		}
		if s := stale(); s != 3 {
			t.Errorf(`imagegate_requests_total{outcome="stale"} = %v after 3 stale answers, want 3`, s)
		}
		// What was never stored has nothing to fall back on.
		if resp, _ := r.view(t, tok, unseen, "public"); resp.StatusCode < 500 {
			t.Errorf("an image never stored, Cloudflare down: status %d, want a 5xx", resp.StatusCode)
		}
		// The outage is logged once, not per request.
		if line := r.srv.waitLine(2*time.Second, "serving stored images past cache_ttl"); line == "" {
			t.Error("no log line about serving stale images")
		}
		if n := strings.Count(r.srv.logs.String(), "serving stored images past cache_ttl"); n != 1 {
			t.Errorf("the outage was logged %d times, want once", n)
		}
	})
}
