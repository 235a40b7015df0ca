package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	dashboardPath  = "../ops/grafana-dashboard.json"
	promConfigPath = "../ops/prometheus.yml"
	observedID     = "8a3c64a1-5c1e-4d7e-9b43-0f2a6e1d9c7b"
)

// observed is a running gateway with Caddy's admin endpoint on loopback.
type observed struct {
	base    string // the gateway site, http://127.0.0.1:<port>
	admin   string // host:port of the admin endpoint
	metrics string // the admin endpoint's /metrics
}

func startObserved(t *testing.T) observed {
	t.Helper()
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	start(t, fmt.Sprintf(`{
	admin %s
	persist_config off
}
http://%s {
	cf_images {
		prefix          /img
		account_hash    {env.CF_ACCOUNT_HASH}
		signing_key     {env.CF_IMAGES_KEY}
		delivery_url    http://127.0.0.1:1
		variants        public thumbnail
		public_variants avatar
		window          1h
		min_remaining   5m
		session         none
	}
	respond "not an image" 200
}
# A second gateway that uses the other features, so that every metric
# family (JWT session checks, upload URLs) exists on /metrics without
# traffic: its children are created when the config is provisioned.
`, admin, site)+gatewaySite(fmt.Sprintf("127.0.0.1:%d", freePort(t)), "", `variants public
		session jwt {
			secret `+e2eJWTSecret+`
		}
		account_id  0123456789abcdef0123456789abcdef
		api_token   unused-token
		api_url     http://127.0.0.1:1/client/v4
		upload_path /img/upload`), gatewayEnv, site, admin)
	return observed{base: "http://" + site, admin: admin, metrics: "http://" + admin + "/metrics"}
}

// traffic is how many requests of each outcome to send.
type traffic struct{ redirect, json, notModified, notFound, badRequest int }

// send makes the requests and checks that each got the status its outcome
// stands for, so that the counts the tests expect are the counts sent.
// not_modified requests revalidate the ETag of the last JSON answer, so
// they need json ≥ 1.
func (o observed) send(t *testing.T, tr traffic) {
	t.Helper()
	if tr.notModified > 0 && tr.json == 0 {
		t.Fatal("traffic: not_modified needs a JSON answer's ETag (json ≥ 1)")
	}
	img := o.base + "/img/" + observedID
	wantJSON := map[string]string{"Accept": "application/json"}
	var etag string
	for range tr.redirect {
		resp, body := get(t, "GET", img+"/thumbnail", nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") == "" {
			t.Fatalf("GET thumbnail: status %d Location %q, want a 302 (%q)", resp.StatusCode, resp.Header.Get("Location"), body)
		}
	}
	for range tr.json {
		resp, body := get(t, "GET", img+"/public", wantJSON)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("GET public as JSON: status %d Content-Type %q, want a JSON 200 (%q)", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if etag = resp.Header.Get("ETag"); etag == "" {
			t.Fatal("JSON answer has no ETag")
		}
	}
	for range tr.notModified {
		resp, body := get(t, "GET", img+"/public", map[string]string{"Accept": "application/json", "If-None-Match": etag})
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("GET public as JSON with If-None-Match %s: status %d, want 304 (%q)", etag, resp.StatusCode, body)
		}
	}
	for _, c := range []struct {
		n      int
		path   string
		status int
	}{
		{tr.notFound, "/original", http.StatusNotFound},
		{tr.badRequest, "/w=400", http.StatusBadRequest},
	} {
		for range c.n {
			resp, body := get(t, "GET", img+c.path, nil)
			if resp.StatusCode != c.status {
				t.Fatalf("GET %s: status %d, want %d (%q)", img+c.path, resp.StatusCode, c.status, body)
			}
		}
	}
}

// scrape reads Caddy's /metrics in the text exposition format.
func (o observed) scrape(t *testing.T) string {
	t.Helper()
	resp, body := get(t, "GET", o.metrics, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d: %s", o.metrics, resp.StatusCode, body)
	}
	return body
}

// dashboard is the part of a Grafana dashboard these tests read.
type dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Inputs        []struct {
		Name, Type, PluginID string
	} `json:"__inputs"`
	Panels []dashPanel `json:"panels"`
}

type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type, UID string
	} `json:"datasource"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row holds its panels
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardPath, err)
	}
	return d
}

// panels lists every panel, rows' nested panels included.
func (d dashboard) panels() []dashPanel {
	var out []dashPanel
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

var metricNameRE = regexp.MustCompile(`\bimagegate_[a-zA-Z0-9_:]*`)

// queriedMetrics maps every imagegate_* name in a panel's targets[].expr to
// the titles of the panels that query it.
func (d dashboard) queriedMetrics() map[string][]string {
	names := map[string][]string{}
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			for _, n := range metricNameRE.FindAllString(tg.Expr, -1) {
				if !slices.Contains(names[n], p.Title) {
					names[n] = append(names[n], p.Title)
				}
			}
		}
	}
	return names
}

// exposition is what a scrape holds: family types from `# TYPE` lines and
// the names of the samples.
type exposition struct {
	types   map[string]string
	samples map[string]bool
}

