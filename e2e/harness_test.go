// Package e2e runs the real imagegate binary, built once per test run, with
// Caddyfiles on loopback ports, and talks to it over HTTP as browsers, apps
// and Prometheus do. It is skipped under -short. Under -race the binary is
// built with -race too, and a data race it reports fails the test that ran
// it.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the path of the imagegate binary built by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// testing.Short needs flag.Parse, which m.Run does; look at os.Args.
	for _, a := range os.Args[1:] {
		if a == "-test.short" || a == "-test.short=true" {
			fmt.Println("e2e: skipped under -short")
			return 0
		}
	}
	dir, err := os.MkdirTemp("", "imagegate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "imagegate")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/imagegate")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	began := time.Now()
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building imagegate:", err)
		return 1
	}
	fmt.Printf("e2e: built imagegate (race %v) in %v\n", raceEnabled, time.Since(began).Round(time.Millisecond))
	return m.Run()
}

// toolPackages names the Debian package that provides each external tool
// the tests run.
var toolPackages = map[string]string{
	"chromium":     "chromium",
	"prometheus":   "prometheus",
	"promtool":     "prometheus",
	"redis-server": "redis-server",
}

// requireTool returns the path of an external tool. When it is missing the
// test is skipped on a developer's machine but fails when the CI variable
// is set, so that CI cannot pass by silently skipping what it was meant to
// run.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	pkg := toolPackages[name]
	if pkg == "" {
		pkg = name
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed and CI is set: install Debian's %s package (.ci/run does)", name, pkg)
	}
	t.Skipf("%s is not installed: install Debian's %s package (.ci/run does) to run this test", name, pkg)
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// server is a running imagegate process.
type server struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	dir  string
}

// syncBuffer collects the process's output for assertions on logs.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed by the next Write; nil until someone waits
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// snapshot returns the output so far and a channel closed by the next write.
func (s *syncBuffer) snapshot() (string, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.b.String(), s.changed
}

// waitLine waits, for at most timeout, until the process has written a
// whole line containing every one of substrs, and returns it ("" if none
// came). Caddy writes a request's log lines after answering it, so a client
// can see the answer first.
func (s *server) waitLine(timeout time.Duration, substrs ...string) string {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		out, changed := s.logs.snapshot()
		lines := strings.Split(out, "\n")
		for _, l := range lines[:len(lines)-1] { // the last one is not finished
			if containsAll(l, substrs) {
				return l
			}
		}
		select {
		case <-changed:
		case <-timer.C:
			return ""
		}
	}
}

func containsAll(s string, substrs []string) bool {
	for _, sub := range substrs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// start runs `imagegate run` with caddyfile and waits until every address
// in waitFor accepts connections. env adds variables; HOME and the XDG
// directories point into a temporary directory so the run leaves nothing
// behind.
func start(t *testing.T, caddyfile string, env []string, waitFor ...string) *server {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &server{logs: &syncBuffer{}, dir: dir}
	s.cmd = exec.Command(binary, "run", "--config", cfgPath, "--adapter", "caddyfile")
	s.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir+"/config", "XDG_DATA_HOME="+dir+"/data")
	s.cmd.Env = append(s.cmd.Env, env...)
	s.cmd.Stdout, s.cmd.Stderr = s.logs, s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the process is gone (waitErr is then set), so
	// both the wait below and the cleanup can see it.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = s.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-exited
		}
		// The race detector reports on stderr and lets the process go on.
		if strings.Contains(s.logs.String(), "WARNING: DATA RACE") {
			t.Error("the race detector reported a data race in imagegate")
		}
		if t.Failed() {
			t.Logf("imagegate output:\n%s", s.logs.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range waitFor {
		for {
			c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("imagegate exited before listening on %s: %v\n%s", addr, waitErr, s.logs.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("imagegate did not listen on %s within 20s\n%s", addr, s.logs.String())
			}
		}
	}
	return s
}

// noRedirect is a client that reports redirects instead of following them.
var noRedirect = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// get sends one request and returns the response with its body read.
func get(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// gatewayEnv holds the account hash and signing key that gatewaySite's
// placeholders read.
var gatewayEnv = []string{"CF_ACCOUNT_HASH=" + testHash, "CF_IMAGES_KEY=" + testKey}

// quietGlobal is the global block of most tests: no admin endpoint and no
// autosave.
const quietGlobal = "{\n\tadmin off\n\tpersist_config off\n}\n"

// gatewaySite renders a site at addr whose cf_images handler uses the test
// account (from gatewayEnv) and the given subdirectives. Its delivery_url
// is a closed port: the tests never follow the redirects. siteDirectives go
// in the site block before cf_images (an access log, say).
func gatewaySite(addr, siteDirectives, settings string) string {
	return fmt.Sprintf(`http://%s {
	%s
	cf_images {
		account_hash {env.CF_ACCOUNT_HASH}
		signing_key  {env.CF_IMAGES_KEY}
		delivery_url http://127.0.0.1:1
		%s
	}
}
`, addr, siteDirectives, settings)
}

// TestSourcesInvalidateCachedResults reads every directory and stats every
// file of the module. TestMain builds the gateway with `go build`, which
// `go test` cannot see, so without this a cached "ok" for this package
// would survive a change to the code it runs. The test cache records what
// a test opens and stats, so any change below the module root now counts.
func TestSourcesInvalidateCachedResults(t *testing.T) {
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && path != ".." && strings.HasPrefix(d.Name(), "."):
			return filepath.SkipDir // .git and the like: not sources
		case d.IsDir():
			f, err := os.Open(path) // the listing: a new file counts too
			if err != nil {
				return err
			}
			return f.Close()
		}
		_, err = os.Stat(path)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
