package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/seed-a64a90cf/imagegate/session"
)

// toxiNet is a set of Linux network namespaces, each a host of its own
// with one address on a shared 10.231.N.0/24 network: every member has a
// veth pair whose other end is a port of one bridge, which lives in a
// namespace of its own (the hub). The test process stays in its own
// namespace and joins the network as 10.231.N.1, so it reaches every host
// as a client on the network would, and the Toxiproxy it runs sits on the
// path between the gateways and Redis.
type toxiNet struct {
	ip     string // path of the ip command
	id     string // prefix of every namespace and interface name
	prefix string // "10.231.N."
	hub    string // the namespace holding the bridge
}

// toxiNetTimeout bounds each ip command.
const toxiNetTimeout = 10 * time.Second

// startToxiNet creates the hub and joins the test's own namespace to it.
// It skips t, even when CI is set, unless the test runs as root (creating
// network namespaces needs CAP_SYS_ADMIN and CAP_NET_ADMIN); as root, an
// ip command that is missing or fails skips t locally and fails it under
// CI. Everything it makes is removed when t ends.
func startToxiNet(t *testing.T) *toxiNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces (ip netns) needs root; CI runs this as root, TestToxiproxyRedisLink runs the same faults on loopback")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("the ip command is not installed and CI is set: install Debian's iproute2 package")
		}
		t.Skip("the ip command is not installed: install Debian's iproute2 package to run this test")
	}
	n := &toxiNet{
		ip:     ip,
		id:     fmt.Sprintf("igtx%d", os.Getpid()),
		prefix: fmt.Sprintf("10.231.%d.", 1+os.Getpid()%250),
	}
	n.hub = n.id + "-hub"
	n.removeStale()
	// Probe: some containers run as root without the capability.
	if out, err := n.run("netns", "add", n.hub); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("ip netns add failed and CI is set: %v: %s", err, out)
		}
		t.Skipf("ip netns add failed (no CAP_SYS_ADMIN here?): %v: %s", err, out)
	}
	t.Cleanup(func() { n.run("netns", "del", n.hub) })
	n.must(t, "-n", n.hub, "link", "set", "lo", "up")
	n.must(t, "-n", n.hub, "link", "add", "br0", "type", "bridge")
	n.must(t, "-n", n.hub, "link", "set", "br0", "up")

	// The test's own end: deleting it deletes its peer in the hub.
	self, port := n.id+"-s", n.id+"-sb"
	n.must(t, "link", "add", self, "type", "veth", "peer", "name", port)
	t.Cleanup(func() { n.run("link", "del", self) })
	n.must(t, "link", "set", port, "netns", n.hub)
	n.must(t, "-n", n.hub, "link", "set", port, "master", "br0", "up")
	n.must(t, "addr", "add", n.prefix+"1/24", "dev", self)
	n.must(t, "link", "set", self, "up")
	return n
}

// removeStale deletes the namespaces of earlier runs whose test process
// is gone (killed before its cleanup ran): their names carry its pid.
// Deleting a namespace deletes its ends of the veth pairs, and so the
// pairs.
func (n *toxiNet) removeStale() {
	out, err := n.run("netns", "list")
	if err != nil {
		return
	}
	for line := range strings.SplitSeq(out, "\n") {
		name, _, _ := strings.Cut(line, " ")
		pid, _, ok := strings.Cut(strings.TrimPrefix(name, "igtx"), "-")
		if !ok || !strings.HasPrefix(name, "igtx") {
			continue
		}
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			n.run("netns", "del", name)
		}
	}
}

