package idptest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long Hydra may take to answer discovery after
// it was started; it runs its SQL migrations on the in-memory database
// first, which takes a few seconds on a busy machine.
const startTimeout = 60 * time.Second

// requestTimeout bounds every HTTP request the package sends.
const requestTimeout = 15 * time.Second

// nowhere is the base of the login, consent and logout screen URLs Hydra
// redirects a browser to. Nothing listens there (port 9 is discard): the
// package never follows those redirects, it reads the challenge from them.
const nowhere = "http://127.0.0.1:9"

// Provider is a running Hydra. Its methods fail the test they are given on
// any error, so tests read as the steps they take.
type Provider struct {
	issuer   string // as discovery names it
	public   string // base URL of the public API, no trailing slash
	admin    string // base URL of the admin API, no trailing slash
	jwksURL  string
	settings settings

	http *http.Client // no cookies, no redirects followed

	mu   sync.Mutex
	cmd  *exec.Cmd
	exit chan struct{} // closed when cmd has exited
	out  *syncBuffer
}

// Start runs Hydra for t and stops it when t ends: JWT access tokens
// unless OpaqueAccessTokens is given, an in-memory database, ports on
// 127.0.0.1. It returns once discovery answers with the issuer.
func Start(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	bin, err := findBinary()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("idptest: %v (CI is set, so this fails instead of skipping); build it with %s", err, BuildCommand)
		}
		t.Skipf("idptest: %v; build it with %s", err, BuildCommand)
	}
	s := defaultSettings()
	for _, o := range opts {
		o(&s)
	}
	p := &Provider{
		settings: s,
		http: &http.Client{
			Timeout:       requestTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("idptest: hydra's output:\n%s", p.out.String())
		}
	})

	dir := t.TempDir()
	// Free ports are found by binding and releasing them, so another
	// process may take one before Hydra does; try a few times.
	for attempt := 0; ; attempt++ {
		err = p.start(bin, dir)
		if err == nil {
			return p
		}
		if attempt == 2 {
			t.Fatalf("idptest: %v", err)
		}
	}
}

// start writes the configuration for two fresh ports, runs Hydra and
// waits for discovery.
func (p *Provider) start(bin, dir string) error {
	publicPort, err := freePort()
	if err != nil {
		return err
	}
	adminPort, err := freePort()
	if err != nil {
		return err
	}
	p.public = "http://127.0.0.1:" + strconv.Itoa(publicPort)
	p.admin = "http://127.0.0.1:" + strconv.Itoa(adminPort)

	cfgPath := filepath.Join(dir, "hydra.yml")
	cfg, err := p.config(publicPort, adminPort)
	if err != nil {
		return err
	}
	// JSON is YAML, and spares a YAML dependency.
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return fmt.Errorf("write hydra config: %w", err)
	}

	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out", "-c", cfgPath)
	cmd.Dir = dir
	// A clean environment: Hydra reads every setting from environment
	// variables too (DSN, SECRETS_SYSTEM, …), and the caller's must not
	// leak into the test's provider.
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "SQA_OPT_OUT=true"}
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hydra: %w", err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exit)
	}()
	p.mu.Lock()
	p.cmd, p.exit, p.out = cmd, exit, out
	p.mu.Unlock()

	if err := p.waitReady(exit); err != nil {
		p.stop()
		return fmt.Errorf("%w; its output:\n%s", err, out.String())
	}
	return nil
}

// config returns Hydra's configuration file for the given ports.
func (p *Provider) config(publicPort, adminPort int) ([]byte, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("system secret: %w", err)
	}
	seconds := func(d time.Duration) string { return strconv.Itoa(int(d.Seconds())) + "s" }
	cfg := map[string]any{
		"dsn": "memory",
		"serve": map[string]any{
			"public": map[string]any{"host": "127.0.0.1", "port": publicPort},
			"admin":  map[string]any{"host": "127.0.0.1", "port": adminPort},
		},
		"urls": map[string]any{
			"self":                 map[string]any{"issuer": p.public, "public": p.public, "admin": p.admin},
			"login":                nowhere + "/login",
			"consent":              nowhere + "/consent",
			"logout":               nowhere + "/logout",
			"post_logout_redirect": nowhere + "/logged-out",
			"error":                nowhere + "/error",
		},
		"strategies": map[string]any{"access_token": p.settings.accessTokenStrategy},
		"secrets":    map[string]any{"system": []string{hex.EncodeToString(secret)}},
		"ttl": map[string]any{
			"access_token": seconds(p.settings.accessTokenTTL),
			"id_token":     seconds(p.settings.idTokenTTL),
		},
		"oauth2": map[string]any{
			"expose_internal_errors": true,
			// Login puts the login session's id into the access token's
			// session data as "sid"; this lifts it to a top-level claim,
			// so a JWT access token carries the sid a back-channel
			// logout token names.
			"allowed_top_level_claims": []string{"sid"},
		},
	}
	return json.Marshal(cfg)
}

