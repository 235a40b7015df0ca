package e2e

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/session"
)

const e2eJWTSecret = "e2e-jwt-secret-at-least-32-bytes-long"

// mintToken runs `imagegate cf-images-token`, as the README tells developers to.
func mintToken(t *testing.T, secretFile string, args ...string) string {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"cf-images-token", "--secret-file", secretFile}, args...)...).Output()
	if err != nil {
		t.Fatalf("imagegate cf-images-token: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// TestJWTSessionThroughBinary: a valid cookie gets a 302; no, expired,
// alg:none or tampered tokens get 401 with no URL.
func TestJWTSessionThroughBinary(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "jwt.secret")
	if err := os.WriteFile(secretFile, []byte(e2eJWTSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, quietGlobal+gatewaySite(site, "", `variants public
		session jwt {
			cookie session
			secret_file `+secretFile+`
		}`), gatewayEnv, site)

	good := mintToken(t, secretFile, "--sub", "alice")
	// Expired beyond the 30s leeway: minted as if an hour ago.
	expired, err := session.MintHS256([]byte(e2eJWTSecret), "alice", time.Minute, nil, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"mallory","exp":4102444800}`)) + "." + parts[2]
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"alice","exp":4102444800}`)) + "."

	url := "http://" + site + "/img/2cdc28f0-017a-49c4-9ed7-87056c83901f/public"
	for _, tc := range []struct {
		name, cookie string
		want         int
	}{
		{"valid", good, 302},
		{"no cookie", "", 401},
		{"expired", expired, 401},
		{"alg none", none, 401},
		{"tampered", tampered, 401},
	} {
		hdr := map[string]string{}
		if tc.cookie != "" {
			hdr["Cookie"] = "session=" + tc.cookie
		}
		resp, body := get(t, "GET", url, hdr)
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == 401 && (resp.Header.Get("Location") != "" || strings.Contains(body, "sig=")) {
			t.Errorf("%s: a 401 carries a URL", tc.name)
		}
	}
}

// TestIntrospectThroughBinary: the app allows, denies, and when it is down
// the gateway answers 503.
func TestIntrospectThroughBinary(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch c, _ := r.Cookie("sessionid"); {
		case c == nil:
			w.WriteHeader(401)
		case c.Value == "alice-session":
			w.Header().Set("X-User-Id", "alice")
			w.Header().Set("Cache-Control", "no-store") // ask every time, so "down" is seen at once
		default:
			w.WriteHeader(403)
		}
	}))
	defer app.Close()
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, quietGlobal+gatewaySite(site, "", `variants public
		session introspect `+app.URL+`/session {
			cookie  sessionid
			timeout 1s
		}`), gatewayEnv, site)

	url := "http://" + site + "/img/abc/public"
	for _, tc := range []struct {
		cookie string
		want   int
	}{
		{"sessionid=alice-session", 302},
		{"sessionid=bob-session", 403},
		{"", 401},
	} {
		if resp, _ := get(t, "GET", url, map[string]string{"Cookie": tc.cookie}); resp.StatusCode != tc.want {
			t.Errorf("cookie %q: status %d, want %d", tc.cookie, resp.StatusCode, tc.want)
		}
	}
	app.Close()
	if resp, _ := get(t, "GET", url, map[string]string{"Cookie": "sessionid=alice-session"}); resp.StatusCode != 503 {
		t.Errorf("app down: status %d, want 503", resp.StatusCode)
	}
}