func parseExposition(text string) exposition {
	e := exposition{types: map[string]string{}, samples: map[string]bool{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			e.types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			e.samples[line[:i]] = true
		}
	}
	return e
}

// has reports whether name is on /metrics as a family or a sample; a
// histogram's or summary's _bucket, _sum and _count resolve to the family.
func (e exposition) has(name string) bool {
	if e.types[name] != "" || e.samples[name] {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if fam, ok := strings.CutSuffix(name, suf); ok {
			if typ := e.types[fam]; typ == "histogram" || (typ == "summary" && suf != "_bucket") {
				return true
			}
		}
	}
	return false
}

// TestDashboardQueriesResolve checks that every imagegate_* metric the
// Grafana dashboard queries exists on Caddy's /metrics after traffic, so no
// panel is silently empty because of a typo or a renamed metric.
func TestDashboardQueriesResolve(t *testing.T) {
	d := readDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want a current Grafana schema (≥36)", d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one DS_PROMETHEUS prometheus datasource input", d.Inputs)
	}
	ids := map[int]string{}
	for _, p := range d.panels() {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no targets", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${DS_PROMETHEUS}" {
			t.Errorf("panel %q: datasource %+v, want uid ${DS_PROMETHEUS}", p.Title, p.Datasource)
		}
	}
	queried := d.queriedMetrics()
	if len(queried) == 0 {
		t.Fatalf("%s queries no imagegate_* metric", dashboardPath)
	}

	o := startObserved(t)
	o.send(t, traffic{redirect: 1, json: 1, notModified: 1, notFound: 1, badRequest: 1})
	e := parseExposition(o.scrape(t))

	names := make([]string, 0, len(queried))
	for n := range queried {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		switch {
		case e.has(n):
			t.Logf("ok      %s (%s)", n, strings.Join(queried[n], "; "))
		case strings.HasPrefix(n, "imagegate_redis_"):
			// Exported only by a gateway with Redis (absent, not 0,
			// without one); the fleet test scrapes those.
			t.Logf("fleet   %s (%s)", n, strings.Join(queried[n], "; "))
		default:
			t.Errorf("panel(s) %q query %s, which is not on %s", queried[n], n, o.metrics)
		}
	}
}

// TestPromtoolCheckConfig lints the shipped scrape config.
func TestPromtoolCheckConfig(t *testing.T) {
	promtool := requireTool(t, "promtool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool, "check", "config", promConfigPath).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config %s: %v\n%s", promConfigPath, err, out)
	}
}

// TestPromtoolCheckMetrics lints, after traffic, everything Caddy's /metrics
// serves (Caddy's own families included) with `promtool check metrics`,
// which must report nothing.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := requireTool(t, "promtool")
	o := startObserved(t)
	o.send(t, traffic{redirect: 2, json: 1, notModified: 1, notFound: 1, badRequest: 1})
	text := o.scrape(t)
	if !strings.Contains(text, "# TYPE imagegate_requests_total counter") {
		t.Fatalf("/metrics has no imagegate_requests_total family:\n%s", text)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// promResponse is the envelope of Prometheus' HTTP API.
type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

type promVector struct {
	ResultType string `json:"resultType"`
	Result     []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	} `json:"result"`
}

// promClient talks to the Prometheus under test with short timeouts, so
// that a poll loop's bound holds even if Prometheus hangs.
var promClient = &http.Client{Timeout: 2 * time.Second}

// promQuery runs an instant query; errors are returned, not fatal, so that
// callers can poll while Prometheus starts.
func promQuery(base, query string) (promResponse, error) {
	var pr promResponse
	resp, err := promClient.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
	if err != nil {
		return pr, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return pr, err
	}
	if err := json.Unmarshal(body, &pr); err != nil {
		return pr, fmt.Errorf("status %d: %w: %s", resp.StatusCode, err, body)
	}
	if pr.Status != "success" {
		return pr, fmt.Errorf("%s: %s", pr.ErrorType, pr.Error)
	}
	return pr, nil
}

// sumBy reads an instant vector such as `sum by (label) (…)` into label
// value → sample value ("" for a series without the label).
func sumBy(pr promResponse, label string) (map[string]float64, error) {
	var v promVector
	if err := json.Unmarshal(pr.Data, &v); err != nil {
		return nil, err
	}
	if v.ResultType != "vector" {
		return nil, fmt.Errorf("resultType %q, want vector", v.ResultType)
	}
	m := map[string]float64{}
	for _, r := range v.Result {
		s, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("value %v is not a string", r.Value)
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, err
		}
		m[r.Metric[label]] = f
	}
	return m, nil
}

