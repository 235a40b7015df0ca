package e2e

import (
	"bytes"
	"context"
	binenc "encoding/binary"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
)

// issObjectKey is the byte tier's Redis key of an image of the emulator's
// account under the default key prefix, for the original format:
// <prefix>v2:img:{<account hash>:<id>}:<variant>:orig.
func issObjectKey(id, variant string) string {
	return "imagegate:v2:img:{" + emuHash + ":" + id + "}:" + variant + ":orig"
}

// issForgedObject is what an attacker who can write to Redis but has no
// signing key would store: the byte tier's layout (version 2, a 32-byte
// MAC, content type, ETag, Last-Modified, fresh-until, body), fresh for an
// hour, claiming HTML with a script, under a MAC of zeros.
func issForgedObject() []byte {
	b := []byte{2}
	b = append(b, make([]byte, 32)...)
	for _, s := range []string{"text/html", `"forged"`} {
		b = binenc.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binenc.AppendVarint(b, time.Now().Unix())
	b = binenc.AppendVarint(b, time.Now().Add(time.Hour).UnixMilli())
	body := "<script>alert('forged')</script>"
	b = binenc.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

// redisCLI runs redis-cli against a node of the cluster in cluster mode
// (-c, following MOVED), with the password in REDISCLI_AUTH, stdin as the
// last argument when -x is given.
func redisCLI(t *testing.T, c *redistest.Cluster, stdin []byte, args ...string) string {
	t.Helper()
	cli := requireTool(t, "redis-cli")
	host, port, _ := strings.Cut(c.Nodes[0].Addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, append([]string{"-c", "-h", host, "-p", port}, args...)...)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+c.Password)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestFleetProdCluster runs two replicas in proxy mode on a Redis Cluster
// of three primaries, each reaching it through a different single node as
// the configuration endpoint (`cluster`), logged in as the least-privilege
// ACL user: one replica's fetch is served by the other without a second
// delivery; a value forged straight into Redis is rejected, counted,
// deleted and never served; replicas that miss the same keys at once
// fetch each object once (fill leases); and the ACL refused nothing.
func TestFleetProdCluster(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	aclPassword := "gw-" + fleetHex(t, 12)
	aclURLs := c.AddACLUser("gw", aclPassword)
	e := startIssEmulator(t)
	env := []string{"ISS_GW_PASSWORD=" + aclPassword}
	var r [2]*issReplica
	for i := range r {
		// The node's URL with the password as a placeholder: the config
		// names one node of the cluster.
		_, node, _ := strings.Cut(aclURLs[i], "@")
		r[i] = startIssReplica(t, e, env, fmt.Sprintf("replica %d", i+1), fmt.Sprintf(`redis {
			url     redis://gw:{env.ISS_GW_PASSWORD}@%s
			cluster
			timeout 500ms
		}`, node), `mode proxy {
			cache_ttl 1h
			timeout   5s
		}`)
	}
	r1, r2 := r[0], r[1]
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{c.Nodes[0].Addr}, Password: c.Password})
	t.Cleanup(func() { rdb.Close() })
	waitKey := func(t *testing.T, key string) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			n, err := rdb.Exists(context.Background(), key).Result()
			if err == nil && n == 1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no Redis key %s within 5s (err %v)", key, err)
			}
		}
	}
	tok := e.rig.ownerToken

	t.Run("the_other_replica_serves_from_the_cluster", func(t *testing.T) {
		id := e.rig.putImage(t, fleetPNG(t, 48, 32, 7))
		before := deliveries(t, e.rig.emuAdmin, "public")
		resp, body1 := r1.view(t, tok, id, "public")
		if resp.StatusCode != 200 || len(body1) == 0 {
			t.Fatalf("replica 1: status %d", resp.StatusCode)
		}
		waitKey(t, issObjectKey(id, "public"))
		hits := fleetMetric(t, r2.admin, fleetRedisHits)
		resp, body2 := r2.view(t, tok, id, "public")
		if resp.StatusCode != 200 || body2 != body1 {
			t.Fatalf("replica 2: status %d, same bytes %v", resp.StatusCode, body2 == body1)
		}
		if d := deliveries(t, e.rig.emuAdmin, "public"); d != before+1 {
			t.Errorf("deliveries %v → %v, want +1: replica 2 fetched again", before, d)
		}
		if h := fleetMetric(t, r2.admin, fleetRedisHits); h != hits+1 {
			t.Errorf("replica 2's redis-tier hits %v → %v, want +1", hits, h)
		}
	})

	t.Run("a_forged_value_is_rejected_and_never_served", func(t *testing.T) {
		id := e.rig.putImage(t, fleetPNG(t, 48, 32, 8))
		key := issObjectKey(id, "public")
		if out := redisCLI(t, c, issForgedObject(), "-x", "SET", key); out != "OK" {
			t.Fatalf("redis-cli SET: %q", out)
		}
		rejected := fleetMetric(t, r2.admin, `imagegate_redis_rejected_total{reason="mac"}`)
		before := deliveries(t, e.rig.emuAdmin, "public")
		resp, body := r2.view(t, tok, id, "public")
		if resp.StatusCode != 200 || strings.Contains(body, "forged") || !strings.HasPrefix(body, "\x89PNG") {
			t.Fatalf("replica 2 over a forged Redis value: status %d, body %.40q, want 200 with the real PNG", resp.StatusCode, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "image/png" {
			t.Errorf("Content-Type %q, want image/png", ct)
		}
		if n := fleetMetric(t, r2.admin, `imagegate_redis_rejected_total{reason="mac"}`); n != rejected+1 {
			t.Errorf(`imagegate_redis_rejected_total{reason="mac"} %v → %v, want +1`, rejected, n)
		}
		if d := deliveries(t, e.rig.emuAdmin, "public"); d != before+1 {
			t.Errorf("deliveries %v → %v, want +1 (the forged value is a miss)", before, d)
		}
		// The forged value is gone (replaced by the real object), and
		// replica 1 serves the real bytes from the cluster.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			v, err := rdb.Get(context.Background(), key).Result()
			if err == nil && !strings.Contains(v, "forged") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Redis still holds the forged value 5s later (err %v)", err)
			}
		}
		if resp, body1 := r1.view(t, tok, id, "public"); resp.StatusCode != 200 || body1 != body {
			t.Errorf("replica 1: status %d, same bytes as replica 2: %v", resp.StatusCode, body1 == body)
		}
	})

	t.Run("concurrent_misses_fetch_each_object_once", func(t *testing.T) {
		const distinct, perReplica = 24, 3
		ids := make([]string, distinct)
		for i := range ids {
			ids[i] = e.rig.putImage(t, fleetPNG(t, 96, 64, 200+i))
		}
		before := deliveries(t, e.rig.emuAdmin, "thumbnail")
		var wg sync.WaitGroup
		statuses := make(chan int, distinct*2*perReplica)
		for _, id := range ids {
			start := make(chan struct{})
			for _, rep := range r {
				for range perReplica {
					wg.Go(func() {
						<-start
						resp, err := noRedirect.Do(issRequest(t, rep.site, tok, id, "thumbnail"))
						if err != nil {
							t.Error(err)
							return
						}
						resp.Body.Close()
						statuses <- resp.StatusCode
					})
				}
			}
			close(start)
		}
		wg.Wait()
		close(statuses)
		for s := range statuses {
			if s != 200 {
				t.Errorf("a concurrent miss answered %d, want 200", s)
			}
		}
		d := deliveries(t, e.rig.emuAdmin, "thumbnail") - before
		t.Logf("%d requests (%d per object on each of 2 replicas) for %d distinct objects: %v upstream deliveries",
			distinct*2*perReplica, perReplica, distinct, d)
		if d != distinct {
			t.Errorf("upstream deliveries %v for %d distinct objects missed at once on two replicas, want %d (one per object)", d, distinct, distinct)
		}
	})

	t.Run("the_acl_user_was_never_refused", func(t *testing.T) {
		// Redis logs every command and key an ACL refused; a timeout on
		// this shared machine is not the ACL's doing, so errors are only
		// reported.
		for _, node := range c.Nodes {
			entries, err := node.Client().Do(context.Background(), "ACL", "LOG").Slice()
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("node %s refused the ACL user %d times: %v", node.Addr, len(entries), entries)
			}
		}
		for _, rep := range r {
			t.Logf("%s: %v of %v Redis calls failed", rep.name,
				issMetricSum(t, rep.admin, "imagegate_redis_errors_total"), issMetricSum(t, rep.admin, "imagegate_redis_operations_total"))
			if up := fleetMetric(t, rep.admin, fleetRedisUp); up != 1 {
				t.Errorf("%s: %s = %v, want 1", rep.name, fleetRedisUp, up)
			}
		}
	})
}

