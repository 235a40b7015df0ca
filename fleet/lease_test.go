package fleet

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/fleet/redistest"
	"github.com/seed-a64a90cf/imagegate/imageproxy"
)

// countingUpstream is a delivery stand-in on 127.0.0.1 that counts
// fetches per path and answers each after delay, so that misses overlap.
type countingUpstream struct {
	*httptest.Server
	mu      sync.Mutex
	fetches map[string]int
}

func newCountingUpstream(t *testing.T, delay time.Duration) *countingUpstream {
	u := &countingUpstream{fetches: map[string]int{}}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.fetches[r.URL.Path]++
		u.mu.Unlock()
		time.Sleep(delay)
		w.Header().Set("Content-Type", "image/png")
		w.Write(bodyOf(r.URL.Path))
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *countingUpstream) total() (n int, dup []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for p, c := range u.fetches {
		n += c
		if c > 1 {
			dup = append(dup, fmt.Sprintf("%s×%d", p, c))
		}
	}
	return n, dup
}

// bodyOf is the image upstream serves at path.
func bodyOf(path string) []byte { return bytes.Repeat([]byte(path), 500) }

// fleetReplica is one gateway's proxy: its own memory tier and Redis
// client, the shared Redis tier and fill leases.
type fleetReplica struct {
	p      *imageproxy.Proxy
	mem    *imageproxy.Memory
	leases *Leases
	failed *atomic.Int64 // Redis calls that failed
}

func startReplica(t *testing.T, url string, cfg imageproxy.Config) fleetReplica {
	t.Helper()
	// A generous Redis budget: this machine may be loaded, and a call
	// that times out makes a replica fetch on its own, by design.
	failed := new(atomic.Int64)
	c := openClient(t, url, Options{Timeout: 3 * time.Second, OnOp: func(op string, d time.Duration, err error) {
		if err != nil {
			failed.Add(1)
		}
	}})
	t.Cleanup(func() {
		if n := failed.Load(); n > 0 {
			t.Logf("%d Redis calls failed", n)
		}
	})
	leases := NewLeases(c, c.Channel(FilledChannelName), testMACKey)
	leases.Start(context.Background())
	t.Cleanup(leases.Close)
	mem := imageproxy.NewMemory(64<<20, nil)
	cfg.Tiers = []imageproxy.Tier{mem, NewByteTier(c, 0, testMACKey)}
	cfg.Leases = leases
	p, err := imageproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	deadline := time.Now().Add(10 * time.Second)
	for !leases.sub.live.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the filled-notice subscription is not up after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fleetReplica{p: p, mem: mem, leases: leases, failed: failed}
}

// serve asks r for id and returns the status and body.
func (r fleetReplica) serve(t *testing.T, up *countingUpstream, id string) (int, []byte, error) {
	k := imageproxy.Key{AccountHash: "acct", ID: id, Variant: "public"}
	rec := httptest.NewRecorder()
	err := r.p.Serve(rec, httptest.NewRequest("GET", "/img/"+id+"/public", nil), k, up.URL+"/"+id+"?sig=00")
	return rec.Code, rec.Body.Bytes(), err
}

// TestTwoReplicasFetchEachObjectOnce: two replicas with their own memory
// tiers on one Redis miss the same keys at the same moment, several
// requests each: upstream is asked once per key.
func TestTwoReplicasFetchEachObjectOnce(t *testing.T) {
	srv := redistest.Start(t)
	up := newCountingUpstream(t, 50*time.Millisecond)
	cfg := imageproxy.Config{Timeout: 5 * time.Second}
	replicas := []fleetReplica{startReplica(t, srv.URL, cfg), startReplica(t, srv.URL, cfg)}
	const keys, perReplica = 30, 4
	start := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := range keys {
		id := "img-" + strconv.Itoa(i)
		for _, r := range replicas {
			for range perReplica {
				wg.Go(func() {
					<-start
					status, body, err := r.serve(t, up, id)
					if err != nil || status != 200 || !bytes.Equal(body, bodyOf("/"+id)) {
						bad.Add(1)
						t.Errorf("%s: status %d, %d bytes, err %v", id, status, len(body), err)
					}
				})
			}
		}
	}
	close(start)
	wg.Wait()
	n, dup := up.total()
	if n != keys {
		t.Errorf("%d upstream fetches for %d keys missed by 2 replicas at once; fetched more than once: %s", n, keys, strings.Join(dup, " "))
	}
	t.Logf("%d requests, %d failed, %d upstream fetches for %d keys", keys*2*perReplica, bad.Load(), n, keys)
}

