package caddymodule

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	d := caddyfile.NewTestDispenser(`cf_images {
		prefix          /media
		account_hash    {env.CF_ACCOUNT_HASH}
		signing_key     {env.CF_IMAGES_KEY}
		delivery_url    http://127.0.0.1:8787
		variants        public thumbnail
		variants        hero
		public_variants avatar
		window          2h
		min_remaining   10m
		cache_size      5000
		mode            redirect
		session         none
	}`)
	var h Handler
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := Handler{
		Prefix: "/media", AccountHash: "{env.CF_ACCOUNT_HASH}", SigningKey: "{env.CF_IMAGES_KEY}",
		DeliveryURL: "http://127.0.0.1:8787", Variants: []string{"public", "thumbnail", "hero"},
		PublicVariants: []string{"avatar"}, Window: caddy.Duration(2 * time.Hour),
		MinRemaining: caddy.Duration(10 * time.Minute), CacheSize: &URLCacheSize{Entries: 5000}, Mode: "redirect",
		SessionRaw: sessionJSON("none", NoSession{}),
	}
	if !reflect.DeepEqual(h, want) {
		t.Fatalf("got  %+v\nwant %+v", h, want)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for i, src := range []string{
		`cf_images extra`,
		"cf_images {\n\tprefix\n}",
		"cf_images {\n\tprefix /a /b\n}",
		"cf_images {\n\tvariants\n}",
		"cf_images {\n\twindow soon\n}",
		"cf_images {\n\tcache_size -3\n}",
		"cf_images {\n\tcache_size many\n}",
		"cf_images {\n\tsession\n}",
		"cf_images {\n\tsigning_key_path /x\n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err == nil {
			t.Errorf("case %d: %q parsed without error", i, src)
		}
	}
}

// TestAdaptKeepsPlaceholders checks that `imagegate adapt` (and so the
// admin API and autosave) shows {env.X}, never the secret.
func TestAdaptKeepsPlaceholders(t *testing.T) {
	t.Setenv("CF_IMAGES_KEY", "super-secret-key-value")
	src := `:8080 {
	cf_images {
		account_hash {env.CF_ACCOUNT_HASH}
		signing_key  {env.CF_IMAGES_KEY}
		variants     public
		session      none
	}
}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	js := string(out)
	if strings.Contains(js, "super-secret-key-value") || !strings.Contains(js, `"signing_key":"{env.CF_IMAGES_KEY}"`) {
		t.Fatalf("adapted JSON: %s", js)
	}
	if !strings.Contains(js, `"handler":"cf_images"`) {
		t.Fatalf("cf_images missing from adapted JSON (directive order not registered?): %s", js)
	}
}

func TestProvisionResolvesSecrets(t *testing.T) {
	t.Setenv("TEST_CF_KEY", "from-env")
	t.Setenv("TEST_CF_HASH", "HashFromEnv")
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newTestHandler(t, func(h *Handler) { h.SigningKey, h.AccountHash = "{env.TEST_CF_KEY}", "{env.TEST_CF_HASH}" })
	if string(h.cfg.SigningKey) != "from-env" || h.cfg.AccountHash != "HashFromEnv" {
		t.Fatalf("resolved %q %q", h.cfg.SigningKey, h.cfg.AccountHash)
	}
	h = newTestHandler(t, func(h *Handler) { h.SigningKey, h.SigningKeyFile = "", keyFile })
	if string(h.cfg.SigningKey) != "from-file" {
		t.Fatalf("key from file = %q", h.cfg.SigningKey)
	}
}

func TestProvisionErrors(t *testing.T) {
	t.Setenv("TEST_CF_KEY", "never-printed-secret")
	for i, tc := range []struct {
		edit func(*Handler)
		want string
	}{
		{func(h *Handler) { h.SigningKey = "{env.TEST_UNSET_VAR}" }, "signing_key: {env.TEST_UNSET_VAR} is empty"},
		{func(h *Handler) { h.SigningKey = "{env.TEST_CF_KEY}"; h.SigningKeyFile = "/k" }, "set either signing_key or signing_key_file"},
		{func(h *Handler) { h.SigningKey, h.SigningKeyFile = "", "/nonexistent/key" }, "signing_key_file:"},
		{func(h *Handler) { h.SessionRaw = nil }, "session: required"},
		{func(h *Handler) { h.SessionRaw = json.RawMessage(`{"method":"magic"}`) }, "unknown module: http.handlers.cf_images.sessions.magic"},
		{func(h *Handler) { h.AccountHash = "0123456789abcdef0123456789abcdef" }, "account hash"},
		{func(h *Handler) { h.SigningKey = "{env.TEST_CF_KEY}"; h.Window = caddy.Duration(time.Second) }, "window:"},
	} {
		h := &Handler{AccountHash: "acc", SigningKey: "k", Variants: []string{"public"}, SessionRaw: sessionJSON("none", NoSession{})}
		tc.edit(h)
		ctx, cancel := newContext(t)
		err := h.Provision(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: Provision() = %v, want %q", i, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "never-printed-secret") {
			t.Errorf("case %d: error shows the secret: %v", i, err)
		}
	}
}
