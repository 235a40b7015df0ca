package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
	"github.com/seed-a64a90cf/imagegate/limit"
)

// The tests in this file run what the gateway does with Redis (the byte
// tier, the limiter, purges over Pub/Sub) against each topology ops run,
// started for real by redistest.

// purgeChannelName is the name, under the key prefix, that the tests
// publish purges on.
const purgeChannelName = "v1:purge"

// purgeListener is a started Purger on its own client, as on a replica,
// and the purges it received.
type purgeListener struct {
	*Purger
	purges chan purge
}

func listenForPurges(t *testing.T, o Options) purgeListener {
	t.Helper()
	c := openClientWith(t, o)
	purges := make(chan purge, 100)
	p := NewPurger(c, c.Channel(purgeChannelName), testMACKey, func(id, variant string) {
		purges <- purge{id, variant}
	})
	p.Start(context.Background())
	t.Cleanup(p.Close)
	return purgeListener{p, purges}
}

// openClientWith opens a Client on o and closes it when t ends.
func openClientWith(t testing.TB, o Options) *Client {
	t.Helper()
	c, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// awaitPurge publishes purges of probe through pub until every listener
// has received one (Pub/Sub reaches only subscribers present when a
// message is sent, and a subscription is made in the background), then
// drains them.
func awaitPurge(t *testing.T, pub *Purger, probe string, ls ...purgeListener) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	got := make([]bool, len(ls))
	for n := 0; n < len(ls); {
		if time.Now().After(deadline) {
			t.Fatalf("purge %q reached %d of %d listeners within 15s", probe, n, len(ls))
		}
		_ = pub.Publish(context.Background(), probe, "")
		time.Sleep(50 * time.Millisecond)
		for i, l := range ls {
			for len(l.purges) > 0 {
				if p := <-l.purges; p.id == probe && !got[i] {
					got[i] = true
					n++
				}
			}
		}
	}
}

// exercise runs the byte tier, the limiter and purges through o, as two
// replicas would, and fails t on any Redis error: a CROSSSLOT, MOVED or
// NOPERM error, a timeout, a refused call. It returns the keys it left in
// Redis.
func exercise(t *testing.T, o Options) []string {
	t.Helper()
	log := newOpLog()
	o = log.options(o)
	c := openClientWith(t, o)
	ctx := context.Background()
	// fatal says what Redis answered along with what went wrong.
	fatal := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"; first redis errors: %v", append(args, log.firstErrors(3))...)
	}

	tier := NewByteTier(c, 0, testMACKey)
	const images = 30
	var keys []imageproxy.Key
	for i := range images {
		for _, v := range []string{"public", "thumb"} {
			keys = append(keys, imageproxy.Key{AccountHash: "acct", ID: fmt.Sprintf("img-%d", i), Variant: v, Format: imageproxy.FormatAVIF})
		}
	}
	for _, k := range keys {
		tier.Set(ctx, k, testObject(1000), time.Minute)
		tier.Wait() // writes beyond MaxBackgroundWrites would be dropped
	}
	for _, k := range keys {
		if _, ok := tier.Get(ctx, k); !ok {
			fatal("byte tier: Get(%v) missed after Set", k)
		}
	}
	// One Delete of many images: keys on every node of a cluster.
	gone := keys[:len(keys)/2]
	if n := tier.Delete(ctx, gone...); n != len(gone) {
		fatal("byte tier: Delete removed %d of %d", n, len(gone))
	}
	for _, k := range gone {
		if _, ok := tier.Get(ctx, k); ok {
			fatal("byte tier: Get(%v) hit after Delete", k)
		}
	}

	rate := limit.Rate{Events: 3, Per: time.Hour}
	fallback := &countingLimiter{}
	replicas := []*Limiter{
		NewLimiter(c, "upload", rate, fallback),
		NewLimiter(openClientWith(t, o), "upload", rate, fallback),
	}
	for i := range 5 {
		subject := fmt.Sprintf("user-%d", i)
		allowed := 0
		for j := range 3 * rate.Events {
			if replicas[j%2].Allow(ctx, subject).Allowed {
				allowed++
			}
		}
		if allowed != rate.Events {
			fatal("limiter: two replicas allowed %s %d events, want %d", subject, allowed, rate.Events)
		}
	}

	r1, r2 := listenForPurges(t, o), listenForPurges(t, o)
	awaitPurge(t, r1.Purger, "probe", r1, r2)
	if err := r1.Publish(ctx, "img-1", "thumb"); err != nil {
		fatal("purge: Publish: %v", err)
	}
	for _, r := range []purgeListener{r1, r2} {
		for p := receive(t, r.purges, "purge"); p != (purge{"img-1", "thumb"}); p = receive(t, r.purges, "purge") {
			if p.id != "probe" {
				fatal("purge: received %+v, want img-1 thumb", p)
			}
		}
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	for op, errs := range log.errs {
		for _, err := range errs {
			if err != nil {
				t.Errorf("%s: %v", op, err)
			}
		}
	}
	var left []string
	for _, k := range keys[len(keys)/2:] {
		left = append(left, c.imageKey(k))
	}
	return left
}

