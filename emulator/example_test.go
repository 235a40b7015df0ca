package emulator_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// An emulator with every default, behind a test server: upload a private
// image through the API, then fetch its thumbnail with a signed URL.
func Example() {
	emu, err := emulator.New(emulator.Config{})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(emu)
	defer srv.Close()

	var file bytes.Buffer
	png.Encode(&file, image.NewGray(image.Rect(0, 0, 640, 480)))
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", "photo.png")
	fw.Write(file.Bytes())
	mw.WriteField("requireSignedURLs", "true")
	mw.Close()
	req, _ := http.NewRequest("POST", srv.URL+"/client/v4/accounts/"+emulator.DefaultAccountID+"/images/v1", &body)
	req.Header.Set("Authorization", "Bearer "+emulator.DefaultAPIToken)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	var uploaded struct{ Result struct{ ID string } }
	json.NewDecoder(resp.Body).Decode(&uploaded)
	resp.Body.Close()

	// Sign exactly as Cloudflare documents: HMAC-SHA256 over path?exp=….
	path := "/" + emulator.DefaultAccountHash + "/" + uploaded.Result.ID + "/thumbnail"
	query := "exp=" + strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)
	mac := hmac.New(sha256.New, []byte(emulator.DefaultSigningKey))
	mac.Write([]byte(path + "?" + query))
	signed := srv.URL + path + "?" + query + "&sig=" + hex.EncodeToString(mac.Sum(nil))

	for _, u := range []string{srv.URL + path, signed} {
		resp, err := http.Get(u)
		if err != nil {
			panic(err)
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// Output:
	// 403 text/plain; charset=utf-8
	// 200 image/png
}