// startPrometheus runs a real Prometheus on loopback that scrapes target
// every second and evaluates ruleFiles (absolute paths) every second, and
// returns its base URL once it is ready.
func startPrometheus(t *testing.T, target string, ruleFiles ...string) string {
	t.Helper()
	bin := requireTool(t, "prometheus")
	dir := t.TempDir() // before the cleanup below, so removed after Prometheus exits
	cfg := filepath.Join(dir, "prometheus.yml")
	rules := ""
	for _, f := range ruleFiles {
		rules += fmt.Sprintf("  - %q\n", f)
	}
	if rules != "" {
		rules = "rule_files:\n" + rules
	}
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
%s
scrape_configs:
  - job_name: imagegate
    metrics_path: /metrics
    static_configs:
      - targets: ['%s']
`, rules, target)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	logs := &syncBuffer{}
	cmd := exec.Command(bin,
		"--config.file", cfg,
		"--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr,
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				t.Errorf("prometheus (pid %d) did not exit after SIGKILL", cmd.Process.Pid)
			}
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		resp, err := promClient.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) || i >= 200 {
			t.Fatalf("prometheus not ready on %s within 20s (last: %v)\n%s", addr, err, logs.String())
		}
		select {
		case err := <-exited:
			t.Fatalf("prometheus exited before it was ready: %v\n%s", err, logs.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestPrometheusScrapesGateway runs the built binary and a real Prometheus
// on loopback, sends known traffic and asserts, through Prometheus' query
// API, that imagegate_requests_total shows exactly that traffic by outcome.
// It then runs every dashboard query against the same Prometheus, so each is
// valid PromQL.
func TestPrometheusScrapesGateway(t *testing.T) {
	requireTool(t, "prometheus")
	o := startObserved(t)
	prom := startPrometheus(t, o.admin)

	sent := traffic{redirect: 5, json: 1, notModified: 2, notFound: 3, badRequest: 2}
	o.send(t, sent)
	// The outcomes sent, exactly; every other outcome Prometheus reports
	// (the handler pre-initialises them all) must be exactly 0.
	want := map[string]float64{
		"redirect":     float64(sent.redirect),
		"json":         float64(sent.json),
		"not_modified": float64(sent.notModified),
		"not_found":    float64(sent.notFound),
		"bad_request":  float64(sent.badRequest),
	}
	// A 302 and a JSON answer are each one billable delivery; a 304 and a
	// refusal are none.
	wantBillable := float64(sent.redirect + sent.json)

	// The handler counts after writing the response, so a scrape right after
	// the last answer may miss it: poll until both counters show it all.
	const (
		query         = "sum by (outcome) (imagegate_requests_total)"
		billableQuery = "sum(imagegate_billable_deliveries_total)"
	)
	var (
		got      map[string]float64
		billable float64
		lastErr  error
	)
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		got, lastErr = nil, nil
		pr, err := promQuery(prom, query)
		if err == nil {
			got, err = sumBy(pr, "outcome")
		}
		if err == nil {
			pr, err = promQuery(prom, billableQuery)
			if err == nil {
				var b map[string]float64
				if b, err = sumBy(pr, "outcome"); err == nil {
					billable = b[""]
				}
			}
		}
		lastErr = err
		// Counters only grow, so the first answer that has all the traffic
		// is the one to compare.
		complete := err == nil && billable >= wantBillable
		for outcome, w := range want {
			complete = complete && got[outcome] >= w
		}
		if complete {
			break
		}
		if time.Now().After(deadline) || i >= 60 {
			var tb []byte
			if targets, err := promClient.Get(prom + "/api/v1/targets"); err == nil {
				tb, _ = io.ReadAll(io.LimitReader(targets.Body, 1<<16))
				targets.Body.Close()
			}
			t.Fatalf("Prometheus did not show the traffic within 30s: %s = %v, %s = %v (last error: %v)\ntargets: %s",
				query, got, billableQuery, billable, lastErr, tb)
		}
		time.Sleep(500 * time.Millisecond) // bounded poll: at most 60 rounds, 30s
	}
	t.Logf("%s = %v; %s = %v", query, got, billableQuery, billable)
	for outcome, w := range want {
		if got[outcome] != w {
			t.Errorf("outcome %q: Prometheus has %v, want exactly %v", outcome, got[outcome], w)
		}
	}
	for outcome, g := range got {
		if _, sentIt := want[outcome]; !sentIt && g != 0 {
			t.Errorf("outcome %q: Prometheus has %v, want 0 (no such traffic was sent)", outcome, g)
		}
	}
	if billable != wantBillable {
		t.Errorf("billable deliveries: Prometheus has %v, want exactly %v (%d redirects + %d JSON answers)", billable, wantBillable, sent.redirect, sent.json)
	}

	// Every dashboard query is valid PromQL against the scraped data, with
	// Grafana's variables given the values Grafana would give them.
	vars := strings.NewReplacer("$__rate_interval", "1m", "$instance", ".*")
	for _, p := range readDashboard(t).panels() {
		for _, tg := range p.Targets {
			q := vars.Replace(tg.Expr)
			if strings.Contains(q, "$") {
				t.Errorf("panel %q %s: unknown variable in %s", p.Title, tg.RefID, tg.Expr)
				continue
			}
			if _, err := promQuery(prom, q); err != nil {
				var ue *url.Error
				if errors.As(err, &ue) {
					t.Fatalf("querying Prometheus: %v", err)
				}
				t.Errorf("panel %q %s: %s: %v", p.Title, tg.RefID, q, err)
			}
		}
	}
}