// run runs the ip command with args and returns its output.
func (n *toxiNet) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), toxiNetTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, n.ip, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// must runs the ip command with args and fails t if it fails.
func (n *toxiNet) must(t *testing.T, args ...string) {
	t.Helper()
	if out, err := n.run(args...); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// host creates the namespace <id>-<name> on the network at 10.231.N.<octet>
// and returns the namespace and its address. It is deleted when t ends,
// after the processes started in it afterwards (cleanups run last first).
func (n *toxiNet) host(t *testing.T, name string, octet int) (ns, addr string) {
	t.Helper()
	ns, addr = n.id+"-"+name, fmt.Sprintf("%s%d", n.prefix, octet)
	n.must(t, "netns", "add", ns)
	t.Cleanup(func() { n.run("netns", "del", ns) })
	dev, port := fmt.Sprintf("%s-%d", n.id, octet), fmt.Sprintf("%s-%db", n.id, octet)
	n.must(t, "link", "add", dev, "type", "veth", "peer", "name", port)
	n.must(t, "link", "set", dev, "netns", ns)
	n.must(t, "link", "set", port, "netns", n.hub)
	n.must(t, "-n", n.hub, "link", "set", port, "master", "br0", "up")
	n.must(t, "-n", ns, "link", "set", "lo", "up")
	n.must(t, "-n", ns, "addr", "add", addr+"/24", "dev", dev)
	n.must(t, "-n", ns, "link", "set", dev, "up")
	return ns, addr
}

// command is bin with args run inside ns. `ip netns exec` enters the
// namespace and execs bin, so the process is bin itself, and a signal to
// it reaches bin.
func (n *toxiNet) command(ns, bin string, args ...string) *exec.Cmd {
	return exec.Command(n.ip, append([]string{"netns", "exec", ns, bin}, args...)...)
}

// startRedis runs a redis-server inside ns on addr:6379 with a random
// password and no persistence, waits (bounded) until it answers PING from
// the test's namespace, and returns a client to it and the password.
func (n *toxiNet) startRedis(t *testing.T, ns, addr string) (*redis.Client, string) {
	t.Helper()
	bin := requireTool(t, "redis-server")
	password := fleetHex(t, 16)
	cmd := n.command(ns, bin, "--port", "6379", "--bind", addr, "--requirepass", password,
		"--dir", t.TempDir(), "--save", "", "--appendonly", "no")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	rdb := redis.NewClient(&redis.Options{Addr: addr + ":6379", Password: password, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return rdb, password
		}
		select {
		case <-exited:
			t.Fatalf("redis-server in %s exited: %s", ns, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server in %s did not answer PING on %s:6379 within 10s: %v\n%s", ns, addr, err, out.String())
		}
	}
}

// startGateway runs the imagegate binary inside ns with caddyfile, as the
// harness's start does on loopback, and waits (bounded) until every
// address in waitFor accepts connections from the test's namespace.
func (n *toxiNet) startGateway(t *testing.T, ns, caddyfile string, env []string, waitFor ...string) *server {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{logs: &syncBuffer{}, dir: dir}
	s.cmd = n.command(ns, binary, "run", "--config", cfg, "--adapter", "caddyfile")
	s.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir+"/config", "XDG_DATA_HOME="+dir+"/data")
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		if strings.Contains(s.logs.String(), "WARNING: DATA RACE") {
			t.Error("the race detector reported a data race in imagegate")
		}
		if t.Failed() {
			t.Logf("imagegate in %s:\n%s", ns, s.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range waitFor {
		for {
			if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("imagegate in %s exited before listening on %s:\n%s", ns, addr, s.logs.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("imagegate in %s did not listen on %s within 20s:\n%s", ns, addr, s.logs.String())
			}
		}
	}
	return s
}

// TestToxiproxyNetns runs TestToxiproxyRedisLink's measurements and faults
// across hosts: Redis, the emulator and each of the two gateways in a
// network namespace of its own, each with its own address, joined by a
// bridge; the gateways reach Redis only through the Toxiproxy the test
// runs in its own namespace. It needs root (as CI runs it).
func TestToxiproxyNetns(t *testing.T) {
	began := time.Now()
	n := startToxiNet(t)
	redisNS, redisAddr := n.host(t, "redis", 2)
	emuNS, emuAddr := n.host(t, "emu", 3)
	rdb, password := n.startRedis(t, redisNS, redisAddr)
	link := startToxiLink(t, redisAddr+":6379", n.prefix+"1:0")

	// The emulator, as startIssEmulator starts it but on its own host.
	e := &issEmulator{
		rig: &fleetRig{
			emu:      emuAddr + ":8080",
			emuAdmin: emuAddr + ":2019",
			apiToken: "tox-api-token-" + fleetHex(t, 8),
			owner:    "tox-owner-" + fleetHex(t, 4),
		},
		jwtSecret: "tox-jwt-secret-" + fleetHex(t, 16),
	}
	e.secretFile = filepath.Join(t.TempDir(), "jwt.secret")
	if err := os.WriteFile(e.secretFile, []byte(e.jwtSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := session.MintHS256([]byte(e.jwtSecret), e.rig.owner, time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.rig.ownerToken = tok
	e.env = []string{"ISS_API_TOKEN=" + e.rig.apiToken, "ISS_SIGNING_KEY=tox-signing-key-" + fleetHex(t, 8)}
	e.srv = n.startGateway(t, emuNS, fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://%s {
	bind %s
	cf_images_emulator {
		api_token   {env.ISS_API_TOKEN}
		signing_key {env.ISS_SIGNING_KEY}
		storage     memory
		# It answers only on loopback unless told: here the gateways
		# and the test reach it over the network.
		listen_public
	}
}
`, e.rig.emuAdmin, e.rig.emu, emuAddr), e.env, e.rig.emu, e.rig.emuAdmin)

	// The gateways, as startIssReplica starts them but each on its own
	// host, with Redis at the Toxiproxy's address.
	var r [2]*issReplica
	for i := range r {
		ns, addr := n.host(t, fmt.Sprintf("gw%d", i+1), 4+i)
		r[i] = &issReplica{name: fmt.Sprintf("replica %d", i+1), site: addr + ":8080", admin: addr + ":2019"}
		r[i].srv = n.startGateway(t, ns, fmt.Sprintf(`{
	admin %[1]s
	persist_config off
	cf_images {
		account_hash emu-account-hash
		signing_key  {env.ISS_SIGNING_KEY}
		delivery_url http://%[3]s
		redis {
			url     redis://:{env.TOX_REDIS_PASSWORD}@%[5]s/0
			timeout 100ms
		}
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
		mode proxy {
			cache_size  64MiB
			cache_ttl   1h
			fetch_limit off # one caller makes every request here
			timeout     5s
		}
	}
}
`, r[i].admin, r[i].site, e.rig.emu, e.secretFile, link.Addr()), append([]string{"TOX_REDIS_PASSWORD=" + password}, e.env...), r[i].site, r[i].admin)
	}
	t.Logf("network %s0/24: test and Toxiproxy .1, Redis .2, emulator .3, gateways .4 and .5; started in %v",
		n.prefix, time.Since(began).Round(time.Millisecond))
	toxiPhases(t, link, e, r, rdb)
	t.Logf("TestToxiproxyNetns took %v", time.Since(began).Round(time.Millisecond))
}
