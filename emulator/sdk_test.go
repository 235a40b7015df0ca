package emulator_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/images"
	"github.com/cloudflare/cloudflare-go/v6/option"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

// These tests drive the emulator with Cloudflare's official Go SDK: if the
// SDK and the emulator disagree, the emulator is wrong.

var acct = cloudflare.F(emulator.DefaultAccountID)

// namedReader gives the SDK a filename for the multipart file part.
type namedReader struct {
	io.Reader
	name string
}

func (n namedReader) Filename() string { return n.name }

// wantSDKError checks that err is the SDK's API error with status and code.
func wantSDKError(t *testing.T, err error, status int, code int64) {
	t.Helper()
	var apiErr *cloudflare.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("got error %v, want an API error %d/%d", err, status, code)
	}
	if apiErr.StatusCode != status || len(apiErr.Errors) != 1 || apiErr.Errors[0].Code != code {
		t.Fatalf("got %d %+v, want %d with code %d", apiErr.StatusCode, apiErr.Errors, status, code)
	}
}

func TestSDKUploadDetailsUpdateDelete(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()

	img, err := env.api.V1.New(ctx, images.V1NewParams{
		AccountID: acct,
		File:      cloudflare.F[io.Reader](namedReader{bytes.NewReader(pngBytes(t, 40, 30)), "cat.png"}),
		Metadata:  cloudflare.F[any](map[string]any{"owner": "u1"}),
		Creator:   cloudflare.F("user-1"),
	})
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if len(img.ID) != 36 || img.Filename != "cat.png" || img.Creator != "user-1" || img.RequireSignedURLs {
		t.Errorf("uploaded image = %+v", img)
	}
	if !img.Uploaded.Equal(start) {
		t.Errorf("uploaded = %v, want the injected clock's %v", img.Uploaded, start)
	}
	if !strings.Contains(img.JSON.RawJSON(), `"uploaded":"2030-01-02T03:04:05.000Z"`) {
		t.Errorf("uploaded is not RFC 3339 with milliseconds: %s", img.JSON.RawJSON())
	}
	if m, _ := img.Meta.(map[string]any); m["owner"] != "u1" {
		t.Errorf("meta = %#v, want owner u1", img.Meta)
	}
	wantVariants := []string{
		env.srv.URL + "/" + emulator.DefaultAccountHash + "/" + img.ID + "/avatar",
		env.srv.URL + "/" + emulator.DefaultAccountHash + "/" + img.ID + "/public",
		env.srv.URL + "/" + emulator.DefaultAccountHash + "/" + img.ID + "/thumbnail",
	}
	if !slices.Equal(img.Variants, wantVariants) {
		t.Errorf("variants = %v, want %v", img.Variants, wantVariants)
	}

	got, err := env.api.V1.Get(ctx, img.ID, images.V1GetParams{AccountID: acct})
	if err != nil || got.ID != img.ID || got.Filename != "cat.png" {
		t.Fatalf("details: %+v, %v", got, err)
	}
	if strings.Contains(got.JSON.RawJSON(), `"draft"`) {
		t.Errorf("an uploaded image must not carry draft: %s", got.JSON.RawJSON())
	}

	edited, err := env.api.V1.Edit(ctx, img.ID, images.V1EditParams{
		AccountID:         acct,
		RequireSignedURLs: cloudflare.F(true),
		Metadata:          cloudflare.F[any](map[string]any{"owner": "u2"}),
	})
	if err != nil {
		t.Fatalf("edit: %v", err)
	}
	if m, _ := edited.Meta.(map[string]any); !edited.RequireSignedURLs || m["owner"] != "u2" || edited.Creator != "user-1" {
		t.Errorf("edited = %+v; want private, owner u2, creator unchanged", edited)
	}

	if _, err := env.api.V1.Delete(ctx, img.ID, images.V1DeleteParams{AccountID: acct}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = env.api.V1.Get(ctx, img.ID, images.V1GetParams{AccountID: acct})
	wantSDKError(t, err, http.StatusNotFound, 5404)
	_, err = env.api.V1.Delete(ctx, img.ID, images.V1DeleteParams{AccountID: acct})
	wantSDKError(t, err, http.StatusNotFound, 5404)
}

func TestSDKCustomIDCannotBePrivate(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	_, err := env.api.V1.New(ctx, images.V1NewParams{
		AccountID:         acct,
		ID:                cloudflare.F("folder/photo.jpg"),
		File:              cloudflare.F[io.Reader](bytes.NewReader(pngBytes(t, 4, 4))),
		RequireSignedURLs: cloudflare.F(true),
	})
	wantSDKError(t, err, http.StatusBadRequest, 5400)

	img, err := env.api.V1.New(ctx, images.V1NewParams{
		AccountID: acct,
		ID:        cloudflare.F("folder/photo.jpg"),
		File:      cloudflare.F[io.Reader](bytes.NewReader(pngBytes(t, 4, 4))),
	})
	if err != nil || img.ID != "folder/photo.jpg" {
		t.Fatalf("custom id upload: %+v, %v", img, err)
	}
	_, err = env.api.V1.Edit(ctx, img.ID, images.V1EditParams{AccountID: acct, RequireSignedURLs: cloudflare.F(true)})
	wantSDKError(t, err, http.StatusBadRequest, 5400)

	// The same id again is refused; details work through the slash.
	_, err = env.api.V1.New(ctx, images.V1NewParams{
		AccountID: acct,
		ID:        cloudflare.F("folder/photo.jpg"),
		File:      cloudflare.F[io.Reader](bytes.NewReader(pngBytes(t, 4, 4))),
	})
	wantSDKError(t, err, http.StatusBadRequest, 5400)
	if got, err := env.api.V1.Get(ctx, "folder/photo.jpg", images.V1GetParams{AccountID: acct}); err != nil || got.ID != img.ID {
		t.Fatalf("details of a custom id: %+v, %v", got, err)
	}
}

func TestSDKDirectUploadAndOneTimeURL(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()

	du, err := env.api.V2.DirectUploads.New(ctx, images.V2DirectUploadNewParams{
		AccountID:         acct,
		RequireSignedURLs: cloudflare.F(true),
		Metadata:          cloudflare.F[any](map[string]any{"owner": "u7"}),
		Expiry:            cloudflare.F(start.Add(time.Hour)),
		Creator:           cloudflare.F("u7"),
	})
	if err != nil {
		t.Fatalf("direct upload: %v", err)
	}
	wantURL := env.srv.URL + "/" + emulator.DefaultAccountHash + "/" + du.ID
	if len(du.ID) != 36 || du.UploadURL != wantURL {
		t.Fatalf("direct upload = %+v, want uploadURL %s", du, wantURL)
	}

	// The draft is visible by id with draft:true and left out of lists.
	draft, err := env.api.V1.Get(ctx, du.ID, images.V1GetParams{AccountID: acct})
	if err != nil || !draft.RequireSignedURLs || !strings.Contains(draft.JSON.RawJSON(), `"draft":true`) {
		t.Fatalf("draft details: %+v, %v", draft, err)
	}
	list, err := env.api.V2.List(ctx, images.V2ListParams{AccountID: acct})
	if err != nil || len(list.Images) != 0 {
		t.Fatalf("list with only a draft: %+v, %v", list, err)
	}
	// Nothing to deliver yet.
	if resp, _ := env.do(t, "GET", "/"+emulator.DefaultAccountHash+"/"+du.ID+"/avatar", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("delivering a draft: %d, want 404", resp.StatusCode)
	}

	// The browser's upload: no credentials, multipart field "file".
	body, ct := form(t, nil, jpegBytes(t, 64, 48))
	resp, b := env.do(t, "POST", strings.TrimPrefix(du.UploadURL, env.srv.URL), body, http.Header{"Content-Type": {ct}})
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("upload to uploadURL: %d %s", resp.StatusCode, b)
	}
	up := decodeEnvelope(t, b)
	if !up.Success || strings.Contains(string(up.Result), "draft") {
		t.Fatalf("upload result: %s", b)
	}

	img, err := env.api.V1.Get(ctx, du.ID, images.V1GetParams{AccountID: acct})
	if err != nil || strings.Contains(img.JSON.RawJSON(), "draft") || img.Creator != "u7" || !img.RequireSignedURLs {
		t.Fatalf("image after upload: %+v, %v", img, err)
	}
	if m, _ := img.Meta.(map[string]any); m["owner"] != "u7" {
		t.Errorf("meta after upload = %#v", img.Meta)
	}

	// Single use.
	body, ct = form(t, nil, jpegBytes(t, 8, 8))
	resp, b = env.do(t, "POST", strings.TrimPrefix(du.UploadURL, env.srv.URL), body, http.Header{"Content-Type": {ct}})
	wantAPIError(t, resp, b, http.StatusConflict, 5400)
}

