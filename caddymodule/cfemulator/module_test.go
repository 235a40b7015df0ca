package cfemulator

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// provision provisions h in a fresh Caddy context and cleans it up with t.
func provisioned(t *testing.T, h *Handler) *prometheus.Registry {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(func() {
		h.Cleanup()
		cancel()
	})
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("Provision: %v", err)
	}
	return ctx.GetMetricsRegistry()
}

var loopback = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8787}

// serve runs one request through h as Caddy would, arriving on local,
// with Host 127.0.0.1:8787 unless header sets another.
func serve(t *testing.T, h *Handler, local net.Addr, method, target string, body []byte, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "http://127.0.0.1:8787"+target, bytes.NewReader(body))
	for k, v := range header {
		r.Header[k] = v
	}
	if host := header.Get("Host"); host != "" {
		r.Host = host
	}
	if local != nil {
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
	}
	caddyhttp.NewTestReplacer(r)
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		t.Error("the emulator called the next handler")
		return nil
	})
	if err := h.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("ServeHTTP: %v", err)
	}
	return w
}

// upload stores a PNG through the API with token and returns its id.
func upload(t *testing.T, h *Handler, account, token string, private bool) string {
	t.Helper()
	var img bytes.Buffer
	png.Encode(&img, image.NewGray(image.Rect(0, 0, 300, 200)))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "a.png")
	fw.Write(img.Bytes())
	if private {
		mw.WriteField("requireSignedURLs", "true")
	}
	mw.Close()
	w := serve(t, h, loopback, "POST", "/client/v4/accounts/"+account+"/images/v1", body.Bytes(), http.Header{
		"Content-Type":  {mw.FormDataContentType()},
		"Authorization": {"Bearer " + token},
	})
	var env struct {
		Success bool
		Result  struct{ ID string }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &env); err != nil || !env.Success {
		t.Fatalf("upload: %d %s", w.Code, w.Body)
	}
	return env.Result.ID
}

func TestServeAndCount(t *testing.T) {
	h := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa01"}
	reg := provisioned(t, h)
	id := upload(t, h, h.AccountID, emulator.DefaultAPIToken, false)
	url := "/" + emulator.DefaultAccountHash + "/" + id + "/thumbnail"

	ok := deliveriesTotal.WithLabelValues("thumbnail", "200")
	nm := notModifiedTotal.WithLabelValues("thumbnail")
	other := deliveriesTotal.WithLabelValues("other", "404")
	ok0, nm0, other0 := testutil.ToFloat64(ok), testutil.ToFloat64(nm), testutil.ToFloat64(other)

	w := serve(t, h, loopback, "GET", url, nil, nil)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "image/png" {
		t.Fatalf("delivery: %d %s", w.Code, w.Body)
	}
	w = serve(t, h, loopback, "GET", url, nil, http.Header{"If-None-Match": {w.Header().Get("ETag")}})
	if w.Code != http.StatusNotModified {
		t.Fatalf("revalidation: %d", w.Code)
	}
	// An id or variant name from the request never becomes a label.
	serve(t, h, loopback, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/made-up-variant", nil, nil)

	if d := testutil.ToFloat64(ok) - ok0; d != 1 {
		t.Errorf("deliveries_total{thumbnail,200} grew by %v, want 1", d)
	}
	if d := testutil.ToFloat64(nm) - nm0; d != 1 {
		t.Errorf("not_modified_total{thumbnail} grew by %v, want 1", d)
	}
	if d := testutil.ToFloat64(other) - other0; d != 1 {
		t.Errorf("deliveries_total{other,404} grew by %v, want 1", d)
	}

	// The counters are on the config's registry, which Caddy serves.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		found[mf.GetName()] = true
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), id) || l.GetValue() == "made-up-variant" {
					t.Errorf("label %s=%q comes from the request", l.GetName(), l.GetValue())
				}
			}
		}
	}
	for _, name := range []string{"imagegate_emulator_deliveries_total", "imagegate_emulator_not_modified_total"} {
		if !found[name] {
			t.Errorf("%s is not on the registry", name)
		}
	}
}

