package e2e

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
)

// toxiBound is the most any request may take while the Redis link is slow
// or broken: the replicas' Redis timeout is 100ms, so a request waits for
// Redis a few times that at worst, then answers from memory or upstream.
const toxiBound = time.Second

// toxiLink is a Toxiproxy proxy, run inside the test process, between the
// gateways and a real redis-server: the faults are Toxiproxy's own toxics
// (https://github.com/Shopify/toxiproxy#toxics), because these machines'
// kernel has no netem qdisc to delay or break a real network link.
type toxiLink struct {
	proxy *toxiproxy.Proxy
}

// startToxiLink starts a proxy listening on listen (host:0 for a free
// port) to upstream, with no toxic yet, and stops it when t ends.
func startToxiLink(t *testing.T, upstream, listen string) *toxiLink {
	t.Helper()
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(api, "redis", listen, upstream)
	if err := api.Collection.Add(p, true); err != nil {
		t.Fatalf("toxiproxy: start the proxy to %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &toxiLink{proxy: p}
}

// Addr is the proxy's host:port, the replicas' Redis address.
func (l *toxiLink) Addr() string { return l.proxy.Listen }

// add adds a toxic named name of a type to a direction ("upstream" is the
// gateways' commands, "downstream" Redis's replies) with attrs, a JSON
// object as Toxiproxy's HTTP API takes it. It applies to open connections
// as well as new ones.
func (l *toxiLink) add(t *testing.T, name, typ, stream, attrs string) {
	t.Helper()
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		t.Fatalf("toxiproxy: add %s: %v", js, err)
	}
}

// remove takes the toxic named name off the link.
func (l *toxiLink) remove(t *testing.T, name string) {
	t.Helper()
	if err := l.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		t.Fatalf("toxiproxy: remove %s: %v", name, err)
	}
}

// toxiNoisyPNG is a w×h PNG of random pixels (from seed), which PNG
// cannot compress: about 4·w·h bytes.
func toxiNoisyPNG(t *testing.T, w, h int, seed int64) []byte {
	t.Helper()
	rnd := rand.New(rand.NewPCG(uint64(seed), 0))
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = uint8(rnd.Uint32())
	}
	for i := 3; i < len(m.Pix); i += 4 {
		m.Pix[i] = 255 // opaque
	}
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// toxiPercentiles returns the median and the 99th percentile (nearest
// rank) of ds.
func toxiPercentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return rank(0.50), rank(0.99)
}

// TestToxiproxyRedisLink runs Redis, the emulator and two gateway
// replicas in proxy mode whose only way to Redis is a Toxiproxy link. With
// 1ms of latency on Redis's replies it measures, per request, what the
// Redis tier costs against the memory tier. Then it breaks the link: cut
// connections (every command is answered with a TCP reset), then replies
// cut short after a few KB whose connection is closed only seconds later
// (limit_data, then slow_close). Every request answers 200 with the right
// bytes within toxiBound throughout, the breaker says so once per
// outage, and when the link is whole again one replica's fetch is served
// by the other from Redis without a reload.
func TestToxiproxyRedisLink(t *testing.T) {
	began := time.Now()
	rs := redistest.Start(t)
	link := startToxiLink(t, rs.Addr, "127.0.0.1:0")
	e := startIssEmulator(t)
	env := []string{"TOX_REDIS_PASSWORD=" + rs.Password}
	var r [2]*issReplica
	for i := range r {
		r[i] = startIssReplica(t, e, env, fmt.Sprintf("replica %d", i+1), fmt.Sprintf(`redis {
			url     redis://:{env.TOX_REDIS_PASSWORD}@%s/0
			timeout 100ms
		}`, link.Addr()), `mode proxy {
			cache_size  64MiB
			cache_ttl   1h
			fetch_limit off # one caller makes every request here
			timeout     5s
		}`)
	}
	t.Logf("Redis, Toxiproxy, the emulator and two replicas started in %v", time.Since(began).Round(time.Millisecond))
	toxiPhases(t, link, e, r, rs.Client())
	t.Logf("TestToxiproxyRedisLink took %v", time.Since(began).Round(time.Millisecond))
}

