package e2e

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testHash = "AccHash_x1"
	testKey  = "e2e-signing-key"
)

// TestGatewayRedirect is the core issue's acceptance test, through the
// built binary: a signed 302 that verifies independently, exp a multiple
// of window and at least min_remaining ahead, identical Locations for two
// requests in a row, and the error statuses.
func TestGatewayRedirect(t *testing.T) {
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	start(t, fmt.Sprintf(`{
	admin off
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
		cache_size      1000
		mode            redirect
		session         none
	}
	respond "not an image" 200
}
`, addr), gatewayEnv, addr)

	base := "http://" + addr
	const id = "2cdc28f0-017a-49c4-9ed7-87056c83901f"
	before := time.Now()
	resp, _ := get(t, "GET", base+"/img/"+id+"/thumbnail", nil)
	if resp.StatusCode != 302 {
		t.Fatalf("status %d, want 302", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme+"://"+u.Host+u.Path != "http://127.0.0.1:1/"+testHash+"/"+id+"/thumbnail" {
		t.Fatalf("Location %s does not name the image on the delivery host", loc)
	}
	exp, err := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write([]byte(u.EscapedPath() + "?exp=" + strconv.FormatInt(exp, 10)))
	if u.Query().Get("sig") != hex.EncodeToString(mac.Sum(nil)) {
		t.Fatalf("sig in %s does not verify", loc)
	}
	if exp%3600 != 0 {
		t.Errorf("exp %d is not a multiple of 1h", exp)
	}
	if time.Unix(exp, 0).Sub(before) < 5*time.Minute {
		t.Errorf("exp %d is less than 5m ahead", exp)
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.HasPrefix(cc, "private, max-age=") || resp.Header.Get("Vary") != "Accept" {
		t.Errorf("Cache-Control %q Vary %q", cc, resp.Header.Get("Vary"))
	}
	resp2, _ := get(t, "GET", base+"/img/"+id+"/thumbnail", nil)
	if resp2.Header.Get("Location") != loc {
		t.Errorf("second Location differs:\n%s\n%s", loc, resp2.Header.Get("Location"))
	}

	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/img/" + id + "/avatar", 302},
		{"GET", "/img/a%2F..%2Fb/public", 400},
		{"GET", "/img/" + id, 400},
		{"GET", "/img/" + id + "/w=400", 400},
		{"GET", "/img/" + id + "/original", 404},
		{"POST", "/img/" + id + "/public", 405},
		{"GET", "/elsewhere", 200},
	} {
		resp, body := get(t, tc.method, base+tc.path, nil)
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d (%q)", tc.method, tc.path, resp.StatusCode, tc.want, body)
		}
		if tc.want >= 400 && strings.Contains(resp.Header.Get("Location")+body, "sig=") {
			t.Errorf("%s %s: an error carries a signature", tc.method, tc.path)
		}
	}
}
