// Package redistest runs real, throwaway Redis servers for tests, with
// Debian's redis-server (which has cluster, Sentinel and TLS built in): a
// single node (Start), a node over TLS with a CA the test makes
// (StartTLS), a Redis Cluster of primaries created with redis-cli
// (StartCluster), and a primary, a replica and a Sentinel (StartSentinel).
// Every server listens on a free loopback port, has a random password, a
// temporary directory and no persistence, and is killed when the test
// ends. Every wait is bounded.
package redistest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server may take to answer PING, and every
// other wait for a server's state.
const startTimeout = 10 * time.Second

// GatewayACL is the ACL rule set that limits a user to what an imagegate
// fleet with the default key prefix needs: its keys (~) and Pub/Sub
// channels (&) under "imagegate:", and no administrative or dangerous
// command.
const GatewayACL = "~imagegate:* &imagegate:* +@all -@admin -@dangerous"

// Server is a running redis-server. Its address and password stay the same
// across Restart.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string
	// Password is the server's random requirepass (the default user's).
	Password string
	// URL is redis://:Password@Addr/0, or rediss://... for StartTLS.
	URL string
	// CAFile is, for StartTLS, the PEM file of the CA that signed the
	// server's certificate; "" otherwise.
	CAFile string

	t    testing.TB
	bin  string
	dir  string
	args func(port string) []string // the command line for a port
	tls  *tls.Config                // how to reach the server; nil for plain TCP

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// Start runs a redis-server for t and stops it when t ends. Without
// redis-server it skips t, unless the environment variable CI is set, in
// which case it fails t: CI must not skip silently.
func Start(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, nil)
	s.args = func(port string) []string { return s.nodeArgs(port) }
	s.listen()
	s.URL = "redis://:" + s.Password + "@" + s.Addr + "/0"
	return s
}

// newServer prepares a Server with a password and a directory; the caller
// sets args and calls listen.
func newServer(t testing.TB, tlsConf *tls.Config) *Server {
	t.Helper()
	s := &Server{t: t, bin: Tool(t, "redis-server"), dir: t.TempDir(), Password: randomHex(t), tls: tlsConf}
	t.Cleanup(s.Stop)
	return s
}

// Tool returns the path of a Redis command (redis-server, redis-cli).
// Without it, it skips t, or fails t when the environment variable CI is
// set.
func Tool(t testing.TB, name string) string {
	t.Helper()
	bin, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redistest: %s not found on PATH (CI is set, so this fails instead of skipping): %v", name, err)
		}
		t.Skipf("redistest: %s not found on PATH: %v", name, err)
	}
	return bin
}

// nodeArgs is the command line of a data node on port: password, no
// persistence, loopback only.
func (s *Server) nodeArgs(port string) []string {
	return []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--requirepass", s.Password,
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
	}
}

// listen starts the server on a free port. The free port is found by
// binding and releasing it, so another process may take it before
// redis-server does; it tries a few.
func (s *Server) listen() {
	s.t.Helper()
	for attempt := 0; ; attempt++ {
		port, err := FreePort()
		if err != nil {
			s.t.Fatalf("redistest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.start()
		if err == nil {
			return
		}
		if attempt == 2 {
			s.t.Fatalf("redistest: %v", err)
		}
	}
}

// Stop kills the server, as a crash would, and waits for it to exit. It
// may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// Restart stops the server if it runs and starts it again on the same
// address with the same password and no data.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("redistest: restart: %v", err)
	}
}

// Client returns a go-redis client on the server as its default user, for
// setting up and inspecting; it is closed when the test ends.
func (s *Server) Client() *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr, Password: s.Password, TLSConfig: s.tls, MaxRetries: -1})
	s.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// AddACLUser creates user with password and the rules GatewayACL, exactly
// as an operator would with
//
//	ACL SETUSER <user> on ><password> ~imagegate:* &imagegate:* +@all -@admin -@dangerous
//
// and returns the URL that logs in as that user.
func (s *Server) AddACLUser(user, password string) string {
	s.t.Helper()
	addACLUser(s.t, s.Client(), user, password)
	scheme := "redis"
	if s.tls != nil {
		scheme = "rediss"
	}
	return scheme + "://" + user + ":" + password + "@" + s.Addr + "/0"
}

func addACLUser(t testing.TB, rdb *redis.Client, user, password string) {
	t.Helper()
	args := []any{"ACL", "SETUSER", user, "on", ">" + password}
	for _, r := range strings.Fields(GatewayACL) {
		args = append(args, r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := rdb.Do(ctx, args...).Err(); err != nil {
		t.Fatalf("redistest: ACL SETUSER %s: %v", user, err)
	}
}

// start runs redis-server on s.Addr and waits until it answers PING.
func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, s.args(port)...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	s.mu.Lock()
	s.cmd, s.exit = cmd, exit
	s.mu.Unlock()

	if err := s.waitReady(exit); err != nil {
		s.Stop()
		return fmt.Errorf("%w; its output:\n%s", err, out.String())
	}
	return nil
}

// waitReady pings until the server answers, exits, or startTimeout passes.
func (s *Server) waitReady(exit <-chan struct{}) error {
	rdb := redis.NewClient(&redis.Options{
		Addr: s.Addr, Password: s.Password, TLSConfig: s.tls,
		DialTimeout: 200 * time.Millisecond, MaxRetries: -1,
	})
	defer rdb.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer PING within %v: %w", s.Addr, startTimeout, err)
		}
		select {
		case <-exit:
			return errors.New("redis-server exited before answering PING")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitFor calls cond every 20ms until it returns nil, and fails t with its
// last error after startTimeout.
func waitFor(t testing.TB, what string, cond func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := cond(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redistest: %s: not within %v: %v", what, startTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// FreePort returns a loopback TCP port nothing listened on a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomHex returns 32 random hex digits, for passwords.
func randomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("redistest: random: %v", err)
	}
	return hex.EncodeToString(b)
}

// syncBuffer collects a process's output for error messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
