package cfemulator

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// api_rate_limit reaches the emulator, and refused calls are counted.
func TestAPIRateLimitConfigured(t *testing.T) {
	h := &Handler{
		Storage:      "memory",
		AccountID:    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02",
		APIRateLimit: &APIRateLimit{Requests: 2, Window: caddy.Duration(time.Minute)},
		APIRateBlock: caddy.Duration(time.Hour),
	}
	provisioned(t, h)
	refused := apiRateLimitedTotal.WithLabelValues("api")
	ok := apiCallsTotal.WithLabelValues("api", "200")
	refused0, ok0 := testutil.ToFloat64(refused), testutil.ToFloat64(ok)
	auth := http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}}
	stats := "/client/v4/accounts/" + h.AccountID + "/images/v1/stats"
	for i, want := range []int{200, 200, 429, 429} {
		w := serve(t, h, loopback, "GET", stats, nil, auth)
		if w.Code != want {
			t.Fatalf("call %d: %d, want %d", i, w.Code, want)
		}
		if want == 429 && w.Header().Get("Retry-After") != "3600" {
			t.Errorf("call %d: Retry-After %q, want api_rate_block's 3600", i, w.Header().Get("Retry-After"))
		}
	}
	if d := testutil.ToFloat64(refused) - refused0; d != 2 {
		t.Errorf("api_rate_limited_total{api} grew by %v, want 2", d)
	}
	if d := testutil.ToFloat64(ok) - ok0; d != 2 {
		t.Errorf("api_calls_total{api,200} grew by %v, want 2", d)
	}

	off := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa03", APIRateLimit: &APIRateLimit{Off: true}}
	provisioned(t, off)
	for i := range 3 {
		if w := serve(t, off, loopback, "GET", "/client/v4/accounts/"+off.AccountID+"/images/v1/stats", nil, auth); w.Code != 200 {
			t.Fatalf("limit off, call %d: %d", i, w.Code)
		}
	}
}