// TestClusterThroughSeeds runs the fleet on a three-primary Redis Cluster
// given by all its nodes' URLs, and checks the keys spread over the nodes.
func TestClusterThroughSeeds(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	left := exercise(t, Options{URLs: cl.URLs()})
	nodes := 0
	for _, s := range cl.Nodes {
		n, err := s.Client().DBSize(context.Background()).Result()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", s.Addr, err)
		}
		if n > 0 {
			nodes++
		}
	}
	if nodes < 2 {
		t.Fatalf("the %d keys left landed on %d of 3 nodes; the test did not cross nodes", len(left), nodes)
	}
}

// TestClusterThroughConfigurationEndpoint gives one node's URL with
// Cluster set, as a managed cluster's configuration endpoint is given.
func TestClusterThroughConfigurationEndpoint(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	exercise(t, Options{URLs: []string{cl.Nodes[0].URL}, Cluster: true})
}

// TestClusterEndpointWithoutClusterGetsMOVED shows what Cluster is for:
// the same URL taken as a single node answers MOVED for the keys of the
// other nodes.
func TestClusterEndpointWithoutClusterGetsMOVED(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	log := newOpLog()
	c := openClientWith(t, log.options(Options{URLs: []string{cl.Nodes[0].URL}, FailureThreshold: 1000}))
	tier := NewByteTier(c, 0, testMACKey)
	for i := range 20 {
		tier.Get(context.Background(), imageproxy.Key{AccountHash: "a", ID: fmt.Sprint(i)})
	}
	moved := 0
	log.mu.Lock()
	for _, err := range log.errs[OpGet] {
		if err != nil && strings.HasPrefix(err.Error(), "MOVED") {
			moved++
		}
	}
	log.mu.Unlock()
	if moved == 0 {
		t.Fatal("no MOVED error from a cluster node taken for a single node; the test proves nothing")
	}
	t.Logf("%d of 20 Gets answered MOVED", moved)
}

// TestImageKeysShareASlot asks a real cluster where an image's keys land:
// every variant and format of one image in one slot (so a multi-key
// command on them works), and different images spread.
func TestImageKeysShareASlot(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	admin := cl.Nodes[0].Client()
	c := openClientWith(t, Options{URLs: cl.URLs()})
	ctx := context.Background()
	slot := func(key string) int64 {
		n, err := admin.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT: %v", err)
		}
		return n
	}
	var keys []string
	for _, v := range []string{"public", "thumb", "x:y", "{v}", strings.Repeat("w", 100)} {
		for _, f := range imageproxy.Formats {
			keys = append(keys, c.imageKey(imageproxy.Key{AccountHash: "acct", ID: "img", Variant: v, Format: f}))
		}
	}
	keys = append(keys, c.Key("v1", "lease", objectTag("acct", "img")))
	for _, k := range keys[1:] {
		if slot(k) != slot(keys[0]) {
			t.Fatalf("%q is in slot %d, %q in %d: one image's keys must share a slot", k, slot(k), keys[0], slot(keys[0]))
		}
	}
	if err := c.rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatalf("one DEL of one image's keys on the cluster: %v", err)
	}
	slots := map[int64]bool{}
	for i := range 20 {
		slots[slot(c.imageKey(imageproxy.Key{AccountHash: "acct", ID: fmt.Sprint(i)}))] = true
	}
	if len(slots) < 10 {
		t.Fatalf("20 images share %d slots, want them spread", len(slots))
	}
}