func TestSDKDirectUploadExpiryWindow(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		expiry time.Time
		ok     bool
	}{
		{start.Add(time.Minute), false},
		{start.Add(2 * time.Minute), true},
		{start.Add(6 * time.Hour), true},
		{start.Add(6*time.Hour + time.Second), false},
		{start.Add(-time.Hour), false},
	} {
		_, err := env.api.V2.DirectUploads.New(ctx, images.V2DirectUploadNewParams{AccountID: acct, Expiry: cloudflare.F(tc.expiry)})
		if tc.ok && err != nil {
			t.Errorf("expiry %v: %v", tc.expiry.Sub(start), err)
		}
		if !tc.ok {
			wantSDKError(t, err, http.StatusBadRequest, 5400)
		}
	}
}

func TestSDKListV1AndV2(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	var ids []string // in upload order
	for i := range 25 {
		creator := "even"
		if i%2 == 1 {
			creator = "odd"
		}
		img, err := env.api.V1.New(ctx, images.V1NewParams{
			AccountID: acct,
			File:      cloudflare.F[io.Reader](bytes.NewReader(pngBytes(t, 2, 2))),
			Creator:   cloudflare.F(creator),
		})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, img.ID)
		if i%5 != 4 { // several images share an instant; order must still be total
			env.clock.Add(time.Second)
		}
	}
	newestFirst := slices.Clone(ids)
	slices.Reverse(newestFirst)

	// v2: continuation tokens walk every image exactly once, newest first.
	var walked []string
	token := ""
	for page := 0; page < 10; page++ {
		p := images.V2ListParams{AccountID: acct, PerPage: cloudflare.F(10.0)}
		if token != "" {
			p.ContinuationToken = cloudflare.F(token)
		}
		res, err := env.api.V2.List(ctx, p)
		if err != nil {
			t.Fatalf("v2 list: %v", err)
		}
		for _, img := range res.Images {
			walked = append(walked, img.ID)
		}
		token = res.ContinuationToken
		if token == "" {
			break
		}
	}
	if !slices.Equal(walked, newestFirst) {
		t.Errorf("v2 walk = %v\nwant %v", walked, newestFirst)
	}
	asc, err := env.api.V2.List(ctx, images.V2ListParams{AccountID: acct, SortOrder: cloudflare.F(images.V2ListParamsSortOrderAsc)})
	if err != nil || len(asc.Images) != 25 || asc.Images[0].ID != ids[0] || asc.ContinuationToken != "" {
		t.Errorf("v2 asc: %d images, first %v, token %q, %v", len(asc.Images), asc.Images[0].ID, asc.ContinuationToken, err)
	}
	odd, err := env.api.V2.List(ctx, images.V2ListParams{AccountID: acct, Creator: cloudflare.F("odd")})
	if err != nil || len(odd.Images) != 12 {
		t.Errorf("v2 creator filter: %d images, %v", len(odd.Images), err)
	}
	_, err = env.api.V2.List(ctx, images.V2ListParams{AccountID: acct, PerPage: cloudflare.F(5.0)})
	wantSDKError(t, err, http.StatusBadRequest, 5400)

	// v1: pages of per_page, result {images}, result_info {page, per_page}.
	var paged []string
	for page := 1; page <= 3; page++ {
		//lint:ignore SA1019 the v1 list is deprecated but still served, so the emulator serves it too
		res, err := env.api.V1.List(ctx, images.V1ListParams{AccountID: acct, Page: cloudflare.F(float64(page)), PerPage: cloudflare.F(10.0)})
		if err != nil {
			t.Fatalf("v1 list: %v", err)
		}
		if res.ResultInfo.Page != int64(page) || res.ResultInfo.PerPage != 10 {
			t.Errorf("v1 result_info = %+v", res.ResultInfo)
		}
		var body struct {
			Images []struct{ ID string } `json:"images"`
		}
		if err := json.Unmarshal([]byte(res.Result.JSON.RawJSON()), &body); err != nil {
			t.Fatal(err)
		}
		for _, img := range body.Images {
			paged = append(paged, img.ID)
		}
	}
	if !slices.Equal(paged, newestFirst) {
		t.Errorf("v1 pages = %v\nwant %v", paged, newestFirst)
	}
	//lint:ignore SA1019 as above
	_, err = env.api.V1.List(ctx, images.V1ListParams{AccountID: acct, PerPage: cloudflare.F(101.0)})
	wantSDKError(t, err, http.StatusBadRequest, 5400)

	stats, err := env.api.V1.Stats.Get(ctx, images.V1StatGetParams{AccountID: acct})
	if err != nil || stats.Count.Current != 25 || stats.Count.Allowed != emulator.DefaultImageQuota {
		t.Errorf("stats = %+v, %v", stats, err)
	}
}

