package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/session"
)

// TestLogsCarryNoSecrets runs two gateways (JWT with owner authorization,
// and introspection) at DEBUG with access logs on, as README recommends
// configuring them, sends good and bad traffic, and then searches every
// line the process wrote for every secret involved: the signing key, the
// JWT secret, the API token, each token and cookie sent, and each sig
// handed out.
func TestLogsCarryNoSecrets(t *testing.T) {
	const (
		apiToken   = "api-token-never-logged-7f3a"
		cookieVal  = "opaque-session-never-logged-91c2"
		accountID  = "0123456789abcdef0123456789abcdef"
		ownedImage = "owned-by-alice"
	)
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+apiToken {
			w.WriteHeader(403)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/"+ownedImage) {
			fmt.Fprint(w, `{"success":true,"errors":[],"messages":[],"result":{"id":"x","meta":{"owner":"alice"}}}`)
			return
		}
		w.WriteHeader(404)
		fmt.Fprint(w, `{"success":false,"errors":[{"code":5404,"message":"Image not found"}],"messages":[],"result":null}`)
	}))
	defer api.Close()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, _ := r.Cookie("sessionid"); c != nil && c.Value == cookieVal {
			w.Header().Set("X-User-Id", "carol")
			return
		}
		w.WriteHeader(401)
	}))
	defer app.Close()

	jwtSite := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	introSite := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	accessLog := `log {
		format filter {
			wrap json
			fields {
				resp_headers>Location delete
			}
		}
	}`
	global := "{\n\tadmin off\n\tpersist_config off\n\tlog {\n\t\tlevel DEBUG\n\t}\n}\n"
	jwtGateway := gatewaySite(jwtSite, accessLog, `variants public
		session jwt {
			cookie session
			header Authorization
			secret {env.JWT_SECRET}
		}
		authorize owner owner
		account_id `+accountID+`
		api_token  {env.CF_API_TOKEN}
		api_url    `+api.URL)
	introspectGateway := gatewaySite(introSite, accessLog, `variants public
		session introspect `+app.URL+` {
			cookie sessionid
		}`)
	srv := start(t, global+jwtGateway+introspectGateway,
		append([]string{"JWT_SECRET=" + e2eJWTSecret, "CF_API_TOKEN=" + apiToken}, gatewayEnv...),
		jwtSite, introSite)

	secrets := []string{testKey, e2eJWTSecret, apiToken, cookieVal}
	alice, _ := session.MintHS256([]byte(e2eJWTSecret), "alice", time.Hour, nil, time.Now())
	bob, _ := session.MintHS256([]byte(e2eJWTSecret), "bob", time.Hour, nil, time.Now())
	forged, _ := session.MintHS256([]byte("another-secret-that-is-32-bytes-long!"), "alice", time.Hour, nil, time.Now())
	secrets = append(secrets, alice, bob, forged)
	// Also the parts of each token, in case something logs a fragment.
	for _, tok := range []string{alice, bob, forged} {
		secrets = append(secrets, strings.Split(tok, ".")[2])
	}

	sigs := map[string]bool{}
	collect := func(resp *http.Response, body string) {
		raw := resp.Header.Get("Location")
		if strings.HasPrefix(body, "{") {
			var b struct{ URL string }
			_ = json.Unmarshal([]byte(body), &b)
			raw = b.URL
		}
		if u, err := url.Parse(raw); err == nil && u.Query().Get("sig") != "" {
			sigs[u.Query().Get("sig")] = true
		}
	}
	requests := []struct {
		site, path string
		hdr        map[string]string
		want       int
	}{
		{jwtSite, "/img/" + ownedImage + "/public", map[string]string{"Cookie": "session=" + alice}, 302},
		{jwtSite, "/img/" + ownedImage + "/public", map[string]string{"Authorization": "Bearer " + alice, "Accept": "application/json"}, 200},
		{jwtSite, "/img/" + ownedImage + "/public", map[string]string{"Cookie": "session=" + bob}, 403},
		{jwtSite, "/img/someone-else/public", map[string]string{"Cookie": "session=" + alice}, 403},
		{jwtSite, "/img/" + ownedImage + "/public", map[string]string{"Cookie": "session=" + forged}, 401},
		{jwtSite, "/img/" + ownedImage + "/nope", map[string]string{"Cookie": "session=" + alice}, 404},
		{introSite, "/img/any/public", map[string]string{"Cookie": "sessionid=" + cookieVal}, 302},
		{introSite, "/img/any/public", map[string]string{"Cookie": "sessionid=wrong-" + cookieVal}, 401},
	}
	// Each request carries its number in the query string (the gateway
	// ignores it) so that its own access-log line can be found.
	marker := func(i int) string { return fmt.Sprintf(`"uri":"%s?e2e-request=%d"`, requests[i].path, i) }
	for i, tc := range requests {
		resp, body := get(t, "GET", fmt.Sprintf("http://%s%s?e2e-request=%d", tc.site, tc.path, i), tc.hdr)
		if resp.StatusCode != tc.want {
			t.Fatalf("%s %v: status %d, want %d", tc.path, tc.hdr, resp.StatusCode, tc.want)
		}
		collect(resp, body)
	}
	if len(sigs) == 0 {
		t.Fatal("no signed URL was handed out, so the sig check below would prove nothing")
	}
	for sig := range sigs {
		secrets = append(secrets, sig)
	}

	// Caddy writes a request's access-log line after answering it, so wait
	// for each request's own line, the last one included, before searching.
	for i := range requests {
		if srv.waitLine(10*time.Second, `"logger":"http.log.access`, marker(i)) == "" {
			t.Fatalf("request %d (%s) has no access-log line after 10s", i, requests[i].path)
		}
	}
	logs := srv.logs.String()
	if !strings.Contains(logs, `"logger":"http.handlers.cf_images"`) || !strings.Contains(logs, `"msg":"served"`) {
		t.Fatalf("the handler's debug lines are missing, so the search proves nothing:\n%s", logs)
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("a secret (%.6s…) appears in the logs", s)
		}
	}
}