// waitReady waits, at most startTimeout, until Hydra answers its health
// check, then has it make its signing keys and answer discovery.
//
// Hydra makes its RSA-4096 key pairs (one for ID and logout tokens, one
// for JWT access tokens) on the first request that needs them, which
// takes seconds on a busy machine. Polling discovery with short timeouts
// would start a new generation with each attempt, so the health check is
// polled instead, and the key set is asked for once, with all the time
// left: JWKS makes both key pairs, and later requests find them ready.
func (p *Provider) waitReady(exit <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	poll := &http.Client{Timeout: time.Second}
	for {
		resp, err := poll.Get(p.public + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
			err = fmt.Errorf("health check answered %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hydra did not become ready at %s within %v: %w", p.public, startTimeout, err)
		}
		select {
		case <-exit:
			return errors.New("hydra exited before it became ready")
		case <-time.After(50 * time.Millisecond):
		}
	}

	patient := &http.Client{Timeout: time.Until(deadline)}
	d, err := fetchDiscovery(patient, p.public)
	if err != nil {
		return fmt.Errorf("hydra's discovery at %s: %w", p.public, err)
	}
	p.issuer, p.jwksURL = d.Issuer, d.JWKSURI
	var jwks struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := getJSON(patient, p.jwksURL, &jwks); err != nil {
		return fmt.Errorf("hydra's JWKS: %w", err)
	}
	if len(jwks.Keys) < 2 {
		return fmt.Errorf("hydra's JWKS has %d keys, want one for ID tokens and one for access tokens", len(jwks.Keys))
	}
	return nil
}

// Stop kills Hydra, as a crash would, and waits for it to exit, so a test
// can see what its caller does while the provider is down. It may be
// called more than once; Start's cleanup calls it too. Hydra keeps
// everything in memory, so a stopped provider cannot be started again.
func (p *Provider) Stop() { p.stop() }

// stop kills Hydra and waits for it to exit; it may be called more than
// once.
func (p *Provider) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exit
	p.cmd = nil
}

// Output returns what Hydra has logged so far, for a test that wants to
// show why a delivery (a back-channel logout, say) did not arrive.
func (p *Provider) Output() string { return p.out.String() }

// Issuer returns the issuer exactly as the provider's discovery document
// names it; discovery is at Issuer()+"/.well-known/openid-configuration".
func (p *Provider) Issuer() string { return p.issuer }

// DiscoveryURL returns the provider's OpenID Connect discovery URL.
func (p *Provider) DiscoveryURL() string { return p.public + "/.well-known/openid-configuration" }

// JWKSURL returns the URL of the provider's public keys (its discovery
// document's jwks_uri). It holds the keys that sign ID tokens, logout
// tokens and JWT access tokens.
func (p *Provider) JWKSURL() string { return p.jwksURL }

// TokenURL returns the provider's token endpoint.
func (p *Provider) TokenURL() string { return p.public + "/oauth2/token" }

// RevocationURL returns the provider's RFC 7009 revocation endpoint.
func (p *Provider) RevocationURL() string { return p.public + "/oauth2/revoke" }

// IntrospectionURL returns the provider's RFC 7662 introspection endpoint.
// It is on Hydra's admin API, which authenticates no one: Hydra expects a
// network boundary or a proxy in front of it, so it accepts any client
// credentials, and none. GuardedIntrospection puts such a proxy in front.
func (p *Provider) IntrospectionURL() string { return p.admin + "/admin/oauth2/introspect" }

// AdminURL returns the base URL of Hydra's admin API (clients, login and
// consent challenges, sessions, introspection).
func (p *Provider) AdminURL() string { return p.admin }

// discovery is the part of an OpenID Connect discovery document the
// package reads.
type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// fetchDiscovery GETs base's discovery document.
func fetchDiscovery(client *http.Client, base string) (discovery, error) {
	var d discovery
	if err := getJSON(client, base+"/.well-known/openid-configuration", &d); err != nil {
		return d, err
	}
	if d.Issuer == "" || d.JWKSURI == "" {
		return d, errors.New("discovery names no issuer or jwks_uri")
	}
	return d, nil
}

// getJSON GETs u and decodes its 200 answer into out.
func getJSON(client *http.Client, u string, out any) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s answered %s", u, resp.Status)
	}
	return json.Unmarshal(body, out)
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

// syncBuffer collects Hydra's output for error messages.
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
	if b == nil {
		return ""
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// requestContext returns a context bounded by requestTimeout.
func requestContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), requestTimeout)
}