// toxiPhases runs the measurements and faults of TestToxiproxyRedisLink on
// a started rig: two proxy-mode replicas reaching Redis only through link,
// with the emulator upstream, and rdb a client straight to Redis, past
// the link.
func toxiPhases(t *testing.T, link *toxiLink, e *issEmulator, r [2]*issReplica, rdb *redis.Client) {
	r1, r2 := r[0], r[1]
	tok := e.rig.ownerToken

	// view fetches id through rep, requires a 200 with a PNG within
	// toxiBound, and returns the body and how long it took.
	view := func(t *testing.T, rep *issReplica, id string) (string, time.Duration) {
		t.Helper()
		t0 := time.Now()
		resp, body := rep.view(t, tok, id, "public")
		d := time.Since(t0)
		if resp.StatusCode != 200 || !strings.HasPrefix(body, "\x89PNG") {
			t.Fatalf("%s: GET %s: status %d, %d bytes, want 200 with a PNG", rep.name, id, resp.StatusCode, len(body))
		}
		if d >= toxiBound {
			t.Errorf("%s: GET %s took %v, want < %v", rep.name, id, d.Round(time.Millisecond), toxiBound)
		}
		return body, d
	}
	waitStored := func(t *testing.T, id string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			if n, err := rdb.Exists(context.Background(), issObjectKey(id, "public")).Result(); err == nil && n == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no Redis entry for %s within 5s", id)
			}
		}
	}
	upload := func(t *testing.T, n, seed, w, h int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = e.rig.putImage(t, fleetPNG(t, w, h, seed+i))
		}
		return ids
	}
	// tiers has replica 1 fetch each of ids (a miss in every tier: it
	// stores the bytes in Redis), then times replica 2's first request for
	// each (a hit in the Redis tier) and its second (a hit in its memory
	// tier), and checks that replica 2 fetched nothing upstream.
	tiers := func(t *testing.T, ids []string) (redisTier, memTier []time.Duration) {
		t.Helper()
		bodies := make([]string, len(ids))
		for i, id := range ids {
			bodies[i], _ = view(t, r1, id)
		}
		for _, id := range ids {
			waitStored(t, id)
		}
		before := deliveries(t, e.rig.emuAdmin, "public")
		hits := fleetMetric(t, r2.admin, fleetRedisHits)
		mem := fleetMetric(t, r2.admin, fleetMemoryHits)
		for i, id := range ids {
			body, d := view(t, r2, id)
			if body != bodies[i] {
				t.Fatalf("replica 2 served other bytes for %s than replica 1", id)
			}
			redisTier = append(redisTier, d)
		}
		for _, id := range ids {
			_, d := view(t, r2, id)
			memTier = append(memTier, d)
		}
		if d := deliveries(t, e.rig.emuAdmin, "public"); d != before {
			t.Errorf("replica 2 fetched upstream: deliveries %v → %v, want no change", before, d)
		}
		if h := fleetMetric(t, r2.admin, fleetRedisHits); h != hits+float64(len(ids)) {
			t.Errorf("replica 2's redis-tier hits %v → %v, want +%d", hits, h, len(ids))
		}
		if m := fleetMetric(t, r2.admin, fleetMemoryHits); m != mem+float64(len(ids)) {
			t.Errorf("replica 2's memory-tier hits %v → %v, want +%d", mem, m, len(ids))
		}
		return redisTier, memTier
	}
	// waitUp sends requests for unknown images (each a miss that asks
	// Redis: the breaker's probe once its cool-down is over) until both
	// replicas report Redis up, bounded.
	waitUp := func(t *testing.T) time.Duration {
		t.Helper()
		since := time.Now()
		for _, rep := range r {
			for fleetMetric(t, rep.admin, fleetRedisUp) != 1 {
				if time.Since(since) > 15*time.Second {
					t.Fatalf("%s: %s still 0 15s after the link was whole again", rep.name, fleetRedisUp)
				}
				rep.view(t, tok, "tox-probe-"+fleetHex(t, 6), "public")
				time.Sleep(100 * time.Millisecond)
			}
		}
		return time.Since(since)
	}
	// mixed sends, to each replica in turn, a request for one of fresh
	// (never seen by that replica) and one for cached (in its memory
	// tier), all of which must answer 200 within toxiBound, and returns
	// the slowest.
	mixed := func(t *testing.T, phase string, fresh, cached []string) {
		t.Helper()
		var worst, total time.Duration
		n := 0
		for i, id := range fresh {
			rep := r[i%2]
			for _, id := range []string{id, cached[i%len(cached)]} {
				_, d := view(t, rep, id)
				worst, total, n = max(worst, d), total+d, n+1
			}
		}
		t.Logf("%s: %d requests, all 200, mean %v, max %v", phase, n, (total / time.Duration(n)).Round(time.Microsecond), worst.Round(time.Microsecond))
	}
	failingLogs := func(rep *issReplica) (failing, back int) {
		logs := rep.srv.logs.String()
		return strings.Count(logs, "redis is failing"), strings.Count(logs, "redis is answering again")
	}

	const perTier = 200
	t.Run("latency_1ms_redis_tier_against_memory_tier", func(t *testing.T) {
		base := upload(t, perTier, 1000, 48, 32)
		slow := upload(t, perTier, 2000, 48, 32)
		redis0, mem0 := tiers(t, base)
		link.add(t, "latency", "latency", "downstream", `{"latency":1}`)
		redis1, mem1 := tiers(t, slow)
		link.remove(t, "latency")
		for _, m := range []struct {
			what string
			ds   []time.Duration
		}{
			{"redis tier, no added latency", redis0},
			{"memory tier, no added latency", mem0},
			{"redis tier, 1ms latency", redis1},
			{"memory tier, 1ms latency", mem1},
		} {
			p50, p99 := toxiPercentiles(m.ds)
			t.Logf("%-30s %d requests: p50 %v, p99 %v", m.what+":", len(m.ds), p50.Round(time.Microsecond), p99.Round(time.Microsecond))
		}
		// The added millisecond is paid on the Redis tier only, at least
		// once per request (the GET's reply is delayed).
		p50r, _ := toxiPercentiles(redis1)
		if p50r < time.Millisecond {
			t.Errorf("redis tier's p50 at 1ms latency is %v, below the latency itself: the request did not go through the link", p50r)
		}
		if p50m, _ := toxiPercentiles(mem1); p50m >= p50r {
			t.Errorf("memory tier's p50 %v is not below the redis tier's %v", p50m, p50r)
		}
	})

	cached := upload(t, 4, 3000, 48, 32)
	for _, rep := range r {
		for _, id := range cached {
			view(t, rep, id)
		}
	}

	t.Run("cut_connections", func(t *testing.T) {
		for _, rep := range r {
			if up := fleetMetric(t, rep.admin, fleetRedisUp); up != 1 {
				t.Fatalf("%s: %s = %v before the fault, want 1", rep.name, fleetRedisUp, up)
			}
		}
		before := deliveries(t, e.rig.emuAdmin, "public")
		fresh := upload(t, 32, 4000, 48, 32)
		// Every command the gateways send is answered with a TCP reset,
		// on open connections and new ones.
		link.add(t, "cut", "reset_peer", "upstream", `{"timeout":0}`)
		mixed(t, "connections cut", fresh, cached)
		for _, rep := range r {
			if up := fleetMetric(t, rep.admin, fleetRedisUp); up != 0 {
				t.Errorf("%s: %s = %v while every connection is cut, want 0", rep.name, fleetRedisUp, up)
			}
			if failing, _ := failingLogs(rep); failing != 1 {
				t.Errorf("%s logged \"redis is failing\" %d times, want once", rep.name, failing)
			}
		}
		if d := deliveries(t, e.rig.emuAdmin, "public"); d != before+float64(len(fresh)) {
			t.Errorf("deliveries %v → %v, want +%d (each fresh image fetched upstream once)", before, d, len(fresh))
		}
		link.remove(t, "cut")
		t.Logf("connections cut: both replicas use Redis again %v after the link was whole", waitUp(t).Round(time.Millisecond))
	})

	t.Run("hung_connections", func(t *testing.T) {
		failing0 := [2]int{}
		for i, rep := range r {
			failing0[i], _ = failingLogs(rep)
		}
		// Every command is swallowed and never answered, and connections
		// stay open: a black hole, as a stopped Redis or a dropped route.
		link.add(t, "hang", "timeout", "upstream", `{"timeout":0}`)
		mixed(t, "connections hung", upload(t, 32, 4500, 48, 32), cached)
		for i, rep := range r {
			if up := fleetMetric(t, rep.admin, fleetRedisUp); up != 0 {
				t.Errorf("%s: %s = %v while Redis never answers, want 0", rep.name, fleetRedisUp, up)
			}
			if failing, _ := failingLogs(rep); failing != failing0[i]+1 {
				t.Errorf("%s logged \"redis is failing\" %d times in this outage, want once", rep.name, failing-failing0[i])
			}
		}
		link.remove(t, "hang")
		t.Logf("connections hung: both replicas use Redis again %v after the link was whole", waitUp(t).Round(time.Millisecond))
	})

	t.Run("short_replies_then_slow_close", func(t *testing.T) {
		// Images of several KB, so a Redis reply holding one is cut short.
		big := make([]string, 16)
		for i := range big {
			big[i] = e.rig.putImage(t, toxiNoisyPNG(t, 64, 64, int64(5000+i)))
		}
		bodies := map[string]string{}
		for _, id := range big {
			bodies[id], _ = view(t, r1, id)
			waitStored(t, id)
		}
		before := deliveries(t, e.rig.emuAdmin, "public")
		hits := fleetMetric(t, r2.admin, fleetRedisHits)
		errs := issMetricSum(t, r2.admin, "imagegate_redis_errors_total")
		failing0, _ := failingLogs(r2)
		// Each connection carries 2KB of replies, then stops; its close
		// reaches the gateway 3s later, far past the Redis timeout.
		link.add(t, "short", "limit_data", "downstream", `{"bytes":2048}`)
		link.add(t, "slow_close", "slow_close", "downstream", `{"delay":3000}`)
		var worst time.Duration
		for _, id := range big {
			body, d := view(t, r2, id)
			if body != bodies[id] {
				t.Errorf("replica 2 served other bytes for %s than replica 1 fetched", id)
			}
			worst = max(worst, d)
		}
		failing, _ := failingLogs(r2)
		t.Logf("short replies, slow close: replica 2 served %d images of %d bytes or more, all 200 with replica 1's bytes, max %v: %v from Redis, %v fetched upstream again, %v Redis errors, \"redis is failing\" logged %d more time(s)",
			len(big), len(bodies[big[0]]), worst.Round(time.Microsecond),
			fleetMetric(t, r2.admin, fleetRedisHits)-hits, deliveries(t, e.rig.emuAdmin, "public")-before,
			issMetricSum(t, r2.admin, "imagegate_redis_errors_total")-errs, failing-failing0)
		mixed(t, "short replies, slow close", upload(t, 16, 6000, 48, 32), cached)
		failing, _ = failingLogs(r2)
		if issMetricSum(t, r2.admin, "imagegate_redis_errors_total") == errs {
			t.Error("replica 2 counted no Redis error: the short replies did not reach it")
		}
		if failing-failing0 > 1 {
			t.Errorf("replica 2 logged \"redis is failing\" %d times in one outage, want at most once", failing-failing0)
		}
		link.remove(t, "slow_close")
		link.remove(t, "short")
	})

	t.Run("restored_sharing_resumes_without_reload", func(t *testing.T) {
		t.Logf("both replicas use Redis again %v after the link was whole", waitUp(t).Round(time.Millisecond))
		id := upload(t, 1, 7000, 48, 32)[0]
		before := deliveries(t, e.rig.emuAdmin, "public")
		body1, _ := view(t, r1, id)
		waitStored(t, id)
		hits := fleetMetric(t, r2.admin, fleetRedisHits)
		if body2, _ := view(t, r2, id); body2 != body1 {
			t.Error("replica 2 served other bytes than replica 1")
		}
		if d := deliveries(t, e.rig.emuAdmin, "public"); d != before+1 {
			t.Errorf("deliveries %v → %v, want +1 (replica 2 should hit Redis)", before, d)
		}
		if h := fleetMetric(t, r2.admin, fleetRedisHits); h != hits+1 {
			t.Errorf("replica 2's redis-tier hits %v → %v, want +1", hits, h)
		}
		for _, rep := range r {
			failing, back := failingLogs(rep)
			t.Logf("%s logged \"redis is failing\" %d and \"redis is answering again\" %d times in all", rep.name, failing, back)
		}
	})
}
