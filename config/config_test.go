package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

func valid() Gateway {
	g := Gateway{AccountHash: "ZWd9g1K7eljCn_KDTu_MWA", SigningKey: []byte("k"), Variants: []string{"public"}}
	g.SetDefaults()
	return g
}

func TestDefaults(t *testing.T) {
	g := valid()
	if g.Prefix != "/img" || g.DeliveryURL != "https://imagedelivery.net" || g.Window.Size != time.Hour ||
		g.Window.MinRemaining != 5*time.Minute || g.Mode != "redirect" {
		t.Fatalf("defaults: %+v", g)
	}
	if err := g.Validate(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
}

// Each message must name the field and say what to do.
func TestValidateMessages(t *testing.T) {
	for i, tc := range []struct {
		edit func(*Gateway)
		want string
	}{
		{func(g *Gateway) { g.AccountHash = "" }, "account_hash: missing"},
		{func(g *Gateway) { g.AccountHash = "0123456789abcdef0123456789abcdef" }, "account_hash: this is a 32-hex account id"},
		{func(g *Gateway) { g.AccountHash = "a/b" }, "account_hash: may contain only"},
		{func(g *Gateway) { g.SigningKey = nil }, "signing_key: missing"},
		{func(g *Gateway) { g.Window.MinRemaining = time.Hour }, "min_remaining: 1h0m0s must be shorter than window"},
		{func(g *Gateway) { g.Window.MinRemaining = 2 * time.Hour }, "min_remaining: 2h0m0s must be shorter than window"},
		{func(g *Gateway) { g.Window = signer.Window{Size: 30 * time.Second, MinRemaining: time.Second} }, "window: 30s is shorter than the minimum of 1m"},
		{func(g *Gateway) { g.Window.Size = 90*time.Second + time.Millisecond }, "window: 1m30.001s must be a whole number of seconds"},
		{func(g *Gateway) { g.DeliveryURL = "imagedelivery.net" }, "delivery_url: must be an absolute http(s) URL"},
		{func(g *Gateway) { g.DeliveryURL = "ftp://imagedelivery.net" }, "delivery_url: must be an absolute http(s) URL"},
		{func(g *Gateway) { g.DeliveryURL = "https://imagedelivery.net/?x=1" }, "delivery_url: must be an absolute http(s) URL"},
		{func(g *Gateway) { g.Variants = nil }, "variants: none configured"},
		{func(g *Gateway) { g.Variants = []string{"w=400"} }, `variants: "w=400" is not a named variant`},
		{func(g *Gateway) { g.PublicVariants = []string{"public"} }, `public_variants: "public" is already listed in variants`},
		{func(g *Gateway) { g.Prefix = "img" }, "prefix: must be a path starting with '/'"},
		{func(g *Gateway) { g.Mode = "stream" }, `mode: "stream" is not supported; use redirect or proxy`},
	} {
		g := valid()
		tc.edit(&g)
		err := g.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("case %d: Validate() = %v, want it to contain %q", i, err, tc.want)
		}
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	g := Gateway{}
	g.SetDefaults()
	err := g.Validate()
	for _, field := range []string{"account_hash", "signing_key", "variants"} {
		if err == nil || !strings.Contains(err.Error(), field+":") {
			t.Errorf("error %v does not mention %s", err, field)
		}
	}
}

func TestWarnings(t *testing.T) {
	g := valid()
	if len(g.Warnings()) != 0 {
		t.Fatalf("warnings for a default config: %v", g.Warnings())
	}
	g.Window.Size = 48 * time.Hour
	if w := g.Warnings(); len(w) != 1 || !strings.Contains(w[0], "window") {
		t.Fatalf("warnings = %v", w)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	if b, err := ReadSecretFile("signing_key_file", write("k", "s3cret\n")); err != nil || string(b) != "s3cret" {
		t.Fatalf("got %q, %v", b, err)
	}
	if b, err := ReadSecretFile("signing_key_file", write("crlf", "s3cret\r\n")); err != nil || string(b) != "s3cret" {
		t.Fatalf("got %q, %v", b, err)
	}
	for name, content := range map[string]string{"empty": "\n", "big": strings.Repeat("x", 70<<10)} {
		_, err := ReadSecretFile("signing_key_file", write(name, content))
		if err == nil || !strings.HasPrefix(err.Error(), "signing_key_file: ") || strings.Contains(err.Error(), "xxxx") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := ReadSecretFile("signing_key_file", filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
}

// TestUnresolvedIsNotAlsoMissing: a setting whose placeholder failed was
// reported by the resolver; Validate does not add "missing" for it.
func TestUnresolvedIsNotAlsoMissing(t *testing.T) {
	g := Gateway{Variants: []string{"public"}, Unresolved: map[string]bool{"account_hash": true, "signing_key": true}}
	g.SetDefaults()
	if err := g.Validate(); err != nil {
		t.Fatalf("Validate() = %v, want nil: both fields were reported already", err)
	}
	g.Unresolved = nil
	if err := g.Validate(); err == nil || !strings.Contains(err.Error(), "account_hash: missing") || !strings.Contains(err.Error(), "signing_key: missing") {
		t.Fatalf("Validate() = %v, want both reported missing", err)
	}
}
