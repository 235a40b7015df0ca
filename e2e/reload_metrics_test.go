package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// metricsConfig is the reload test's config: an admin endpoint for
// /metrics and reloads, and one gateway without Redis whose handler gets
// the given extra settings.
func metricsConfig(admin, site, extra string) string {
	return fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n\tgrace_period 5s\n}\n", admin) +
		gatewaySite(site, "", "variants public thumbnail\n\t\tsession none\n\t\t"+extra)
}

// imagegateSeries returns the names (with labels) of the imagegate_ series
// on the admin endpoint's /metrics, and the whole exposition.
func imagegateSeries(t *testing.T, admin string) ([]string, string) {
	t.Helper()
	resp, body := get(t, "GET", "http://"+admin+"/metrics", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	var series []string
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "imagegate_") {
			name, _, _ := strings.Cut(line, " ")
			series = append(series, name)
		}
	}
	return series, body
}

// runImagegate runs the binary with args, as an operator would, and
// returns what it printed.
func runImagegate(t *testing.T, args ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeConfig writes a config into a temporary file and returns its path.
func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// redirects sends n requests for public images and checks each is a 302.
func redirects(t *testing.T, site string, n int) {
	t.Helper()
	for i := range n {
		if resp, _ := get(t, "GET", fmt.Sprintf("http://%s/img/m%d/public", site, i), nil); resp.StatusCode != 302 {
			t.Fatalf("GET /img/m%d/public: status %d, want 302", i, resp.StatusCode)
		}
	}
}

// TestReloadMetrics: a reload that Caddy rejects leaves every imagegate_
// series on /metrics, still counting, while the old config keeps serving;
// an accepted reload keeps the counters continuous. Without Redis,
// imagegate_redis_up is absent, not 0.
func TestReloadMetrics(t *testing.T) {
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, metricsConfig(admin, site, ""), gatewayEnv, admin, site)

	redirects(t, site, 5)
	before, body := imagegateSeries(t, admin)
	count := scrapeRedirects(t, admin)
	t.Logf("before the reloads: %d imagegate_ series, %v redirects counted", len(before), count)
	if count != 5 {
		t.Fatalf("redirect counter %v after 5 redirects", count)
	}
	if strings.Contains(body, "imagegate_redis_up") {
		t.Errorf("imagegate_redis_up is on /metrics without Redis:\n%s", grepLines(body, "imagegate_redis"))
	}

	// Rejected: min_remaining longer than window.
	out, err := runImagegate(t, "reload", "--config", writeConfig(t, "Caddyfile", metricsConfig(admin, site, "window 1h\n\t\tmin_remaining 2h")),
		"--adapter", "caddyfile", "--address", admin)
	if err == nil {
		t.Fatalf("imagegate reload accepted min_remaining 2h with window 1h:\n%s", out)
	}
	if !strings.Contains(out, "min_remaining") {
		t.Errorf("the rejected reload does not name min_remaining:\n%s", out)
	}
	redirects(t, site, 3) // the old config still serves
	after, body := imagegateSeries(t, admin)
	if missing := missingFrom(before, after); len(missing) > 0 {
		t.Errorf("after a rejected reload /metrics has %d imagegate_ series, was %d; missing %d, first %q",
			len(after), len(before), len(missing), missing[0])
	}
	if got := scrapeRedirects(t, admin); got != count+3 {
		t.Errorf("after a rejected reload the redirect counter is %v, want %v: it stopped counting", got, count+3)
	}
	if strings.Contains(body, "imagegate_redis_up") {
		t.Errorf("imagegate_redis_up appeared after a rejected reload")
	}

	// Rejected before any cf_images handler is provisioned: the emulator in
	// the route ahead of the gateway cannot open its storage. Caddy has
	// already switched /metrics to this config's registry by then, so only
	// the admin route puts the imagegate_ series there.
	broken := fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n}\nhttp://%s {\n\troute {\n"+
		"\t\tcf_images_emulator {\n\t\t\tstorage /dev/null/imagegate-store\n\t\t}\n"+
		"\t\tcf_images {\n\t\t\taccount_hash {env.CF_ACCOUNT_HASH}\n\t\t\tsigning_key {env.CF_IMAGES_KEY}\n"+
		"\t\t\tvariants public\n\t\t\tsession none\n\t\t}\n\t}\n}\n", admin, site)
	if out, err := runImagegate(t, "reload", "--config", writeConfig(t, "Caddyfile", broken), "--adapter", "caddyfile", "--address", admin); err == nil {
		t.Fatalf("imagegate reload accepted an emulator without storage:\n%s", out)
	}
	redirects(t, site, 1)
	after, _ = imagegateSeries(t, admin)
	if missing := missingFrom(before, after); len(missing) > 0 {
		t.Errorf("after a reload rejected before the gateway was provisioned /metrics has %d imagegate_ series, was %d; missing %d, first %q",
			len(after), len(before), len(missing), missing[0])
	}
	count++ // the request above
	if got := scrapeRedirects(t, admin); got != count+3 {
		t.Errorf("after the second rejected reload the redirect counter is %v, want %v", got, count+3)
	}

	// Accepted: a real change.
	if out, err := runImagegate(t, "reload", "--config", writeConfig(t, "Caddyfile", metricsConfig(admin, site, "cache_size 500")),
		"--adapter", "caddyfile", "--address", admin); err != nil {
		t.Fatalf("imagegate reload of a good config: %v\n%s", err, out)
	}
	if got := scrapeRedirects(t, admin); got != count+3 {
		t.Errorf("after an accepted reload the redirect counter is %v, want %v: counters must be continuous", got, count+3)
	}
	redirects(t, site, 2)
	if got := scrapeRedirects(t, admin); got != count+5 {
		t.Errorf("after an accepted reload and 2 redirects the counter is %v, want %v", got, count+5)
	}
	final, _ := imagegateSeries(t, admin)
	if missing := missingFrom(before, final); len(missing) > 0 {
		t.Errorf("after an accepted reload %d series are missing, first %q", len(missing), missing[0])
	}
	t.Logf("after both reloads: %d imagegate_ series, %v redirects counted", len(final), scrapeRedirects(t, admin))
}

