package cfemulator

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func TestUnmarshalCaddyfile(t *testing.T) {
	for i, tc := range []struct {
		input string
		want  Handler
	}{
		{`cf_images_emulator`, Handler{}},
		{`cf_images_emulator {
			account_id   00112233445566778899aabbccddeeff
			account_hash my-hash
			api_token    {env.EMU_TOKEN}
			signing_key  {file./run/secrets/key}
			storage      memory
			base_url     http://127.0.0.1:8787
			browser_ttl  1h
			flexible_variants
			listen_public
			api_rate_limit 5 1m
			api_rate_block 3s
			variant hero {
				fit    cover
				width  640
				height 360
				never_require_signed_urls
			}
			variant small {
				width  10
				height 20
			}
		}`, Handler{
			AccountID:        "00112233445566778899aabbccddeeff",
			AccountHash:      "my-hash",
			APIToken:         "{env.EMU_TOKEN}",
			SigningKey:       "{file./run/secrets/key}",
			Storage:          "memory",
			BaseURL:          "http://127.0.0.1:8787",
			BrowserTTL:       caddy.Duration(time.Hour),
			FlexibleVariants: true,
			ListenPublic:     true,
			APIRateLimit:     &APIRateLimit{Requests: 5, Window: caddy.Duration(time.Minute)},
			APIRateBlock:     caddy.Duration(3 * time.Second),
			Variants: map[string]*Variant{
				"hero":  {Fit: "cover", Width: 640, Height: 360, NeverRequireSignedURLs: true},
				"small": {Width: 10, Height: 20},
			},
		}},
		{"cf_images_emulator {\n api_rate_limit off\n}", Handler{APIRateLimit: &APIRateLimit{Off: true}}},
	} {
		var got Handler
		if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
			t.Errorf("Test %d: %v", i, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Test %d:\ngot  %+v\nwant %+v", i, got, tc.want)
		}
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	for i, tc := range []struct {
		input, want string
	}{
		{"cf_images_emulator extra", "wrong argument count"},
		{"cf_images_emulator {\n bogus\n}", `unrecognized subdirective "bogus"`},
		{"cf_images_emulator {\n storage\n}", "wrong argument count"},
		{"cf_images_emulator {\n api_token a b\n}", "wrong argument count"},
		{"cf_images_emulator {\n browser_ttl soon\n}", "browser_ttl"},
		{"cf_images_emulator {\n listen_public yes\n}", "wrong argument count"},
		{"cf_images_emulator {\n api_rate_limit 5\n}", "api_rate_limit: want <requests> <window>"},
		{"cf_images_emulator {\n api_rate_limit 0 1m\n}", "api_rate_limit: want a whole number of requests"},
		{"cf_images_emulator {\n api_rate_limit 5 soon\n}", "api_rate_limit: want a positive window"},
		{"cf_images_emulator {\n api_rate_block 0s\n}", "api_rate_block: want a positive duration"},
		{"cf_images_emulator {\n variant\n}", "wrong argument count"},
		{"cf_images_emulator {\n variant a {\n width wide\n }\n}", "width: want a whole number of pixels"},
		{"cf_images_emulator {\n variant a {\n blur 3\n }\n}", `unrecognized variant subdirective "blur"`},
		{"cf_images_emulator {\n variant a {\n width 1\n }\n variant a {\n width 2\n }\n}", `variant "a" is defined twice`},
	} {
		var h Handler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Test %d: got %v, want an error containing %q", i, err, tc.want)
		}
	}
}

// The directive is registered and ordered: a site using it adapts without
// a route block, the handler comes after respond, and secrets given as
// placeholders stay placeholders in the JSON.
func TestAdaptCaddyfile(t *testing.T) {
	adapter := caddyfile.Adapter{ServerType: httpcaddyfile.ServerType{}}
	out, warnings, err := adapter.Adapt([]byte(`
		http://127.0.0.1:8787 {
			cf_images_emulator {
				api_token {env.CF_EMULATOR_TOKEN}
				storage memory
			}
			respond /healthz 200
		}`), nil)
	if err != nil {
		t.Fatalf("adapt: %v (%v)", err, warnings)
	}
	js := string(out)
	emu := strings.Index(js, `"handler":"cf_images_emulator"`)
	respond := strings.Index(js, `"handler":"static_response"`)
	if emu < 0 || respond < 0 || respond > emu {
		t.Errorf("want static_response before cf_images_emulator: %s", js)
	}
	if !strings.Contains(js, `"api_token":"{env.CF_EMULATOR_TOKEN}"`) {
		t.Errorf("the token placeholder was not kept: %s", js)
	}
}
