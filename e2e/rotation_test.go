package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/signer"
)

// Signing-key rotation as an operator runs it. A Cloudflare account holds
// at most two signing keys, so a rotation is: add the new key, switch the
// gateway to it and reload, let URLs signed with the old key run out
// (they still verify while both keys exist), then delete the old key.
// Here key 1 is the emulator's configured key (named "default") and key 2
// is made through the emulator's API.

// emulatorKeys calls the emulator's signing-key API, PUT or DELETE on a
// key's name, or GET on the list when name is empty, and returns the
// account's keys afterwards, by name.
func emulatorKeys(t *testing.T, emulator, method, name string) map[string]string {
	t.Helper()
	u := "http://" + emulator + "/client/v4/accounts/" + emuAccountID + "/images/v1/keys"
	if name != "" {
		u += "/" + name
	}
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+emuAPIToken)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		Success bool
		Result  struct {
			Keys []struct{ Name, Value string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || resp.StatusCode != 200 || !env.Success {
		t.Fatalf("%s %s: status %d, %v", method, u, resp.StatusCode, err)
	}
	keys := map[string]string{}
	for _, k := range env.Result.Keys {
		keys[k.Name] = k.Value
	}
	return keys
}

// signedWith reports whether loc is a delivery URL whose sig is key's
// HMAC of its path and exp.
func signedWith(loc, key string) bool {
	u, err := url.Parse(loc)
	if err != nil {
		return false
	}
	exp, err := strconv.ParseInt(u.Query().Get("exp"), 10, 64)
	return err == nil && u.Query().Get("sig") == signer.Sign([]byte(key), u.EscapedPath(), exp)
}

// reloadCLI runs `imagegate reload` with caddyfile against the admin
// endpoint, as an operator would.
func reloadCLI(t *testing.T, admin, caddyfile string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "reload", "--config", path, "--adapter", "caddyfile", "--address", admin)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_DATA_HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("imagegate reload: %v\n%s", err, out)
	}
}

// keyInfo returns the key_id values of imagegate_signing_key_info that are 1.
func keyInfo(t *testing.T, admin string) []string {
	t.Helper()
	_, body := get(t, "GET", "http://"+admin+"/metrics", nil)
	var ids []string
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, `imagegate_signing_key_info{key_id="`); ok && strings.HasSuffix(rest, "} 1") {
			ids = append(ids, strings.TrimSuffix(rest, `"} 1`))
		}
	}
	return ids
}

// rotationTraffic asks the gateway for one image again and again, as
// browsers would, and sorts the answers by the key that signed them.
type rotationTraffic struct {
	key1, key2, retried, failed atomic.Int64
	// afterReload counts answers to requests sent after the reload
	// returned; staleAfterReload those of them still signed with key 1.
	afterReload, staleAfterReload atomic.Int64
	reloaded                      atomic.Bool
	firstFailure                  atomic.Value
	stop                          chan struct{}
	wg                            sync.WaitGroup
}

// startRotationTraffic starts two clients that ask for target with hdr
// until tr.stop is closed, and verifies each Location against key1 and
// key2.
func startRotationTraffic(target string, hdr map[string]string, key1, key2 string) *rotationTraffic {
	tr := &rotationTraffic{stop: make(chan struct{})}
	// A fresh connection per request, retried on a transport error as
	// browsers retry idempotent requests: a reload swaps listeners, and a
	// connection still queued on the old socket is reset before any
	// handler sees it (see TestReloadUnderTraffic).
	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: noRedirect.CheckRedirect,
		Transport:     &http.Transport{DisableKeepAlives: true},
	}
	fail := func(why string) {
		tr.failed.Add(1)
		tr.firstFailure.CompareAndSwap(nil, why)
	}
	for range 2 {
		tr.wg.Go(func() {
			for range 20_000 { // bounded; stopped much earlier
				select {
				case <-tr.stop:
					return
				default:
				}
				after := tr.reloaded.Load()
				var resp *http.Response
				var err error
				for attempt := range 3 {
					if attempt > 0 {
						tr.retried.Add(1)
					}
					req, _ := http.NewRequest("GET", target, nil)
					for k, v := range hdr {
						req.Header.Set(k, v)
					}
					if resp, err = client.Do(req); err == nil {
						resp.Body.Close()
						break
					}
				}
				switch {
				case err != nil:
					fail(err.Error())
				case resp.StatusCode != http.StatusFound:
					fail(fmt.Sprint("status ", resp.StatusCode))
				case signedWith(resp.Header.Get("Location"), key1):
					tr.key1.Add(1)
					if after {
						tr.afterReload.Add(1)
						tr.staleAfterReload.Add(1)
					}
				case signedWith(resp.Header.Get("Location"), key2):
					tr.key2.Add(1)
					if after {
						tr.afterReload.Add(1)
					}
				default:
					fail("a Location signed with neither key")
				}
			}
		})
	}
	return tr
}

