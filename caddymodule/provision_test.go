package caddymodule

import (
	"strings"
	"testing"
)

// TestConfigErrors: mistakes a start refuses, each named by its setting,
// all of them reported by one start, and none quoting a secret.
func TestConfigErrors(t *testing.T) {
	const (
		jwtLines = "session jwt {\n secret " + jwtSecret + "\n}\n"
		apiLines = "account_id " + testAccountID + "\napi_token tok-secret-value\n"
	)
	for _, tc := range []struct {
		name  string
		lines string
		want  []string
	}{
		{"a literal key that looks like a placeholder", "signing_key k{abc}x\nsession none",
			[]string{"signing_key: a placeholder in it is unknown or empty (the value is not shown)"}},
		{"api_url without a scheme", jwtLines + apiLines + "authorize owner\napi_url 127.0.0.1:8787",
			[]string{"api_url:"}},
		{"api_url without a scheme, for uploads", jwtLines + apiLines + "upload_path /up\napi_url 127.0.0.1:8787",
			[]string{"upload_path: api_url:"}},
		{"owner reads another field than uploads stamp", jwtLines + apiLines + "authorize owner other_field\nupload_path /up",
			[]string{"authorize owner other_field", "upload_owner_field"}},
		{"owner and uploads with different fields", jwtLines + apiLines + "authorize owner\nupload_path /up\nupload_owner_field uploader",
			[]string{"authorize owner owner", "uploader"}},
		{"metadata_ttl without owner", jwtLines + "metadata_ttl 1m", []string{"metadata_ttl: has no effect without authorize owner"}},
		{"metadata_stale without owner", jwtLines + "metadata_stale 1m", []string{"metadata_stale: has no effect without authorize owner"}},
		{"lookup_limit without owner", jwtLines + "lookup_limit 10 1m", []string{"lookup_limit: has no effect without authorize owner"}},
		{"lookup_limit 0 without owner", jwtLines + "lookup_limit 0", []string{"lookup_limit: has no effect without authorize owner"}},
		{"upload_limit without uploads", jwtLines + "upload_limit 1 1h", []string{"upload_limit: has no effect without upload_path"}},
		{"API settings with nothing calling the API", jwtLines + apiLines + "api_url http://127.0.0.1:8787/client/v4",
			[]string{"account_id: has no effect", "api_token: has no effect", "api_url: has no effect"}},
		{"everything at once", "signing_key k{abc}x\nwindow 1s\n" + jwtLines + "metadata_ttl 1m\napi_token tok-secret-value\nupload_limit 0",
			[]string{"signing_key:", "window:", "metadata_ttl:", "api_token:", "upload_limit:"}},
	} {
		lines := "account_hash AccHash_x1\nvariants public\n" + tc.lines
		if !strings.Contains(lines, "signing_key") {
			lines = "signing_key " + testKey + "\n" + lines
		}
		_, err := caddyfileHandler(t, lines)
		if err == nil {
			t.Errorf("%s: provisioned without error", tc.name)
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", tc.name, err, want)
			}
		}
		for _, secret := range []string{"abc", "tok-secret-value", jwtSecret, testKey} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q quotes the secret %q", tc.name, err, secret)
			}
		}
	}
}

// TestPrefixRoot: `prefix /` serves images at /<id>/<variant>.
func TestPrefixRoot(t *testing.T) {
	h, err := caddyfileHandler(t, "prefix /\naccount_hash AccHash_x1\nsigning_key "+testKey+"\nvariants public\nsession none")
	if err != nil {
		t.Fatal(err)
	}
	w, next := serve(t, h, "GET", "/abc/public", nil)
	if w.Code != 302 || next || !strings.HasPrefix(w.Header().Get("Location"), "https://imagedelivery.net/AccHash_x1/abc/public?exp=") {
		t.Fatalf("status %d, next %v, Location %q", w.Code, next, w.Header().Get("Location"))
	}
	if w, _ := serve(t, h, "GET", "/a/b/public", nil); w.Code != 302 {
		t.Fatalf("a custom id with a slash: status %d", w.Code)
	}
	if w, _ := serve(t, h, "GET", "/", nil); w.Code != 400 {
		t.Fatalf("GET /: status %d, want 400", w.Code)
	}
}

// TestSecretErrorSaysWhatIsWrong: a signing key given with an unresolvable
// placeholder is reported as that, not also as missing.
func TestSecretErrorSaysWhatIsWrong(t *testing.T) {
	_, err := caddyfileHandler(t, "account_hash AccHash_x1\nvariants public\nsession none\nsigning_key {env.TEST_UNSET_VAR}")
	if err == nil || strings.Contains(err.Error(), "signing_key: missing") {
		t.Fatalf("error %q: the key was given, not missing", err)
	}
}