// issRequest is a GET of /img/<id>/<variant> on site with the token as the
// session cookie, bounded by noRedirect's timeout.
func issRequest(t *testing.T, site, token, id, variant string) *http.Request {
	req, err := http.NewRequest("GET", "http://"+site+"/img/"+id+"/"+variant, nil)
	if err != nil {
		t.Error(err)
	}
	req.Header.Set("Cookie", "session="+token)
	return req
}

// TestFleetProdSentinelFailover runs two replicas in proxy mode on a
// Sentinel-managed primary (`sentinel mymaster`): while requests run,
// the primary is killed and the Sentinel fails over to the replica; no
// request fails, and afterwards the shared tier works again without a
// reload (one replica's fetch served by the other from the new primary).
func TestFleetProdSentinelFailover(t *testing.T) {
	ss := redistest.StartSentinel(t)
	e := startIssEmulator(t)
	env := []string{"ISS_REDIS_PASSWORD=" + ss.Primary.Password, "ISS_SENTINEL_PASSWORD=" + ss.Sentinel.Password}
	var r [2]*issReplica
	for i := range r {
		r[i] = startIssReplica(t, e, env, fmt.Sprintf("replica %d", i+1), fmt.Sprintf(`redis {
			url               redis://:{env.ISS_REDIS_PASSWORD}@%s/0
			sentinel          %s
			sentinel_password {env.ISS_SENTINEL_PASSWORD}
			timeout           200ms
		}`, ss.Sentinel.Addr, redistest.MasterName), `mode proxy {
			cache_ttl 1h
			timeout   5s
		}`)
	}
	r1, r2 := r[0], r[1]
	tok := e.rig.ownerToken
	cached := e.rig.putImage(t, fleetPNG(t, 48, 32, 300))
	for _, rep := range r {
		if resp, _ := rep.view(t, tok, cached, "public"); resp.StatusCode != 200 {
			t.Fatalf("%s before the failover: status %d", rep.name, resp.StatusCode)
		}
	}
	fresh := make([]string, 40)
	for i := range fresh {
		fresh[i] = e.rig.putImage(t, fleetPNG(t, 48, 32, 301+i))
	}

	// Requests run on both replicas, a cached image and a fresh one in
	// turn, from before the kill until the Sentinel names the new primary.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	sent, failed := 0, []string{}
	for i, rep := range r {
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := cached
				if n%2 == 1 {
					id = fresh[(n/2*2+i)%len(fresh)]
				}
				resp, err := noRedirect.Do(issRequest(t, rep.site, tok, id, "public"))
				mu.Lock()
				sent++
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", rep.name, err))
				} else {
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed = append(failed, fmt.Sprintf("%s: status %d", rep.name, resp.StatusCode))
					}
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	killed := time.Now()
	ss.Primary.Stop()
	for {
		addr, err := ss.PrimaryAddr(context.Background())
		if err == nil && addr == ss.Replica.Addr {
			break
		}
		if time.Since(killed) > 20*time.Second {
			close(stop)
			wg.Wait()
			t.Fatalf("the Sentinel did not fail over within 20s (primary %q, %v)", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	failedOver := time.Since(killed)
	time.Sleep(500 * time.Millisecond) // and a little after
	close(stop)
	wg.Wait()
	t.Logf("the Sentinel failed over %v after the primary was killed; %d requests during it, %d failed", failedOver.Round(time.Millisecond), sent, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed during the failover, the first: %s", len(failed), sent, failed[0])
	}

	// The shared tier works again, on the new primary, without a reload.
	// Each try is a new image, so replica 1 misses every tier and stores
	// what it fetched once its breaker lets Redis calls through again.
	newPrimary := ss.Replica.Client()
	var after string
	began := time.Now()
	for try := 0; ; try++ {
		after = e.rig.putImage(t, fleetPNG(t, 48, 32, 400+try))
		if resp, _ := r1.view(t, tok, after, "public"); resp.StatusCode != 200 {
			t.Fatalf("replica 1 after the failover: status %d", resp.StatusCode)
		}
		stored := false
		for deadline := time.Now().Add(500 * time.Millisecond); !stored && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			n, _ := newPrimary.Exists(context.Background(), issObjectKey(after, "public")).Result()
			stored = n == 1
		}
		if stored {
			break
		}
		if time.Since(began) > 20*time.Second {
			t.Fatal("replica 1 stored nothing on the new primary within 20s of the failover")
		}
	}
	t.Logf("replica 1 stored on the new primary %v after the failover", time.Since(began).Round(time.Millisecond))
	for time.Since(began) < 20*time.Second && fleetMetric(t, r2.admin, fleetRedisUp) != 1 {
		r2.view(t, tok, "iss-probe-"+fleetHex(t, 6), "public") // a miss asks Redis: the breaker's probe
		time.Sleep(100 * time.Millisecond)
	}
	before := deliveries(t, e.rig.emuAdmin, "public")
	hits := fleetMetric(t, r2.admin, fleetRedisHits)
	if resp, _ := r2.view(t, tok, after, "public"); resp.StatusCode != 200 {
		t.Fatalf("replica 2 after the failover: status %d", resp.StatusCode)
	}
	if d := deliveries(t, e.rig.emuAdmin, "public"); d != before {
		t.Errorf("replica 2 fetched upstream after the failover (deliveries %v → %v): the shared tier is not back", before, d)
	}
	if h := fleetMetric(t, r2.admin, fleetRedisHits); h != hits+1 {
		t.Errorf("replica 2's redis-tier hits %v → %v, want +1", hits, h)
	}
}
