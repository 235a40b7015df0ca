// Package redistest runs a real, throwaway redis-server for tests: on a
// free loopback port, with a random password, no persistence, and killed
// when the test ends.
package redistest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is a running redis-server. Its address and password stay the same
// across Restart.
type Server struct {
	// Addr is the server's host:port on 127.0.0.1.
	Addr string
	// Password is the server's random requirepass.
	Password string
	// URL is redis://:Password@Addr/0.
	URL string

	t   testing.TB
	bin string
	dir string

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
}

// Start runs a redis-server for t and stops it when t ends. Without
// redis-server on PATH it skips t, unless the environment variable CI is
// set, in which case it fails t: CI must not skip silently.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redistest: redis-server not found on PATH (CI is set, so this fails instead of skipping): %v", err)
		}
		t.Skipf("redistest: redis-server not found on PATH: %v", err)
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		t.Fatalf("redistest: password: %v", err)
	}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), Password: hex.EncodeToString(pw)}
	t.Cleanup(s.Stop)

	// The free port is found by binding and releasing it, so another
	// process may take it before redis-server does; try a few.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		err = s.start()
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("redistest: %v", err)
		}
	}
	s.URL = "redis://:" + s.Password + "@" + s.Addr + "/0"
	return s
}

// Stop kills the server, as a crash would, and waits for it to exit. It
// may be called more than once.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopLocked()
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

func (s *Server) stopLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exit
	s.cmd = nil
}

// start runs redis-server on s.Addr and waits until it answers PING.
func (s *Server) start() error {
	host, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin,
		"--port", port,
		"--bind", host,
		"--requirepass", s.Password,
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
	)
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
		Addr: s.Addr, Password: s.Password,
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

// freePort returns a loopback TCP port nothing listened on a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer collects the server's output for error messages.
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