// TestClusterACLUser runs the fleet on the cluster as the ACL user.
func TestClusterACLUser(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	exercise(t, Options{URLs: cl.AddACLUser("gw", "gw-password")})
}

// TestACLUser runs the fleet as a user created with exactly
// redistest.GatewayACL, and then, with another key prefix, shows that
// Redis refuses that user every key and channel outside "imagegate:".
func TestACLUser(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.AddACLUser("gw", "gw-password")
	for _, k := range exercise(t, Options{URLs: []string{url}}) {
		if !strings.HasPrefix(k, "imagegate:") {
			t.Fatalf("key %q outside the prefix", k)
		}
	}

	log := newOpLog()
	o := log.options(Options{URLs: []string{url}, KeyPrefix: "other:", FailureThreshold: 1000})
	c := openClientWith(t, o)
	ctx := context.Background()
	tier := NewByteTier(c, 0, testMACKey)
	k := imageproxy.Key{AccountHash: "a", ID: "i"}
	tier.Set(ctx, k, testObject(100), time.Minute)
	tier.Wait()
	tier.Get(ctx, k)
	fallback := &countingLimiter{}
	NewLimiter(c, "api", limit.Rate{Events: 1, Per: time.Minute}, fallback).Allow(ctx, "alice")
	pubErr := NewPurger(c, c.Channel(purgeChannelName), testMACKey, func(string, string) {}).Publish(ctx, "i", "")
	for _, op := range []string{OpSet, OpGet, OpLimit} {
		if n := log.count(op, nil); n != 0 || log.calls(op) != 1 {
			t.Errorf("%s outside the prefix: %d of %d calls succeeded, want Redis to refuse", op, n, log.calls(op))
		}
	}
	log.mu.Lock()
	for op, errs := range log.errs {
		for _, err := range errs {
			if err != nil && !strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("%s outside the prefix: %v, want NOPERM", op, err)
			}
		}
	}
	log.mu.Unlock()
	if pubErr == nil || !strings.Contains(pubErr.Error(), "NOPERM") {
		t.Errorf("publish outside the prefix: %v, want NOPERM", pubErr)
	}
	if fallback.calls.Load() != 1 {
		t.Error("the limiter did not fall back when Redis refused it")
	}
}

// TestTLSWithPrivateCA runs the fleet over TLS to a server whose
// certificate a CA made by the test signed, trusting that CA by file.
func TestTLSWithPrivateCA(t *testing.T) {
	srv := redistest.StartTLS(t)
	exercise(t, Options{URLs: []string{srv.URL}, TLSCAFile: srv.CAFile})
}