// TestLeasesAsACLUser runs two replicas as the least-privilege ACL user
// the docs give: leases, notices, scripts and the tier all stay within
// the prefix, so not one Redis call fails, and each key is fetched once.
func TestLeasesAsACLUser(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.AddACLUser("gw", "gw-password")
	up := newCountingUpstream(t, 50*time.Millisecond)
	cfg := imageproxy.Config{Timeout: 5 * time.Second}
	replicas := []fleetReplica{startReplica(t, url, cfg), startReplica(t, url, cfg)}
	var wg sync.WaitGroup
	for i := range 5 {
		for _, r := range replicas {
			wg.Go(func() {
				if status, _, err := r.serve(t, up, "acl-"+strconv.Itoa(i)); err != nil || status != 200 {
					t.Errorf("status %d, err %v", status, err)
				}
			})
		}
	}
	wg.Wait()
	if n, _ := up.total(); n != 5 {
		t.Errorf("%d fetches for 5 keys", n)
	}
	for i, r := range replicas {
		if n := r.failed.Load(); n != 0 {
			t.Errorf("replica %d: %d Redis calls failed as the ACL user", i, n)
		}
	}
}

// TestDeadLeaseHolderCostsOneLeaseTime: a replica takes a key's lease and
// dies without giving it up. Another replica that misses the key waits
// for the lease to lapse, then fetches on its own: one lease time late,
// never failed.
func TestDeadLeaseHolderCostsOneLeaseTime(t *testing.T) {
	srv := redistest.Start(t)
	up := newCountingUpstream(t, 0)
	const leaseTime = time.Second
	dead := startReplica(t, srv.URL, imageproxy.Config{})
	alive := startReplica(t, srv.URL, imageproxy.Config{Timeout: 3 * leaseTime})
	k := imageproxy.Key{AccountHash: "acct", ID: "orphan", Variant: "public"}
	lease, _ := dead.leases.Acquire(context.Background(), k, leaseTime)
	if lease == nil {
		t.Fatal("the first Acquire did not get the lease")
	}
	taken := time.Now()
	status, body, err := alive.serve(t, up, "orphan")
	waited := time.Since(taken)
	if err != nil || status != 200 || !bytes.Equal(body, bodyOf("/orphan")) {
		t.Fatalf("status %d, %d bytes, err %v", status, len(body), err)
	}
	if waited < leaseTime-100*time.Millisecond {
		t.Errorf("answered after %v: it did not wait for the lease (%v)", waited, leaseTime)
	}
	if waited > leaseTime+time.Second {
		t.Errorf("answered after %v: more than one lease time (%v) late", waited, leaseTime)
	}
	if n, _ := up.total(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	t.Logf("answered %v after the holder died holding a %v lease", waited.Round(time.Millisecond), leaseTime)
}

// TestLeasesWithoutRedis: with Redis gone, a miss is fetched at once, no
// lease needed.
func TestLeasesWithoutRedis(t *testing.T) {
	srv := redistest.Start(t)
	up := newCountingUpstream(t, 0)
	r := startReplica(t, srv.URL, imageproxy.Config{Timeout: 5 * time.Second})
	srv.Stop()
	start := time.Now()
	for i := range 3 {
		status, _, err := r.serve(t, up, "down-"+strconv.Itoa(i))
		if err != nil || status != 200 {
			t.Fatalf("status %d, err %v", status, err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("3 misses took %v without Redis: a lease was waited for", d)
	}
}

// TestForgedNoticeIsIgnored: a "filled" notice without the fleet's MAC
// wakes nobody and is reported.
func TestForgedNoticeIsIgnored(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	r := startReplica(t, srv.URL, imageproxy.Config{})
	rejected := make(chan string, 10)
	r.leases.OnRejected = func(reason string) { rejected <- reason }
	k := imageproxy.Key{AccountHash: "acct", ID: "i", Variant: "public"}
	other := startReplica(t, srv.URL, imageproxy.Config{})
	held, _ := other.leases.Acquire(context.Background(), k, 10*time.Second)
	if held == nil {
		t.Fatal("no lease")
	}
	_, wait := r.leases.Acquire(context.Background(), k, 10*time.Second)
	if wait == nil {
		t.Fatal("no wait for a held lease")
	}
	lk := r.leases.leaseKey(k)
	rdb.Publish(context.Background(), DefaultKeyPrefix+FilledChannelName, "00 "+lk)
	if got := receive(t, rejected, "a rejection"); got != RejectFilled {
		t.Errorf("rejected as %q", got)
	}
	select {
	case <-wait:
		t.Fatal("a forged notice woke the waiter")
	case <-time.After(100 * time.Millisecond):
	}
	held.Done(context.Background(), true)
	select {
	case <-wait:
	case <-time.After(5 * time.Second):
		t.Fatal("the holder's notice did not wake the waiter")
	}
}

// TestProxyNeverServesAForgedValue puts a value in Redis that claims
// text/html with a script, MACed with another key: the proxy fetches the
// real image instead, and the memory tier holds only that.
func TestProxyNeverServesAForgedValue(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	up := newCountingUpstream(t, 0)
	r := startReplica(t, srv.URL, imageproxy.Config{})
	c := openClient(t, srv.URL, Options{})
	k := imageproxy.Key{AccountHash: "acct", ID: "victim", Variant: "public"}
	evil := &imageproxy.Object{Body: []byte("<script>alert(document.cookie)</script>"), ContentType: "text/html", ETag: `"x"`}
	rdb.Set(context.Background(), c.imageKey(k), encodeObject([]byte("the attacker's own key, 32 bytes"), c.imageKey(k), evil), time.Hour)
	status, body, err := r.serve(t, up, "victim")
	if err != nil || status != 200 || !bytes.Equal(body, bodyOf("/victim")) {
		t.Fatalf("status %d, body %.40q, err %v", status, body, err)
	}
	if obj, ok := r.mem.Get(context.Background(), k); !ok || !bytes.Equal(obj.Body, bodyOf("/victim")) {
		t.Error("the memory tier does not hold the real image")
	}
}

// TestRedisKeepsStaleObjects: the Redis tier keeps an object for TTL +
// StaleIfError, so a replica can serve it stale.
func TestRedisKeepsStaleObjects(t *testing.T) {
	srv := redistest.Start(t)
	rdb := inspector(t, srv)
	up := newCountingUpstream(t, 0)
	r := startReplica(t, srv.URL, imageproxy.Config{TTL: time.Minute, StaleIfError: time.Hour})
	if status, _, err := r.serve(t, up, "kept"); err != nil || status != 200 {
		t.Fatalf("status %d, err %v", status, err)
	}
	c := openClient(t, srv.URL, Options{})
	key := c.imageKey(imageproxy.Key{AccountHash: "acct", ID: "kept", Variant: "public"})
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Exists(context.Background(), key).Val() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the write is in the background
	}
	if ttl := rdb.TTL(context.Background(), key).Val(); ttl <= time.Hour || ttl > time.Hour+time.Minute {
		t.Errorf("Redis TTL %v, want TTL + StaleIfError (1h1m)", ttl)
	}
}
