package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// placeholderSVG is the start of the body Caddyfile.example's handle_errors
// block answers for refused images.
const placeholderSVG = `<svg xmlns="http://www.w3.org/2000/svg"`

// TestErrorsPlaceholderFromExample: with Caddyfile.example's handle_errors
// block, a refused <img> gets the grey placeholder with the refusal's
// status and headers kept.
func TestErrorsPlaceholderFromExample(t *testing.T) {
	gateway, _, _ := startExample(t)
	secret := repoPath(t, "dev/jwt-secret")
	alice := mintToken(t, secret, "--sub", "alice")
	bob := mintToken(t, secret, "--sub", "bob")
	up := upload(t, gateway, alice)
	thumb := "http://" + gateway + "/img/" + up.ID + "/thumbnail"

	for _, tc := range []struct {
		name      string
		hdr       map[string]string
		want      int
		challenge string
	}{
		{"no session", nil, 401, "Bearer"},
		{"bob, on alice's image", hdrs("Cookie", "session="+bob), 403, ""},
	} {
		resp, body := get(t, "GET", thumb, tc.hdr)
		if resp.StatusCode != tc.want || !strings.HasPrefix(body, placeholderSVG) || resp.Header.Get("Content-Type") != "image/svg+xml" {
			t.Errorf("%s: status %d Content-Type %q body %q; want %d with the SVG placeholder", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.want)
		}
		if resp.Header.Get("Www-Authenticate") != tc.challenge || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Location") != "" {
			t.Errorf("%s: WWW-Authenticate %q Cache-Control %q Location %q; want %q, no-store, none", tc.name,
				resp.Header.Get("Www-Authenticate"), resp.Header.Get("Cache-Control"), resp.Header.Get("Location"), tc.challenge)
		}
	}
	// The placeholder is for refusals only: alice still gets her image.
	if resp, _ := get(t, "GET", thumb, hdrs("Cookie", "session="+alice)); resp.StatusCode != 302 {
		t.Errorf("alice: status %d, want 302", resp.StatusCode)
	}
}

// errorsSite is a gateway site with JWT sessions and `authorize claim
// role viewer`, and handleErrors (may be empty) after it.
func errorsSite(t *testing.T, handleErrors string) (site, secret string) {
	t.Helper()
	secret = filepath.Join(t.TempDir(), "jwt-secret")
	if err := os.WriteFile(secret, []byte(e2eJWTSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	site = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, quietGlobal+fmt.Sprintf(`http://%s {
	cf_images {
		account_hash {env.CF_ACCOUNT_HASH}
		signing_key  {env.CF_IMAGES_KEY}
		delivery_url http://127.0.0.1:1
		variants     public
		session jwt {
			cookie session
			header Authorization
			secret_file %s
		}
		authorize claim role viewer
	}
	%s
}
`, site, secret, handleErrors), gatewayEnv, site)
	return site, secret
}

// refusalCase is one refused request and the outcome it must name.
type refusalCase struct {
	name, method, path string
	hdr                map[string]string
	status             int
	outcome            string
}

// refusals returns one request for each refusal the gateway makes, each
// with marker in its path or headers.
func refusals(t *testing.T, secret, marker string) []refusalCase {
	carol := mintToken(t, secret, "--sub", "carol-"+marker, "--claim", "role=guest")
	return []refusalCase{
		{"no session", "GET", "/img/" + marker + "/public?q=" + marker, hdrs("Accept", "text/"+marker), 401, "unauthenticated"},
		{"a bad token", "GET", "/img/" + marker + "/public", hdrs("Cookie", "session="+marker), 401, "unauthenticated"},
		{"not allowed", "GET", "/img/" + marker + "/public", hdrs("Cookie", "session="+carol), 403, "forbidden"},
		{"unknown variant", "GET", "/img/id/" + marker, nil, 404, "not_found"},
		{"bad id", "GET", "/img/" + marker + "%00/public", nil, 400, "bad_request"},
		{"another method", "DELETE", "/img/" + marker + "/public", nil, 405, "method_not_allowed"},
	}
}

// TestErrorsBareWithoutHandleErrors: without handle_errors a refusal is
// the bare status, with an empty body, and nothing of the request (path,
// query, headers, the caller's subject) comes back.
func TestErrorsBareWithoutHandleErrors(t *testing.T) {
	site, secret := errorsSite(t, "")
	const marker = "echo-marker-6f1d"
	for _, tc := range refusals(t, secret, marker) {
		resp, body := get(t, tc.method, "http://"+site+tc.path, tc.hdr)
		var hdr strings.Builder
		_ = resp.Header.Write(&hdr)
		if resp.StatusCode != tc.status || body != "" {
			t.Errorf("%s: status %d body %q, want %d with no body", tc.name, resp.StatusCode, body, tc.status)
		}
		if strings.Contains(hdr.String(), marker) {
			t.Errorf("%s: the request is echoed in the headers:\n%s", tc.name, hdr.String())
		}
		if resp.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", tc.name, resp.Header.Get("Cache-Control"))
		}
	}
}

// TestErrorsOutcomePlaceholder: {http.cf_images.outcome} names the refusal
// inside handle_errors, in a header and in a respond body.
func TestErrorsOutcomePlaceholder(t *testing.T) {
	site, secret := errorsSite(t, `handle_errors {
		header X-Outcome {http.cf_images.outcome}
		respond "{http.cf_images.outcome}" {err.status_code}
	}`)
	for _, tc := range refusals(t, secret, "m") {
		resp, body := get(t, tc.method, "http://"+site+tc.path, tc.hdr)
		if resp.StatusCode != tc.status || body != tc.outcome || resp.Header.Get("X-Outcome") != tc.outcome {
			t.Errorf("%s: status %d body %q X-Outcome %q, want %d %q", tc.name, resp.StatusCode, body, resp.Header.Get("X-Outcome"), tc.status, tc.outcome)
		}
		if tc.status == http.StatusUnauthorized && resp.Header.Get("Www-Authenticate") != "Bearer" {
			t.Errorf("%s: WWW-Authenticate %q, want Bearer kept through handle_errors", tc.name, resp.Header.Get("Www-Authenticate"))
		}
	}
}
