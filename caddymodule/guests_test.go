package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"          // the directives Caddyfile.example uses besides ours

	_ "github.com/seed-a64a90cf/imagegate/caddymodule/cfemulator" // Caddyfile.example's emulator site
)

// TestGuestModules: every session method and authorization policy is a
// registered guest module in its namespace, readable from the Caddyfile,
// implementing the interface the handler loads it as.
func TestGuestModules(t *testing.T) {
	for _, ns := range []struct {
		namespace string
		want      []string
		isGuest   func(any) bool
	}{
		{sessionsNamespace, []string{"caddy_auth", "introspect", "jwt", "none", "oauth2_introspect"},
			func(m any) bool { _, ok := m.(SessionMethod); return ok }},
		{authorizersNamespace, []string{"any", "claim", "introspect", "owner"},
			func(m any) bool { _, ok := m.(Authorizer); return ok }},
	} {
		var names []string
		for _, info := range caddy.GetModules(ns.namespace) {
			name := info.ID.Name()
			names = append(names, name)
			m := info.New()
			if _, ok := m.(caddyfile.Unmarshaler); !ok {
				t.Errorf("%s: %T does not implement caddyfile.Unmarshaler", info.ID, m)
			}
			if !ns.isGuest(m) {
				t.Errorf("%s: %T does not implement the namespace's interface", info.ID, m)
			}
			if m.CaddyModule().ID != info.ID {
				t.Errorf("%s: New returns module %s", info.ID, m.CaddyModule().ID)
			}
		}
		slices.Sort(names)
		if !slices.Equal(names, ns.want) {
			t.Errorf("%s lists %v, want %v", ns.namespace, names, ns.want)
		}
	}
}

// cfImagesHandlers returns every `"handler":"cf_images"` object in an
// adapted config, wherever routes nest it.
func cfImagesHandlers(v any) []map[string]any {
	var found []map[string]any
	switch v := v.(type) {
	case map[string]any:
		if v["handler"] == "cf_images" {
			found = append(found, v)
		}
		for _, x := range v {
			found = append(found, cfImagesHandlers(x)...)
		}
	case []any:
		for _, x := range v {
			found = append(found, cfImagesHandlers(x)...)
		}
	}
	return found
}

