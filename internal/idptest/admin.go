package idptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// adminJSON sends a JSON request to Hydra's admin API, fails t unless the
// answer is 2xx, and decodes the answer into out when out is not nil.
func (p *Provider) adminJSON(t testing.TB, method, path string, in, out any) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			t.Fatalf("idptest: %s %s: %v", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	ctx, cancel := requestContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, p.admin+path, body)
	if err != nil {
		t.Fatalf("idptest: %s %s: %v", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	p.do(t, req, out)
}

// postForm sends form to u, authenticated as c with HTTP Basic when c is
// not nil, fails t unless the answer is 2xx, and decodes the JSON answer
// into out when out is not nil.
func (p *Provider) postForm(t testing.TB, u string, c *Client, form url.Values, out any) {
	t.Helper()
	ctx, cancel := requestContext()
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatalf("idptest: POST %s: %v", u, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c != nil {
		c.setBasicAuth(req)
	}
	p.do(t, req, out)
}

// do sends req and checks and decodes its answer, as adminJSON says.
func (p *Provider) do(t testing.TB, req *http.Request, out any) {
	t.Helper()
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatalf("idptest: %s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("idptest: %s %s: read answer: %v", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode/100 != 2 {
		t.Fatalf("idptest: %s %s answered %s: %s", req.Method, req.URL.Path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("idptest: %s %s: decode %q: %v", req.Method, req.URL.Path, b, err)
		}
	}
}

// queryPath returns path with one query parameter.
func queryPath(path, name, value string) string {
	return fmt.Sprintf("%s?%s=%s", path, name, url.QueryEscape(value))
}