// Provisioning twice against one registry (the handler twice in a config)
// and again against a new one (a reload) must not fail.
func TestMetricsRegisterEveryProvision(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for i := range 2 {
		h := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02"}
		if err := h.Provision(ctx); err != nil {
			t.Fatalf("Provision %d: %v", i, err)
		}
		defer h.Cleanup()
	}
	provisioned(t, &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa02"})
}

func TestSecretsFromPlaceholders(t *testing.T) {
	t.Setenv("CFEMU_TEST_TOKEN", "s3cret-token-value")
	t.Setenv("CFEMU_TEST_KEY", "s3cret-key-value")
	h := &Handler{
		Storage:     "memory",
		AccountID:   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa03",
		APIToken:    "{env.CFEMU_TEST_TOKEN}",
		SigningKey:  "{env.CFEMU_TEST_KEY}",
		AccountHash: "hash-{env.CFEMU_TEST_HASH_SUFFIX_UNSET}",
	}
	// An unset placeholder is an error at provision time.
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "account_hash") {
		t.Fatalf("unset placeholder: %v", err)
	}
	h.Cleanup()
	bad := &Handler{Storage: "memory", APIToken: "s3cret-{env.CFEMU_TEST_UNSET}"}
	if err := bad.Provision(ctx); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("unset placeholder in a secret: %v", err)
	}
	bad.Cleanup()

	h.AccountHash = ""
	provisioned(t, h)
	// The config keeps the placeholders, never the values.
	b, _ := json.Marshal(h)
	if strings.Contains(string(b), "s3cret") || !strings.Contains(string(b), "{env.CFEMU_TEST_TOKEN}") {
		t.Errorf("config JSON = %s", b)
	}
	id := upload(t, h, h.AccountID, "s3cret-token-value", true)
	w := serve(t, h, loopback, "GET", "/client/v4/accounts/"+h.AccountID+"/images/v1/"+id, nil,
		http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}})
	if w.Code != http.StatusForbidden {
		t.Errorf("the default token still works: %d", w.Code)
	}
	// The resolved signing key verifies.
	w = serve(t, h, loopback, "GET", "/client/v4/accounts/"+h.AccountID+"/images/v1/keys", nil,
		http.Header{"Authorization": {"Bearer s3cret-token-value"}})
	if !strings.Contains(w.Body.String(), `"value":"s3cret-key-value"`) {
		t.Errorf("keys = %s", w.Body)
	}
}

func TestLoopbackRule(t *testing.T) {
	h := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa04"}
	provisioned(t, h)
	stats := "/client/v4/accounts/" + h.AccountID + "/images/v1/stats"
	auth := http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}}
	for _, tc := range []struct {
		name  string
		local net.Addr
		want  int
	}{
		{"ipv4 loopback", loopback, 200},
		{"other loopback", &net.TCPAddr{IP: net.IPv4(127, 8, 8, 8), Port: 1}, 200},
		{"ipv6 loopback", &net.TCPAddr{IP: net.IPv6loopback, Port: 1}, 200},
		{"documentation address", &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 8787}, 403},
		{"unspecified", &net.TCPAddr{IP: net.IPv4zero, Port: 8787}, 403},
		{"no local address", nil, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, h, tc.local, "GET", stats, nil, auth)
			if w.Code != tc.want {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tc.want)
			}
			if tc.want == 403 && !strings.Contains(w.Body.String(), "listen_public") {
				t.Errorf("refusal does not say how to allow it: %s", w.Body)
			}
		})
	}

	pub := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa04", ListenPublic: true}
	provisioned(t, pub)
	if w := serve(t, pub, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10), Port: 8787}, "GET", stats, nil, auth); w.Code != 200 {
		t.Errorf("listen_public: %d %s", w.Code, w.Body)
	}
}

// A loopback connection is not enough: a page whose DNS name is rebound to
// 127.0.0.1 arrives on loopback with its own Host, and gets 421.
func TestHostRule(t *testing.T) {
	h := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa07"}
	provisioned(t, h)
	keys := "/client/v4/accounts/" + h.AccountID + "/images/v1/keys"
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:8787", 200},
		{"localhost:2015", 200},
		{"[::1]:8787", 200},
		{"evil.example", 421},
		{"evil.example:8787", 421},
	} {
		w := serve(t, h, loopback, "GET", keys, nil, http.Header{
			"Authorization": {"Bearer " + emulator.DefaultAPIToken}, "Host": {tc.host}})
		if w.Code != tc.want {
			t.Errorf("Host %s: %d, want %d", tc.host, w.Code, tc.want)
		}
		if tc.want == 421 && strings.Contains(w.Body.String(), emulator.DefaultSigningKey) {
			t.Errorf("Host %s: the signing key was served", tc.host)
		}
	}

	pub := &Handler{Storage: "memory", AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa07", ListenPublic: true}
	provisioned(t, pub)
	if w := serve(t, pub, loopback, "GET", keys, nil, http.Header{
		"Authorization": {"Bearer " + emulator.DefaultAPIToken}, "Host": {"emulator.internal:8787"}}); w.Code != 200 {
		t.Errorf("listen_public with another Host: %d %s", w.Code, w.Body)
	}
}