// missingFrom returns the series of want that got lacks.
func missingFrom(want, got []string) []string {
	var missing []string
	for _, s := range want {
		if !slices.Contains(got, s) {
			missing = append(missing, s)
		}
	}
	return missing
}

// fiveMistakes has one mistake in each of the app block, the handler, a
// guest module, `mode proxy` and `redis`.
const fiveMistakes = `{
	"admin": {"disabled": true},
	"apps": {
		"cf_images": {"api_max_in_flight": -1, "account_hash": "AccHash_x1", "signing_key": "e2e-signing-key"},
		"http": {"servers": {"gw": {"listen": ["127.0.0.1:0"], "routes": [{"handle": [{
			"handler": "cf_images",
			"variants": ["public"],
			"window": "10s",
			"session": {"method": "jwt"},
			"mode": "proxy",
			"proxy": {"max_object": -1},
			"redis": {"urls": ["redis://127.0.0.1:1/0"], "key_prefix": "a{b}:"}
		}]}]}}}
	}
}`

// TestReloadMetricsValidateNamesEveryMistake: `imagegate validate`, the
// check an operator runs before a reload, names all five mistakes of a
// config at once.
func TestReloadMetricsValidateNamesEveryMistake(t *testing.T) {
	out, err := runImagegate(t, "validate", "--config", writeConfig(t, "five.json", fiveMistakes))
	if err == nil {
		t.Fatalf("imagegate validate accepted a config with five mistakes:\n%s", out)
	}
	for _, setting := range []string{"api_max_in_flight", "window", "session", "max_object", "key_prefix"} {
		if !strings.Contains(out, setting) {
			t.Errorf("imagegate validate does not name %s", setting)
		}
	}
	if t.Failed() {
		t.Logf("imagegate validate said:\n%s", out)
	}
}
