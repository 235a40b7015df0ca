package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
)

// devAPIToken is the emulator's default API token; its default account id
// is emuAccountID.
const devAPIToken = "dev-api-token"

// emuUpload uploads data to the emulator at addr through its Images API,
// with the given metadata JSON (none if empty), and returns the image id.
func emuUpload(t *testing.T, addr string, data []byte, metadata string) string {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	fw, _ := w.CreateFormFile("file", "photo.png")
	_, _ = fw.Write(data)
	if metadata != "" {
		_ = w.WriteField("metadata", metadata)
	}
	_ = w.Close()
	req, err := http.NewRequest("POST", "http://"+addr+"/client/v4/accounts/"+emuAccountID+"/images/v1", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+devAPIToken)
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var env struct{ Result struct{ ID string } }
	if resp.StatusCode != 200 || json.Unmarshal(b, &env) != nil || env.Result.ID == "" {
		t.Fatalf("emulator upload: status %d %s", resp.StatusCode, b)
	}
	return env.Result.ID
}

// emuAPIGet makes one authenticated GET on the emulator's Images API
// (sub is the path after images/) and returns the response status.
func emuAPIGet(t *testing.T, addr, sub string) *http.Response {
	t.Helper()
	resp, _ := get(t, "GET", "http://"+addr+"/client/v4/accounts/"+emuAccountID+"/images/"+sub,
		map[string]string{"Authorization": "Bearer " + devAPIToken})
	return resp
}