// The storage is shared by the old and new handler during a reload, and a
// directory keeps everything once both are gone.
func TestStorageAcrossReloadAndRestart(t *testing.T) {
	dir := t.TempDir()
	account := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa05"
	old := &Handler{Storage: dir, AccountID: account}
	provisioned(t, old)
	id := upload(t, old, account, emulator.DefaultAPIToken, false)

	reloaded := &Handler{Storage: dir, AccountID: account}
	provisioned(t, reloaded)
	old.Cleanup()
	path := "/" + emulator.DefaultAccountHash + "/" + id + "/public"
	if w := serve(t, reloaded, loopback, "GET", path, nil, nil); w.Code != http.StatusOK {
		t.Fatalf("after reload: %d %s", w.Code, w.Body)
	}
	reloaded.Cleanup()

	restarted := &Handler{Storage: dir, AccountID: account}
	provisioned(t, restarted)
	if w := serve(t, restarted, loopback, "GET", path, nil, nil); w.Code != http.StatusOK {
		t.Fatalf("after restart: %d %s", w.Code, w.Body)
	}
}

func TestVariantsConfigured(t *testing.T) {
	h := &Handler{
		Storage:   "memory",
		AccountID: "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa06",
		Variants: map[string]*Variant{
			"thumbnail": {Fit: "contain", Width: 50, Height: 50},
			"hero":      {Width: 100, Height: 40, NeverRequireSignedURLs: true},
		},
	}
	provisioned(t, h)
	id := upload(t, h, h.AccountID, emulator.DefaultAPIToken, true)
	// hero is public even for a private image, and scale-down by default.
	w := serve(t, h, loopback, "GET", "/"+emulator.DefaultAccountHash+"/"+id+"/hero", nil, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("hero: %d %s", w.Code, w.Body)
	}
	cfg, _, err := image.DecodeConfig(w.Body)
	if err != nil || cfg.Width != 60 || cfg.Height != 40 {
		t.Errorf("hero is %dx%d (%v), want 60x40", cfg.Width, cfg.Height, err)
	}
	w = serve(t, h, loopback, "GET", "/client/v4/accounts/"+h.AccountID+"/images/v1/variants", nil,
		http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}})
	var env struct {
		Result struct {
			Variants map[string]emulator.Variant
		}
	}
	json.Unmarshal(w.Body.Bytes(), &env)
	v := env.Result.Variants
	if len(v) != 4 || v["thumbnail"].Options.Width != 50 || v["avatar"].Options.Width != 96 || v["public"].ID != "public" {
		t.Errorf("variants = %+v", v)
	}
	if !h.known["hero"] || !h.known["avatar"] || len(h.known) != 4 {
		t.Errorf("label set = %v", h.known)
	}
}

func TestProvisionErrors(t *testing.T) {
	for i, h := range []*Handler{
		{Storage: "memory", AccountID: "not-hex"},
		{Storage: "memory", AccountHash: "has space"},
		{Storage: "memory", BaseURL: "ftp://x"},
		{Storage: "memory", Variants: map[string]*Variant{"v": {Width: 0, Height: 10}}},
		{Storage: "memory", Variants: map[string]*Variant{"v": {Fit: "stretch", Width: 10, Height: 10}}},
		{Storage: "memory", Variants: map[string]*Variant{"bad name": {Width: 10, Height: 10}}},
	} {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(ctx); err == nil {
			t.Errorf("Test %d: Provision accepted %+v", i, h)
		}
		if err := h.Cleanup(); err != nil {
			t.Errorf("Test %d: Cleanup after a failed Provision: %v", i, err)
		}
		cancel()
	}
}
