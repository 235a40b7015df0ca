package caddymodule

import (
	"net/http/httptest"
	"testing"
)

// TestHeaderEditsStayInTheirResponse: Caddy's header directive, deferred
// (`header >Field search replace`), rewrites header values in place. The
// handler's answers share their strings with its caches but not their
// slices, so an edit changes that one response only: the second answer is
// edited once, like the first, and the cached URL is untouched.
func TestHeaderEditsStayInTheirResponse(t *testing.T) {
	t.Setenv("TEST_CF_KEY", testKey)
	srv := caddyServer(t, `{
	auto_https off
}
http://:8080 {
	header >Location "imagedelivery.net" "imagedelivery.net/edge"
	header >Cache-Control "private" "private, edited"
	header >Vary "Accept" "Accept, Edited"
	cf_images {
		account_hash AccHash_x1
		signing_key  {env.TEST_CF_KEY}
		variants     public
		session none
	}
}`)
	want := map[string]string{}
	for i := range 3 {
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("GET", "http://localhost:8080/img/mine/public", nil))
		if w.Code != 302 {
			t.Fatalf("answer %d: status %d", i, w.Code)
		}
		for _, f := range []string{"Location", "Cache-Control", "Vary"} {
			got := w.Header()[f]
			if i == 0 {
				want[f] = got[0]
				continue
			}
			if len(got) != 1 || got[0] != want[f] {
				t.Errorf("answer %d: %s %q, want %q as in the first answer (an edit leaked into the handler's shared values)", i, f, got, want[f])
			}
		}
	}
	for f, v := range want {
		t.Logf("%s: %s", f, v)
	}
}