func TestSDKVariants(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()

	v, err := env.api.V1.Variants.New(ctx, images.V1VariantNewParams{
		AccountID: acct,
		ID:        cloudflare.F("hero"),
		Options: cloudflare.F(images.V1VariantNewParamsOptions{
			Fit:      cloudflare.F(images.V1VariantNewParamsOptionsFitCover),
			Width:    cloudflare.F(640.0),
			Height:   cloudflare.F(360.0),
			Metadata: cloudflare.F(images.V1VariantNewParamsOptionsMetadataNone),
		}),
		NeverRequireSignedURLs: cloudflare.F(true),
	})
	if err != nil {
		t.Fatalf("create variant: %v", err)
	}
	if v.Variant.ID != "hero" || v.Variant.Options.Fit != "cover" || v.Variant.Options.Width != 640 || !v.Variant.NeverRequireSignedURLs {
		t.Errorf("created = %+v", v.Variant)
	}
	_, err = env.api.V1.Variants.New(ctx, images.V1VariantNewParams{
		AccountID: acct,
		ID:        cloudflare.F("hero"),
		Options: cloudflare.F(images.V1VariantNewParamsOptions{
			Fit: cloudflare.F(images.V1VariantNewParamsOptionsFitCover), Width: cloudflare.F(1.0), Height: cloudflare.F(1.0),
			Metadata: cloudflare.F(images.V1VariantNewParamsOptionsMetadataNone),
		}),
	})
	wantSDKError(t, err, http.StatusBadRequest, 5400)

	edited, err := env.api.V1.Variants.Edit(ctx, "hero", images.V1VariantEditParams{
		AccountID: acct,
		Options: cloudflare.F(images.V1VariantEditParamsOptions{
			Fit:      cloudflare.F(images.V1VariantEditParamsOptionsFitPad),
			Width:    cloudflare.F(320.0),
			Height:   cloudflare.F(180.0),
			Metadata: cloudflare.F(images.V1VariantEditParamsOptionsMetadataKeep),
		}),
	})
	if err != nil || edited.Variant.Options.Fit != "pad" || edited.Variant.Options.Width != 320 || !edited.Variant.NeverRequireSignedURLs {
		t.Fatalf("edit variant: %+v, %v", edited, err)
	}
	got, err := env.api.V1.Variants.Get(ctx, "hero", images.V1VariantGetParams{AccountID: acct})
	if err != nil || got.Variant.Options.Height != 180 {
		t.Fatalf("get variant: %+v, %v", got, err)
	}

	list, err := env.api.V1.Variants.List(ctx, images.V1VariantListParams{AccountID: acct})
	if err != nil {
		t.Fatal(err)
	}
	// The SDK models the list as a map keyed by name (its example is "hero").
	if list.Variants.Hero.ID != "hero" || list.Variants.Hero.Options.Fit != "pad" {
		t.Errorf("listed hero = %+v", list.Variants.Hero)
	}
	for _, name := range []string{"public", "thumbnail", "avatar"} {
		if _, ok := list.Variants.JSON.ExtraFields[name]; !ok {
			t.Errorf("variant list lacks %q: %s", name, list.JSON.RawJSON())
		}
	}

	if _, err := env.api.V1.Variants.Delete(ctx, "hero", images.V1VariantDeleteParams{AccountID: acct}); err != nil {
		t.Fatalf("delete variant: %v", err)
	}
	_, err = env.api.V1.Variants.Get(ctx, "hero", images.V1VariantGetParams{AccountID: acct})
	wantSDKError(t, err, http.StatusNotFound, 5401)
}

