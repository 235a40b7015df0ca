package emulator_test

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// FuzzServeHTTP sends arbitrary requests to every host the emulator plays
// (API, upload, delivery): none may panic or answer 5xx, since nothing a
// client sends is the emulator's own failure.
func FuzzServeHTTP(f *testing.F) {
	for _, s := range []string{
		"/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v1",
		"/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v1/abc",
		"/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v2?per_page=10&continuation_token=x",
		"/client/v4/accounts/" + emulator.DefaultAccountID + "/images/v1/variants/thumbnail",
		"/" + emulator.DefaultAccountHash + "/abc/public?exp=1&sig=00",
		"/cdn-cgi/imagedelivery/" + emulator.DefaultAccountHash + "/a%2Fb/w=100",
		"/" + emulator.DefaultAccountHash + "/abc",
	} {
		f.Add("GET", s, "")
		f.Add("POST", s, "multipart/form-data; boundary=x")
	}
	emu, err := emulator.New(emulator.Config{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, target, contentType string) {
		switch method {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
		default:
			method = "GET"
		}
		u, err := url.ParseRequestURI(target)
		if err != nil || u.Host != "" {
			return
		}
		r := httptest.NewRequest(method, "http://127.0.0.1:8787/", strings.NewReader("--x\r\n\r\n--x--\r\n"))
		r.URL = u
		r.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		emu.ServeHTTP(w, r)
		if w.Code >= 500 {
			t.Fatalf("%s %s (%q): status %d %s", method, target, contentType, w.Code, w.Body.String())
		}
		if w.Code < 200 {
			t.Fatalf("%s %s: status %d", method, target, w.Code)
		}
	})
}
