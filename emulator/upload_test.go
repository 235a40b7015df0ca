package emulator_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// pngHeader is a small, well-formed PNG that declares w×h grayscale pixels
// but carries almost no data: a decompression bomb when w×h is large.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8] = 8 // bit depth; colour type 0 (gray), no interlace
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(make([]byte, 4096))
	zw.Close()
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return b.Bytes()
}

func (env *testEnv) postV1(t *testing.T, fields map[string]string, file []byte) (*http.Response, []byte) {
	t.Helper()
	body, ct := form(t, fields, file)
	return env.apiDo(t, "POST", "v1", body, ct)
}

func TestUploadLimitsAndErrorCodes(t *testing.T) {
	env := newEnv(t, nil)
	big := make([]byte, emulator.MaxFileBytes+1)
	copy(big, pngBytes(t, 4, 4))
	png := pngBytes(t, 4, 4)
	truncated := pngBytes(t, 64, 64)
	truncated = truncated[:len(truncated)/2]

	for _, tc := range []struct {
		name   string
		fields map[string]string
		file   []byte
		status int
		code   int
	}{
		{"larger than 10 MB", nil, big, 413, 5413},
		{"12,001 px wide", nil, pngHeader(12001, 10), 413, 5413},
		{"12,001 px high", nil, pngHeader(10, 12001), 413, 5413},
		{"over 100 MP", nil, pngHeader(11000, 10000), 413, 5413},
		{"decompression bomb", nil, pngHeader(100000, 100000), 413, 5413},
		{"not an image", nil, []byte("hello, world"), 415, 5455},
		{"truncated image", nil, truncated, 415, 5455},
		{"svg is not decoded here", nil, []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`), 415, 5455},
		{"no file", nil, nil, 400, 5400},
		{"url not http(s)", map[string]string{"url": "ftp://127.0.0.1/a.png"}, nil, 400, 5400},
		{"url and file", map[string]string{"url": "http://127.0.0.1:1/a.png"}, png, 400, 5400},
		{"metadata over 1024 bytes", map[string]string{"metadata": `{"k":"` + strings.Repeat("x", 1020) + `"}`}, png, 400, 5400},
		{"metadata not an object", map[string]string{"metadata": `[1,2]`}, png, 400, 5400},
		{"metadata not JSON", map[string]string{"metadata": `{`}, png, 400, 5400},
		{"requireSignedURLs not a bool", map[string]string{"requireSignedURLs": "maybe"}, png, 400, 5400},
		{"custom id and private", map[string]string{"id": "mine", "requireSignedURLs": "true"}, png, 400, 5400},
		{"creator too long", map[string]string{"creator": strings.Repeat("c", 1025)}, png, 400, 5400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := env.postV1(t, tc.fields, tc.file)
			wantAPIError(t, resp, b, tc.status, tc.code)
		})
	}

	t.Run("12,000 px is allowed", func(t *testing.T) {
		resp, b := env.postV1(t, nil, pngBytes(t, 12000, 2))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, b)
		}
	})
	t.Run("not multipart", func(t *testing.T) {
		resp, b := env.apiDo(t, "POST", "v1", bytes.NewReader(png), "image/png")
		wantAPIError(t, resp, b, 415, 5415)
		resp, b = env.apiDo(t, "POST", "v1", strings.NewReader(`{"id":"x"}`), "application/json")
		wantAPIError(t, resp, b, 415, 5415)
	})
}

// A bomb is refused from its header: no pixel buffer is ever allocated.
func TestBombRejectedWithoutAllocating(t *testing.T) {
	env := newEnv(t, nil)
	for _, file := range [][]byte{pngHeader(100000, 100000), pngHeader(11000, 10000), pngHeader(12001, 12001)} {
		body, ct := form(t, nil, file)
		req := httptest.NewRequest("POST", "http://127.0.0.1/client/v4/accounts/"+emulator.DefaultAccountID+"/images/v1", body)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
		rec := httptest.NewRecorder()

		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		env.emu.ServeHTTP(rec, req)
		runtime.ReadMemStats(&after)

		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("bomb: %d %s", rec.Code, rec.Body)
		}
		// The smallest of these would need 110 MB of gray pixels.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8<<20 {
			t.Errorf("refusing a bomb allocated %d bytes", alloc)
		}
	}
}

func TestCustomIDRules(t *testing.T) {
	env := newEnv(t, nil)
	png := pngBytes(t, 4, 4)
	for _, id := range []string{
		"/leading", "trailing/", "a//b", "a/./b", "a/../b", ".", "..",
		"0b6ea1cc-30a5-4a36-a0a8-c6d9a1a9d07d", "0B6EA1CC-30A5-4A36-A0A8-C6D9A1A9D07D",
		strings.Repeat("x", 1025), "stats", "variants/x", "a/blob", "what?", "tab\there", "<script>/",
		"bad\xffutf8",
	} {
		t.Run(id[:min(len(id), 20)], func(t *testing.T) {
			resp, b := env.postV1(t, map[string]string{"id": id}, png)
			wantAPIError(t, resp, b, 400, 5400)
			if len(id) > 3 && bytes.Contains(b, []byte(id)) {
				t.Errorf("error body echoes the id: %s", b)
			}
		})
	}
	for _, id := range []string{"a/b/c", "100%-real", "photo.jpg", "ünïcode/ok", strings.Repeat("x", 1024)} {
		resp, b := env.postV1(t, map[string]string{"id": id}, png)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("id %.20q refused: %s", id, b)
			continue
		}
		// It is deliverable under its escaped form.
		if resp, b := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+escapePath(id)+"/public", nil, nil); resp.StatusCode != http.StatusOK {
			t.Errorf("id %.20q not delivered: %d %s", id, resp.StatusCode, b)
		}
	}
}

// escapePath escapes an id the way the delivery URL carries it.
func escapePath(id string) string {
	return strings.NewReplacer("%", "%25").Replace(id)
}

func TestDirectUploadErrors(t *testing.T) {
	env := newEnv(t, nil)
	resp, b := env.apiDo(t, "POST", "v2/direct_upload", strings.NewReader(`{}`), "application/json")
	wantAPIError(t, resp, b, 415, 5415)

	for name, fields := range map[string]map[string]string{
		"bad expiry":      {"expiry": "tomorrow"},
		"custom + signed": {"id": "mine", "requireSignedURLs": "true"},
		"uuid id":         {"id": "0b6ea1cc-30a5-4a36-a0a8-c6d9a1a9d07d"},
	} {
		t.Run(name, func(t *testing.T) {
			body, ct := form(t, fields, nil)
			resp, b := env.apiDo(t, "POST", "v2/direct_upload", body, ct)
			wantAPIError(t, resp, b, 400, 5400)
		})
	}
	body, ct := form(t, nil, pngBytes(t, 2, 2))
	resp, b = env.apiDo(t, "POST", "v2/direct_upload", body, ct)
	wantAPIError(t, resp, b, 400, 5400)
}

// createDraft makes a direct upload and returns its upload path.
func (env *testEnv) createDraft(t *testing.T, fields map[string]string) (id, uploadPath string) {
	t.Helper()
	body, ct := form(t, fields, nil)
	resp, b := env.apiDo(t, "POST", "v2/direct_upload", body, ct)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("direct upload: %d %s", resp.StatusCode, b)
	}
	e := decodeEnvelope(t, b)
	if string(e.ResultInfo) != "null" {
		t.Errorf("direct upload result_info = %s, want null", e.ResultInfo)
	}
	var res struct {
		ID        string `json:"id"`
		UploadURL string `json:"uploadURL"`
	}
	if err := jsonUnmarshal(e.Result, &res); err != nil {
		t.Fatal(err)
	}
	return res.ID, strings.TrimPrefix(res.UploadURL, env.srv.URL)
}

func (env *testEnv) postFile(t *testing.T, path string, file []byte) (*http.Response, []byte) {
	t.Helper()
	body, ct := form(t, nil, file)
	return env.do(t, "POST", path, body, http.Header{"Content-Type": {ct}})
}

func TestUploadURLLifecycle(t *testing.T) {
	env := newEnv(t, nil)

	t.Run("expires after the default 30 minutes", func(t *testing.T) {
		id, up := env.createDraft(t, nil)
		env.clock.Add(30*time.Minute - time.Second)
		if resp, b := env.apiDo(t, "GET", "v1/"+id, nil, ""); resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"draft":true`) {
			t.Fatalf("live draft: %d %s", resp.StatusCode, b)
		}
		env.clock.Add(time.Second)
		resp, b := env.postFile(t, up, pngBytes(t, 2, 2))
		wantAPIError(t, resp, b, http.StatusGone, 5400)
		resp, b = env.postFile(t, up, pngBytes(t, 2, 2))
		wantAPIError(t, resp, b, http.StatusNotFound, 5404)
		resp, b = env.apiDo(t, "GET", "v1/"+id, nil, "")
		wantAPIError(t, resp, b, http.StatusNotFound, 5404)
	})

	t.Run("explicit expiry", func(t *testing.T) {
		_, up := env.createDraft(t, map[string]string{"expiry": env.clock.Now().Add(5 * time.Minute).Format(time.RFC3339)})
		env.clock.Add(5 * time.Minute)
		resp, b := env.postFile(t, up, pngBytes(t, 2, 2))
		wantAPIError(t, resp, b, http.StatusGone, 5400)
	})

	t.Run("a refused file does not use up the URL", func(t *testing.T) {
		_, up := env.createDraft(t, nil)
		resp, b := env.postFile(t, up, []byte("not an image"))
		wantAPIError(t, resp, b, 415, 5455)
		resp, b = env.postFile(t, up, pngHeader(20000, 20000))
		wantAPIError(t, resp, b, 413, 5413)
		if resp, b := env.postFile(t, up, pngBytes(t, 2, 2)); resp.StatusCode != http.StatusOK {
			t.Fatalf("good file after a refused one: %d %s", resp.StatusCode, b)
		}
		resp, b = env.postFile(t, up, pngBytes(t, 2, 2))
		wantAPIError(t, resp, b, http.StatusConflict, 5400)
	})

	t.Run("wrong hash and unknown id", func(t *testing.T) {
		_, up := env.createDraft(t, nil)
		resp, b := env.postFile(t, strings.Replace(up, emulator.DefaultAccountHash, "other", 1), pngBytes(t, 2, 2))
		wantAPIError(t, resp, b, http.StatusForbidden, 5403)
		resp, b = env.postFile(t, "/"+emulator.DefaultAccountHash+"/0b6ea1cc-30a5-4a36-a0a8-c6d9a1a9d07d", pngBytes(t, 2, 2))
		wantAPIError(t, resp, b, http.StatusNotFound, 5404)
		body := strings.NewReader("raw bytes")
		resp, b = env.do(t, "POST", up, body, http.Header{"Content-Type": {"image/png"}})
		wantAPIError(t, resp, b, 415, 5415)
	})

	t.Run("CORS preflight", func(t *testing.T) {
		_, up := env.createDraft(t, nil)
		resp, _ := env.do(t, "OPTIONS", up, nil, http.Header{"Origin": {"http://app.test"}, "Access-Control-Request-Method": {"POST"}})
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
			!strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
			t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
		}
	})
}