// TestTLSWithoutTheCAFails: the system's roots do not trust the private
// CA, so every call fails (softly: a miss) with a certificate error.
func TestTLSWithoutTheCAFails(t *testing.T) {
	srv := redistest.StartTLS(t)
	log := newOpLog()
	// A long timeout, so that the handshake's own error, not the deadline,
	// ends the call on a busy machine.
	c := openClientWith(t, log.options(Options{URLs: []string{srv.URL}, Timeout: 2 * time.Second}))
	if _, ok := NewByteTier(c, 0, testMACKey).Get(context.Background(), imageproxy.Key{ID: "i"}); ok {
		t.Fatal("hit without trusting the server")
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	if errs := log.errs[OpGet]; len(errs) != 1 || errs[0] == nil || !strings.Contains(errs[0].Error(), "certificate") {
		t.Fatalf("Get errors %v, want one certificate error", errs)
	}
}

// TestSentinelFailover kills the primary under a client that found it
// through the Sentinel: calls during the failover are misses and fallback
// answers within the timeout, never errors, hangs or panics; after the
// Sentinel promotes the replica the same client (and its purge
// subscription) works again without being reopened. It logs how long each
// step took.
func TestSentinelFailover(t *testing.T) {
	set := redistest.StartSentinel(t)
	const timeout, coolDown = 100 * time.Millisecond, time.Second
	log := newOpLog()
	o := Options{
		URLs:             []string{set.URL},
		SentinelMaster:   redistest.MasterName,
		SentinelPassword: set.Sentinel.Password,
		Timeout:          timeout,
		CoolDown:         coolDown,
	}
	exercise(t, o)

	c := openClientWith(t, log.options(o))
	tier := NewByteTier(c, 0, testMACKey)
	lim := NewLimiter(c, "api", limit.Rate{Events: 1_000_000, Per: time.Minute}, &countingLimiter{})
	listener := listenForPurges(t, o)
	awaitPurge(t, listener.Purger, "before", listener)
	ctx := context.Background()
	k := imageproxy.Key{AccountHash: "acct", ID: "before-failover", Variant: "public"}
	tier.Set(ctx, k, testObject(1000), time.Hour)
	tier.Wait()
	// Replication is asynchronous: wait until the replica holds the key,
	// so that a hit after the failover shows the client reached it.
	replica := set.Replica.Client()
	waitUntil(t, 10*time.Second, "the replica holds the key", func() bool {
		return replica.Exists(ctx, c.imageKey(k)).Val() == 1
	})

	killed := time.Now()
	set.Primary.Stop()

	// The Sentinel's view, polled apart from the client's calls.
	var promoted time.Duration
	var wg sync.WaitGroup
	wg.Go(func() {
		for time.Since(killed) < 30*time.Second {
			if addr, err := set.PrimaryAddr(ctx); err == nil && addr == set.Replica.Addr {
				promoted = time.Since(killed)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	var (
		calls, misses int
		slowest       time.Duration
		recovered     time.Duration
	)
	for time.Since(killed) < 30*time.Second {
		start := time.Now()
		_, hit := tier.Get(ctx, k)
		lim.Allow(ctx, "alice")
		d := time.Since(start)
		calls++
		slowest = max(slowest, d)
		if hit {
			recovered = time.Since(killed)
			break
		}
		misses++
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("primary killed: Sentinel promoted the replica after %v; the client hit again after %v (breaker cool-down %v, timeout %v); %d rounds of Get+Allow in between, %d missed, slowest %v",
		promoted, recovered, coolDown, timeout, calls, misses, slowest)
	if recovered == 0 {
		t.Fatal("the client did not reach the new primary within 30s")
	}
	// A round is two calls, each bounded by the timeout (a failover client
	// may also ask the Sentinel within it).
	if slowest > 2*timeout+200*time.Millisecond {
		t.Errorf("slowest round took %v, want within two timeouts", slowest)
	}

	// Writes, limits and purges work again on the same client.
	before := log.count(OpLimit, nil)
	if !lim.Allow(ctx, "alice").Allowed || log.count(OpLimit, nil) != before+1 {
		t.Error("the limiter did not use Redis after the failover")
	}
	k2 := imageproxy.Key{AccountHash: "acct", ID: "after-failover"}
	tier.Set(ctx, k2, testObject(1000), time.Hour)
	tier.Wait()
	if _, ok := tier.Get(ctx, k2); !ok {
		t.Error("Set and Get after the failover missed")
	}
	awaitPurge(t, listener.Purger, "after", listener)

	log.mu.Lock()
	defer log.mu.Unlock()
	for op, errs := range log.errs {
		for _, err := range errs {
			var ne interface{ Timeout() bool }
			switch {
			case err == nil, errors.Is(err, ErrUnavailable), errors.As(err, &ne), isConnErr(err):
			default:
				t.Errorf("%s during the failover: unexpected error %v", op, err)
			}
		}
	}
}

// isConnErr reports whether err is one a failover may cause: a refused or
// closed connection, or a read-only replica not yet promoted.
func isConnErr(err error) bool {
	s := err.Error()
	for _, e := range []string{"connection refused", "EOF", "connection reset", "READONLY", "closed", "broken pipe"} {
		if strings.Contains(s, e) {
			return true
		}
	}
	return errors.Is(err, redis.ErrClosed)
}

// firstErrors returns up to n of the errors reported, for failure
// messages.
func (l *opLog) firstErrors(n int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for op, errs := range l.errs {
		for _, err := range errs {
			if err != nil && len(out) < n {
				out = append(out, op+": "+err.Error())
			}
		}
	}
	return out
}

// waitUntil polls cond every 10ms and fails t after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