// pollUntil polls cond every 5ms for up to d.
func pollUntil(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// TestRotationRedirectMode rotates the signing key of a redirect-mode
// gateway under traffic: no request fails across the reload, URLs signed
// with key 1 keep working while the account holds both keys, answers after
// the reload are signed with key 2, the key metric follows, and once key 1
// is deleted its URLs are refused while key 2's work.
func TestRotationRedirectMode(t *testing.T) {
	dir := t.TempDir()
	key1File, key2File := filepath.Join(dir, "key-1"), filepath.Join(dir, "key-2")
	if err := os.WriteFile(key1File, []byte(emuKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := func(file string) proxyRigConfig { return proxyRigConfig{key: "signing_key_file " + file} }
	r := startProxyRig(t, withKey(key1File))
	alice := mintToken(t, r.jwtSecret, "--sub", "alice")
	up := upload(t, r.gateway, alice)
	thumb := "http://" + r.gateway + "/img/" + up.ID + "/thumbnail"
	cookie := hdrs("Cookie", "session="+alice)
	fp1 := signer.Fingerprint([]byte(emuKey))

	// (1) Serving with key 1.
	resp, _ := get(t, "GET", thumb, cookie)
	loc1 := resp.Header.Get("Location")
	if resp.StatusCode != 302 || !signedWith(loc1, emuKey) {
		t.Fatalf("before the rotation: status %d, Location %q not signed with key 1", resp.StatusCode, loc1)
	}
	if resp, _ := get(t, "GET", loc1, nil); resp.StatusCode != 200 {
		t.Fatalf("key 1's URL at the emulator: status %d", resp.StatusCode)
	}
	if ids := keyInfo(t, r.admin); len(ids) != 1 || ids[0] != fp1 {
		t.Fatalf("imagegate_signing_key_info shows %v, want [%s]", ids, fp1)
	}

	// (2) Key 2 is added to the account, which now holds its two.
	keys := emulatorKeys(t, r.emulator, "PUT", "rotated")
	key2 := keys["rotated"]
	if len(keys) != 2 || keys["default"] != emuKey || key2 == "" {
		t.Fatalf("after adding key 2 the account holds %d keys", len(keys))
	}
	if err := os.WriteFile(key2File, []byte(key2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fp2 := signer.Fingerprint([]byte(key2))

	// (3) The gateway switches to key 2 with a reload, under traffic.
	tr := startRotationTraffic(thumb, cookie, emuKey, key2)
	t.Cleanup(func() {
		select {
		case <-tr.stop:
		default:
			close(tr.stop)
		}
		tr.wg.Wait()
	})
	pollUntil(5*time.Second, func() bool { return tr.key1.Load() >= 50 })
	began := time.Now()
	reloadCLI(t, r.admin, r.caddyfile(withKey(key2File)))
	took := time.Since(began)
	tr.reloaded.Store(true)
	pollUntil(5*time.Second, func() bool { return tr.afterReload.Load() >= 50 })
	close(tr.stop)
	tr.wg.Wait()
	t.Logf("rotation under traffic: %d answers signed with key 1, %d with key 2 (%d of them sent after the reload returned); %d connection-level retries; reload took %v",
		tr.key1.Load(), tr.key2.Load(), tr.afterReload.Load(), tr.retried.Load(), took)
	if n := tr.failed.Load(); n != 0 {
		t.Fatalf("%d requests failed across the reload; first: %v", n, tr.firstFailure.Load())
	}
	if tr.key1.Load() == 0 || tr.afterReload.Load() == 0 {
		t.Fatal("the traffic did not span the reload")
	}
	if n := tr.staleAfterReload.Load(); n != 0 {
		t.Errorf("%d requests sent after the reload returned got a key 1 URL", n)
	}

	resp, _ = get(t, "GET", thumb, cookie)
	loc2 := resp.Header.Get("Location")
	u, _ := url.Parse(loc2)
	exp := u.Query().Get("exp")
	path := "/" + emuHash + "/" + up.ID + "/thumbnail"
	expN, _ := strconv.ParseInt(exp, 10, 64)
	if want := "http://" + r.emulator + path + "?exp=" + exp + "&sig=" + signer.Sign([]byte(key2), path, expN); loc2 != want {
		t.Fatalf("after the reload: Location\n%s\nwant\n%s", loc2, want)
	}
	// The overlap: both keys' URLs verify.
	for name, loc := range map[string]string{"key 1": loc1, "key 2": loc2} {
		if resp, _ := get(t, "GET", loc, nil); resp.StatusCode != 200 {
			t.Errorf("during the overlap, %s's URL: status %d, want 200", name, resp.StatusCode)
		}
	}
	// The key metric names key 2 only, once the old config is gone.
	var ids []string
	if !pollUntil(10*time.Second, func() bool { ids = keyInfo(t, r.admin); return len(ids) == 1 && ids[0] == fp2 }) {
		t.Errorf("imagegate_signing_key_info shows %v after the reload, want [%s] (key 1 is %s)", ids, fp2, fp1)
	}

	// (4) Key 1 is deleted: its URLs are refused, key 2's still work.
	if keys := emulatorKeys(t, r.emulator, "DELETE", "default"); len(keys) != 1 || keys["rotated"] != key2 {
		t.Fatalf("after deleting key 1 the account holds %d keys", len(keys))
	}
	if resp, body := get(t, "GET", loc1, nil); resp.StatusCode != 403 {
		t.Errorf("key 1's URL after its deletion: status %d %q, want 403", resp.StatusCode, body)
	}
	resp, _ = get(t, "GET", thumb, cookie)
	if resp.Header.Get("Location") != loc2 {
		t.Errorf("the gateway's answer changed after the deletion: %q", resp.Header.Get("Location"))
	}
	if resp, _ := get(t, "GET", loc2, nil); resp.StatusCode != 200 {
		t.Errorf("key 2's URL after key 1's deletion: status %d, want 200", resp.StatusCode)
	}
}

// TestRotationKeepsByteCache: in proxy mode the byte cache's key holds no
// signature, so a rotation keeps what was cached under key 1. After the
// reload to key 2 and the deletion of key 1, a cached image costs no
// delivery, and one not yet cached is fetched with key 2.
func TestRotationKeepsByteCache(t *testing.T) {
	dir := t.TempDir()
	key1File, key2File := filepath.Join(dir, "key-1"), filepath.Join(dir, "key-2")
	if err := os.WriteFile(key1File, []byte(emuKey), 0o600); err != nil {
		t.Fatal(err)
	}
	withKey := func(file string) proxyRigConfig {
		return proxyRigConfig{key: "signing_key_file " + file, settings: `mode proxy {
			cache_size 16MiB
		}`}
	}
	r := startProxyRig(t, withKey(key1File))
	alice := mintToken(t, r.jwtSecret, "--sub", "alice")
	up := upload(t, r.gateway, alice)
	img := "http://" + r.gateway + "/img/" + up.ID
	view := hdrs("Cookie", "session="+alice, "Accept", acceptChrome)

	resp, first := get(t, "GET", img+"/public", view)
	if resp.StatusCode != 200 || deliveries(t, r.admin, "public") != 1 {
		t.Fatalf("with key 1: status %d, %v deliveries; want 200 and 1", resp.StatusCode, deliveries(t, r.admin, "public"))
	}

	key2 := emulatorKeys(t, r.emulator, "PUT", "rotated")["rotated"]
	if err := os.WriteFile(key2File, []byte(key2), 0o600); err != nil {
		t.Fatal(err)
	}
	reloadCLI(t, r.admin, r.caddyfile(withKey(key2File)))
	var ids []string
	if !pollUntil(10*time.Second, func() bool {
		ids = keyInfo(t, r.admin)
		return len(ids) == 1 && ids[0] == signer.Fingerprint([]byte(key2))
	}) {
		t.Fatalf("imagegate_signing_key_info shows %v after the reload, want key 2 only", ids)
	}
	emulatorKeys(t, r.emulator, "DELETE", "default")

	resp, body := get(t, "GET", img+"/public", view)
	if resp.StatusCode != 200 || body != first {
		t.Fatalf("after the rotation: status %d, %d bytes; want the cached %d bytes", resp.StatusCode, len(body), len(first))
	}
	if n := deliveries(t, r.admin, "public"); n != 1 {
		t.Errorf("after the rotation: %v deliveries, want still 1 (the byte cache was dropped or keyed by signature)", n)
	}
	if resp, _ := get(t, "GET", img+"/thumbnail", view); resp.StatusCode != 200 || deliveries(t, r.admin, "thumbnail") != 1 {
		t.Errorf("an image not yet cached, fetched with key 2: status %d, %v deliveries; want 200 and 1", resp.StatusCode, deliveries(t, r.admin, "thumbnail"))
	}
}