// TestExampleCaddyfileStillLoads adapts the repository's Caddyfile.example,
// whose cf_images block is the previous release's, and provisions its
// handler from the adapted JSON as Caddy would.
func TestExampleCaddyfileStillLoads(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	for _, w := range warnings {
		t.Logf("adapter warning: %s:%d: %s", w.File, w.Line, w.Message)
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	hs := cfImagesHandlers(cfg)
	if len(hs) != 1 {
		t.Fatalf("adapted config has %d cf_images handlers, want 1:\n%s", len(hs), out)
	}
	h := hs[0]
	wantSession := map[string]any{
		"method":      "jwt",
		"sources":     []any{map[string]any{"cookie": "session"}, map[string]any{"header": "Authorization"}},
		"secret_file": "dev/jwt-secret",
	}
	if !reflect.DeepEqual(h["session"], wantSession) {
		t.Errorf("session = %v, want %v", h["session"], wantSession)
	}
	if want := map[string]any{"policy": "owner", "field": "owner", "metadata_ttl": 3e11, "metadata_stale": 3.6e12,
		"lookup_limit": map[string]any{"events": 120.0, "window": 6e10}}; !reflect.DeepEqual(h["authorize"], want) {
		t.Errorf("authorize = %v, want %v", h["authorize"], want)
	}

	// The account is in the global cf_images block; a handler takes the
	// same settings, so loading the handler alone with them merged in
	// checks the same thing.
	app, _ := cfg.(map[string]any)["apps"].(map[string]any)["cf_images"].(map[string]any)
	if app["account_hash"] != "emu-account-hash" {
		t.Fatalf("global cf_images block = %v, want the emulator's account", app)
	}
	for k, v := range app {
		h[k] = v
	}
	// The dev/ files are relative to the repository root.
	t.Chdir("..")
	raw, _ := json.Marshal(h)
	handler := loadHandlerJSON(t, raw)
	if handler.method.CaddyModule().ID.Name() != "jwt" {
		t.Errorf("session method %s", handler.method.CaddyModule().ID)
	}
	// The owner policy and uploads both need the API client.
	if handler.api == nil || handler.uploads == nil {
		t.Errorf("API client %v, uploads %v: want both, for owner and uploads", handler.api != nil, handler.uploads != nil)
	}
}

// routeHandler is what holds a handler in Caddy's config: an object in
// http.handlers named by its "handler" key.
type routeHandler struct {
	HandlerRaw json.RawMessage `caddy:"namespace=http.handlers inline_key=handler"`
}

// loadHandlerJSON loads a `{"handler":"cf_images",…}` object the way Caddy
// loads a route's handler: strict decoding, guest modules and Provision.
func loadHandlerJSON(t *testing.T, raw []byte) *Handler {
	t.Helper()
	ctx, cancel := newContext(t)
	t.Cleanup(cancel)
	v, err := ctx.LoadModule(&routeHandler{HandlerRaw: raw}, "HandlerRaw")
	if err != nil {
		t.Fatalf("loading %s: %v", raw, err)
	}
	return v.(*Handler)
}

// TestPreviousReleaseJSONConfig: a handler written in JSON as the previous
// release documented it still loads, and works.
func TestPreviousReleaseJSONConfig(t *testing.T) {
	app, calls := introspectApp(t)
	raw := `{
		"handler": "cf_images",
		"account_hash": "AccHash_x1",
		"signing_key": "` + testKey + `",
		"variants": ["public"],
		"session": {
			"method": "introspect",
			"url": "` + app.URL + `",
			"sources": [{"cookie": "sessionid"}],
			"per_image": true
		},
		"authorize": {"policy": "introspect"}
	}`
	h := loadHandlerJSON(t, []byte(raw))
	for id, want := range map[string]int{"abc": 302, "secret": 403} {
		if w, _ := serve(t, h, "GET", "/img/"+id+"/public", map[string]string{"Cookie": "sessionid=alice"}); w.Code != want {
			t.Errorf("%s: status %d, want %d", id, w.Code, want)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("the application saw %d calls, want one per image", calls.Load())
	}
}

// TestSessionAndAuthorizeLines: one `session` line per handler, and
// `authorize introspect per_image` may come before the session it needs.
func TestSessionAndAuthorizeLines(t *testing.T) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("cf_images {\n session none\n session caddy_auth\n}"))
	if err == nil || !strings.Contains(err.Error(), "session: given twice") {
		t.Errorf("a second session line: %v", err)
	}

	app, forwarded := imageIDApp(t)
	h2, err := caddyfileHandler(t, `
		account_hash AccHash_x1
		signing_key  `+testKey+`
		variants     public
		authorize introspect per_image
		session introspect `+app.URL+` {
			cookie sessionid
		}`)
	if err != nil {
		t.Fatal(err)
	}
	if w, _ := serve(t, h2, "GET", "/img/abc/public", map[string]string{"Cookie": "sessionid=alice"}); w.Code != 302 {
		t.Fatalf("status %d", w.Code)
	}
	if got := forwarded(); got != "abc public" {
		t.Errorf("the application was told %q, want the image and variant", got)
	}
}

// imageIDApp is an introspection application that allows everyone and
// remembers the last X-Image-Id and X-Image-Variant it was sent.
func imageIDApp(t *testing.T) (*httptest.Server, func() string) {
	ch := make(chan string, 100)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ch <- r.Header.Get("X-Image-Id") + " " + r.Header.Get("X-Image-Variant")
		w.Header().Set("X-User-Id", "alice")
	}))
	t.Cleanup(srv.Close)
	return srv, func() string {
		select {
		case s := <-ch:
			return s
		default:
			return ""
		}
	}
}