// Of several concurrent uploads to one URL exactly one succeeds.
func TestUploadURLSingleUseUnderRace(t *testing.T) {
	env := newEnv(t, nil)
	_, up := env.createDraft(t, nil)
	file := pngBytes(t, 8, 8)
	const n = 8
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			body, ct := form(t, nil, file)
			req, _ := http.NewRequest("POST", env.srv.URL+up, body)
			req.Header.Set("Content-Type", ct)
			resp, err := env.srv.Client().Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	ok, conflict := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusOK:
			ok++
		case http.StatusConflict:
			conflict++
		}
	}
	if ok != 1 || conflict != n-1 {
		t.Fatalf("status codes %v: want one 200 and %d 409", codes, n-1)
	}
}

func TestAPIRoutingErrors(t *testing.T) {
	env := newEnv(t, nil)
	resp, b := env.apiDo(t, "GET", "v3/nothing", nil, "")
	wantAPIError(t, resp, b, 404, 7003)
	resp, b = env.apiDo(t, "PUT", "v1", nil, "")
	wantAPIError(t, resp, b, 405, 7001)
	resp, b = env.do(t, "GET", "/client/v4/zones", nil, http.Header{"Authorization": {"Bearer " + emulator.DefaultAPIToken}})
	wantAPIError(t, resp, b, 404, 7003)
	resp, b = env.apiDo(t, "PATCH", "v1/x", strings.NewReader(`{"unknown":1}`), "application/json")
	wantAPIError(t, resp, b, 400, 5400)
}

func TestImageQuota(t *testing.T) {
	env := newEnv(t, func(c *emulator.Config) { c.ImageQuota = 2 })
	env.upload(t, false, pngBytes(t, 2, 2))
	env.createDraft(t, nil) // a live draft holds an id too
	resp, b := env.postV1(t, nil, pngBytes(t, 2, 2))
	wantAPIError(t, resp, b, 403, 5453)
}

func TestBlob(t *testing.T) {
	env := newEnv(t, nil)
	file := jpegBytes(t, 30, 30)
	id := env.upload(t, false, file)
	resp, b := env.apiDo(t, "GET", "v1/"+id+"/blob", nil, "")
	if resp.StatusCode != http.StatusOK || !bytes.Equal(b, file) {
		t.Fatalf("blob: %d, %d bytes", resp.StatusCode, len(b))
	}
}