func TestSDKKeys(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()

	keys, err := env.api.V1.Keys.List(ctx, images.V1KeyListParams{AccountID: acct})
	if err != nil || len(keys.Keys) != 1 || keys.Keys[0].Name != "default" || keys.Keys[0].Value != emulator.DefaultSigningKey {
		t.Fatalf("initial keys: %+v, %v", keys, err)
	}
	added, err := env.api.V1.Keys.Update(ctx, "rotation2", images.V1KeyUpdateParams{AccountID: acct})
	if err != nil || len(added.Keys) != 2 || added.Keys[1].Name != "rotation2" || len(added.Keys[1].Value) != 44 {
		t.Fatalf("add key: %+v, %v", added, err)
	}
	// Re-PUT regenerates the value.
	again, err := env.api.V1.Keys.Update(ctx, "rotation2", images.V1KeyUpdateParams{AccountID: acct})
	if err != nil || len(again.Keys) != 2 || again.Keys[1].Value == added.Keys[1].Value {
		t.Fatalf("re-put key: %+v, %v", again, err)
	}
	_, err = env.api.V1.Keys.Update(ctx, "third", images.V1KeyUpdateParams{AccountID: acct})
	wantSDKError(t, err, http.StatusBadRequest, 5400)
	_, err = env.api.V1.Keys.Update(ctx, strings.Repeat("k", 21), images.V1KeyUpdateParams{AccountID: acct})
	wantSDKError(t, err, http.StatusBadRequest, 5400)

	left, err := env.api.V1.Keys.Delete(ctx, "default", images.V1KeyDeleteParams{AccountID: acct})
	if err != nil || len(left.Keys) != 1 || left.Keys[0].Name != "rotation2" {
		t.Fatalf("delete default: %+v, %v", left, err)
	}
	// Deleting the last key makes a new "default" with a fresh value.
	last, err := env.api.V1.Keys.Delete(ctx, "rotation2", images.V1KeyDeleteParams{AccountID: acct})
	if err != nil || len(last.Keys) != 1 || last.Keys[0].Name != "default" || last.Keys[0].Value == emulator.DefaultSigningKey {
		t.Fatalf("delete last: %+v, %v", last, err)
	}
	_, err = env.api.V1.Keys.Delete(ctx, "nope", images.V1KeyDeleteParams{AccountID: acct})
	wantSDKError(t, err, http.StatusNotFound, 5400)
}

func TestSDKAuthentication(t *testing.T) {
	env := newEnv(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		opts   []option.RequestOption
		acct   string
		status int
		code   int64
	}{
		{"wrong token", []option.RequestOption{option.WithAPIToken("nope")}, emulator.DefaultAccountID, 403, 10000},
		{"no token", []option.RequestOption{option.WithHeaderDel("Authorization")}, emulator.DefaultAccountID, 403, 10000},
		{"another account", nil, "ffffffffffffffffffffffffffffffff", 403, 10000},
		{"malformed account", nil, "not-an-account", 400, 7003},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env.api.V1.Stats.Get(ctx, images.V1StatGetParams{AccountID: cloudflare.F(tc.acct)}, tc.opts...)
			wantSDKError(t, err, tc.status, tc.code)
		})
	}
}
