package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/session"
)

const alertsPath = "../ops/alerts.yml"

// TestPromtoolCheckRules lints the shipped alerting rules.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := requireTool(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "check", "rules", alertsPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsPath, err, out)
	}
}

// promRule is one rule of Prometheus' /api/v1/rules.
type promRule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// promAlert is one alert of Prometheus' /api/v1/alerts.
type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

// promGet reads one of Prometheus' API answers into data.
func promGet(base, path string, data any) error {
	resp, err := promClient.Get(base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var pr promResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return fmt.Errorf("status %d: %w: %s", resp.StatusCode, err, body)
	}
	if pr.Status != "success" {
		return fmt.Errorf("%s: %s", pr.ErrorType, pr.Error)
	}
	return json.Unmarshal(pr.Data, data)
}

// shippedAlertNames lists the alerts ops/alerts.yml defines.
func shippedAlertNames(t *testing.T, rules []byte) []string {
	t.Helper()
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s*- alert: (\S+)\s*$`).FindAllSubmatch(rules, -1) {
		names = append(names, string(m[1]))
	}
	if len(names) == 0 {
		t.Fatalf("%s defines no alerts", alertsPath)
	}
	return names
}

// TestAlertRulesLoadAndFire loads ops/alerts.yml into a real Prometheus that
// scrapes a real gateway: every rule must be loaded and evaluate without
// error against the gateway's series, no alert may fire on a healthy
// gateway, and a burst of 429s (callers over upload_limit, after one
// upload the closed API port fails) must fire ImagegateCallersRateLimited
// and ImagegateUploadErrors. The rules' `for` durations are set to 0s in
// the copy Prometheus loads: what is tested is that the expressions see the
// burst, not how long the shipped file waits.
func TestAlertRulesLoadAndFire(t *testing.T) {
	requireTool(t, "prometheus")
	shipped, err := os.ReadFile(alertsPath)
	if err != nil {
		t.Fatal(err)
	}
	names := shippedAlertNames(t, shipped)
	rulesPath := filepath.Join(t.TempDir(), "alerts.yml")
	immediate := regexp.MustCompile(`(?m)^(\s+for:) \S+$`).ReplaceAll(shipped, []byte("${1} 0s"))
	if err := os.WriteFile(rulesPath, immediate, 0o600); err != nil {
		t.Fatal(err)
	}

	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n}\n", admin)+gatewaySite(site, "", `variants public
		session jwt {
			header Authorization
			secret `+e2eJWTSecret+`
		}
		account_id   0123456789abcdef0123456789abcdef
		api_token    unused-token
		api_url      http://127.0.0.1:1/client/v4
		upload_path  /img/upload
		upload_limit 1 1h`), gatewayEnv, site, admin)
	prom := startPrometheus(t, admin, rulesPath)

	// Every shipped alert is loaded and has been evaluated without error.
	var rules []promRule
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		var data struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		}
		rules = nil
		err := promGet(prom, "/api/v1/rules", &data)
		for _, g := range data.Groups {
			rules = append(rules, g.Rules...)
		}
		healthy := err == nil && len(rules) == len(names)
		for _, r := range rules {
			healthy = healthy && r.Health == "ok"
		}
		if healthy {
			break
		}
		if time.Now().After(deadline) || i >= 60 {
			t.Fatalf("Prometheus did not load and evaluate %d rules within 30s (last error: %v): %+v", len(names), err, rules)
		}
		time.Sleep(500 * time.Millisecond) // bounded poll: at most 60 rounds, 30s
	}
	for _, r := range rules {
		if r.Type != "alerting" || !slices.Contains(names, r.Name) {
			t.Errorf("loaded rule %q (%s) is not one of the shipped alerts %v", r.Name, r.Type, names)
		}
	}

	firing := func() (map[string]bool, error) {
		var data struct {
			Alerts []promAlert `json:"alerts"`
		}
		if err := promGet(prom, "/api/v1/alerts", &data); err != nil {
			return nil, err
		}
		f := map[string]bool{}
		for _, a := range data.Alerts {
			if a.State == "firing" && a.Labels["instance"] == admin {
				f[a.Labels["alertname"]] = true
			}
		}
		return f, nil
	}
	// A healthy, idle gateway fires nothing. Prometheus starts scraping a
	// few seconds after it is ready (it batches target updates), so wait
	// for the gateway's series, then for a few more scrapes and
	// evaluations, which also gives the counters a sample before the burst.
	deadline = time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		pr, err := promQuery(prom, `imagegate_upload_urls_total{result="limited"}`)
		if err == nil && strings.Contains(string(pr.Data), admin) {
			break
		}
		if time.Now().After(deadline) || i >= 60 {
			t.Fatalf("Prometheus did not scrape the gateway within 30s (last error %v)", err)
		}
		time.Sleep(500 * time.Millisecond) // bounded poll: at most 60 rounds, 30s
	}
	time.Sleep(3 * time.Second)
	if f, err := firing(); err != nil || len(f) > 0 {
		t.Fatalf("before any traffic: firing %v (error %v), want none", f, err)
	}

	tok, err := session.MintHS256([]byte(e2eJWTSecret), "alice", time.Hour, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"Authorization": "Bearer " + tok}
	var statuses []int
	for range 6 {
		resp, _ := get(t, "POST", "http://"+site+"/img/upload", auth)
		statuses = append(statuses, resp.StatusCode)
	}
	if want := []int{502, 429, 429, 429, 429, 429}; !slices.Equal(statuses, want) {
		t.Fatalf("upload statuses %v, want %v (the first reaches the closed API port, the rest are over upload_limit 1)", statuses, want)
	}

	want := []string{"ImagegateCallersRateLimited", "ImagegateUploadErrors"}
	var f map[string]bool
	deadline = time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		f, err = firing()
		if err == nil && f[want[0]] && f[want[1]] {
			break
		}
		if time.Now().After(deadline) || i >= 60 {
			pr, qerr := promQuery(prom, "imagegate_upload_urls_total")
			t.Fatalf("after the 429 burst: firing %v (last error %v), want %v\nimagegate_upload_urls_total: %s %v", f, err, want, pr.Data, qerr)
		}
		time.Sleep(500 * time.Millisecond) // bounded poll: at most 60 rounds, 30s
	}
	for name := range f {
		if !slices.Contains(want, name) {
			t.Errorf("%s fires too; only %v should", name, want)
		}
	}
	t.Logf("firing after the burst: %s", strings.Join(slices.Sorted(maps.Keys(f)), ", "))
}
