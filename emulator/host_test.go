package emulator_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// serveHost sends one request with the given Host straight to the handler.
func serveHost(emu http.Handler, method, host, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, "http://127.0.0.1"+path, nil)
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
	rec := httptest.NewRecorder()
	emu.ServeHTTP(rec, req)
	return rec
}

// A page whose DNS name is rebound to 127.0.0.1 reaches the emulator with
// its own Host: it must get 421, never the signing keys.
func TestHostCheck(t *testing.T) {
	emu, err := emulator.New(emulator.Config{BaseURL: "http://emu.test:8787"})
	if err != nil {
		t.Fatal(err)
	}
	keys := "/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v1/keys"
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:8787", 200},
		{"127.0.0.1", 200},
		{"127.9.9.9:1", 200},
		{"[::1]:8787", 200},
		{"[::1]", 200},
		{"localhost:8787", 200},
		{"LOCALHOST", 200},
		{"emu.test:9999", 200}, // the base URL's host, any port
		{"evil.example", 421},
		{"evil.example:8787", 421},
		{"localhost.evil.example", 421},
		{"localhost.", 421},
		{"127.0.0.1.nip.io", 421},
		{"10.0.0.1:8787", 421},
		{"0.0.0.0:8787", 421},
		{"::1", 421}, // unbracketed
		{"[fe80::1%25lo]:80", 421},
		{"localhost:http", 421},
		{"", 421},
	} {
		t.Run(tc.host, func(t *testing.T) {
			rec := serveHost(emu, "GET", tc.host, keys)
			if rec.Code != tc.want {
				t.Fatalf("Host %q: %d, want %d", tc.host, rec.Code, tc.want)
			}
			if tc.want == 421 && (strings.Contains(rec.Body.String(), emulator.DefaultSigningKey) ||
				tc.host != "" && strings.Contains(rec.Body.String(), tc.host)) {
				t.Errorf("421 body leaks the key or echoes the Host: %s", rec.Body)
			}
		})
	}
}

// Every host the emulator plays checks Host, and no URL is built from a
// refused one.
func TestHostCheckEveryRouteAndURLs(t *testing.T) {
	env := newEnv(t, nil)
	id := env.upload(t, false, pngBytes(t, 4, 4))
	for _, p := range []struct{ method, path string }{
		{"POST", "/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v2/direct_upload"},
		{"GET", "/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v1/" + id},
		{"GET", "/" + emulator.DefaultAccountHash + "/" + id + "/public"},
		{"GET", "/cdn-cgi/imagedelivery/" + emulator.DefaultAccountHash + "/" + id + "/public"},
		{"POST", "/" + emulator.DefaultAccountHash + "/" + id},
		{"OPTIONS", "/" + emulator.DefaultAccountHash + "/" + id},
	} {
		rec := serveHost(env.emu, p.method, "evil.example", p.path)
		if rec.Code != http.StatusMisdirectedRequest || strings.Contains(rec.Body.String(), "evil") {
			t.Errorf("%s %s with Host evil.example: %d %s", p.method, p.path, rec.Code, rec.Body)
		}
	}

	// A loopback Host is reflected as sent.
	body, ct := form(t, nil, nil)
	req := httptest.NewRequest("POST", "http://localhost:4242/client/v4/accounts/"+emulator.DefaultAccountID+"/images/v2/direct_upload", body)
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
	rec := httptest.NewRecorder()
	env.emu.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"uploadURL":"http://localhost:4242/`+emulator.DefaultAccountHash+`/`) {
		t.Fatalf("direct upload from localhost: %d %s", rec.Code, rec.Body)
	}
}

// AnyHost (listen_public in Caddy) answers any well-formed Host.
func TestAnyHost(t *testing.T) {
	emu, err := emulator.New(emulator.Config{AnyHost: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := serveHost(emu, "GET", "emulator.internal:8787", "/client/v4/accounts/"+emulator.DefaultAccountID+"/images/v1/stats")
	if rec.Code != 200 {
		t.Fatalf("AnyHost: %d %s", rec.Code, rec.Body)
	}
}
