package emulator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/images"

	"github.com/seed-a64a90cf/imagegate/emulator"
)

func openDir(t *testing.T, dir string) *emulator.DirStore {
	t.Helper()
	s, err := emulator.OpenDirStore(dir)
	if err != nil {
		t.Fatalf("OpenDirStore: %v", err)
	}
	return s
}

// A restart (a new emulator over the same directory) keeps every image,
// draft, variant and key, and the images still deliver.
func TestRestartKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()

	before := newEnv(t, func(c *emulator.Config) { c.Store = openDir(t, dir) })
	pub := before.upload(t, false, pngBytes(t, 300, 100))
	priv := before.upload(t, true, jpegBytes(t, 64, 64))
	resp, b := before.postV1(t, map[string]string{"id": "albums/100%-real", "metadata": `{"a":1}`}, gifBytes(t, 20, 20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("custom id upload: %s", b)
	}
	draftID, uploadPath := before.createDraft(t, map[string]string{"requireSignedURLs": "true"})
	if _, err := before.api.V1.Variants.New(ctx, images.V1VariantNewParams{
		AccountID: acct,
		ID:        cloudflare.F("hero"),
		Options: cloudflare.F(images.V1VariantNewParamsOptions{
			Fit: cloudflare.F(images.V1VariantNewParamsOptionsFitContain), Width: cloudflare.F(30.0), Height: cloudflare.F(30.0),
			Metadata: cloudflare.F(images.V1VariantNewParamsOptionsMetadataNone),
		}),
	}); err != nil {
		t.Fatal(err)
	}
	keys, err := before.api.V1.Keys.Update(ctx, "k2", images.V1KeyUpdateParams{AccountID: acct})
	if err != nil {
		t.Fatal(err)
	}
	k2 := keys.Keys[1].Value
	list := func(env *testEnv) []images.Image {
		res, err := env.api.V2.List(ctx, images.V2ListParams{AccountID: acct})
		if err != nil {
			t.Fatal(err)
		}
		return res.Images
	}
	was := list(before)
	before.srv.Close()

	after := newEnv(t, func(c *emulator.Config) {
		c.Store = openDir(t, dir)
		// The configured thumbnail changes; the API-made hero survives.
		c.Variants = []emulator.Variant{{ID: "thumbnail", Options: emulator.VariantOptions{Fit: "cover", Width: 50, Height: 50, Metadata: "none"}}}
	})
	is := list(after)
	if len(is) != 3 || len(was) != 3 {
		t.Fatalf("images before %d, after %d, want 3", len(was), len(is))
	}
	for i := range is {
		if is[i].JSON.RawJSON() != strings.ReplaceAll(was[i].JSON.RawJSON(), before.srv.URL, after.srv.URL) {
			t.Errorf("image changed across restart:\n%s\n%s", was[i].JSON.RawJSON(), is[i].JSON.RawJSON())
		}
	}

	h := "/" + emulator.DefaultAccountHash + "/"
	if resp, b := after.do(t, "GET", h+pub+"/hero", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("hero after restart: %d %s", resp.StatusCode, b)
	} else if w, hh, _ := decodeSize(t, b); w != 30 || hh != 10 {
		t.Errorf("hero after restart %dx%d", w, hh)
	}
	if resp, b := after.do(t, "GET", h+pub+"/thumbnail", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("thumbnail after restart: %d", resp.StatusCode)
	} else if w, _, _ := decodeSize(t, b); w != 50 {
		t.Errorf("configured thumbnail not applied: width %d", w)
	}
	if resp, _ := after.do(t, "GET", h+"albums/100%25-real/public", nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("custom id after restart: %d", resp.StatusCode)
	}
	signed := sign(k2, h+priv+"/public", start.Add(time.Hour).Unix())
	if resp, b := after.do(t, "GET", signed, nil, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("key k2 after restart: %d %s", resp.StatusCode, b)
	}
	got, err := after.api.V1.Keys.List(ctx, images.V1KeyListParams{AccountID: acct})
	if err != nil || len(got.Keys) != 2 || got.Keys[0].Value != emulator.DefaultSigningKey || got.Keys[1].Value != k2 {
		t.Errorf("keys after restart: %+v, %v", got, err)
	}

	// The draft's one-time URL still works, once.
	if resp, b := after.postFile(t, uploadPath, pngBytes(t, 4, 4)); resp.StatusCode != http.StatusOK {
		t.Fatalf("upload URL after restart: %d %s", resp.StatusCode, b)
	}
	img, err := after.api.V1.Get(ctx, draftID, images.V1GetParams{AccountID: acct})
	if err != nil || !img.RequireSignedURLs || strings.Contains(img.JSON.RawJSON(), "draft") {
		t.Errorf("uploaded draft after restart: %+v, %v", img, err)
	}

	// Deletes persist too.
	if _, err := after.api.V1.Delete(ctx, pub, images.V1DeleteParams{AccountID: acct}); err != nil {
		t.Fatal(err)
	}
	again := newEnv(t, func(c *emulator.Config) { c.Store = openDir(t, dir) })
	if ids := imageIDs(list(again)); len(ids) != 3 || slices.Contains(ids, pub) {
		t.Errorf("after delete and restart: %v", ids)
	}
}

func imageIDs(imgs []images.Image) []string {
	var ids []string
	for _, img := range imgs {
		ids = append(ids, img.ID)
	}
	return ids
}

// What an interrupted write can leave behind is cleaned up or ignored: a
// temporary file is removed, and a record whose bytes never landed is
// not served (bytes are written before their record, so only a crash
// between the two could leave the reverse, and it never does).
func TestDirStoreRecovery(t *testing.T) {
	dir := t.TempDir()
	s := openDir(t, dir)
	if _, err := s.Put(emulator.Record{ID: "kept", Uploaded: start}, pngBytes(t, 2, 2)); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, "images", ".tmp-12345")
	if err := os.WriteFile(stray, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("orphan"))
	if err := os.WriteFile(filepath.Join(dir, "images", hex.EncodeToString(sum[:])+".json"),
		[]byte(`{"id":"orphan","uploaded":"2030-01-01T00:00:00Z","seq":9}`), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := openDir(t, dir)
	if _, err := os.Stat(stray); !os.IsNotExist(err) {
		t.Errorf("temporary file survived reopening: %v", err)
	}
	if _, ok := s2.Get("orphan"); ok {
		t.Error("a record without bytes is served")
	}
	if rec, ok := s2.Get("kept"); !ok || rec.Seq != 1 {
		t.Errorf("kept = %+v, %v", rec, ok)
	}
	// Sequence numbers keep increasing across reopenings.
	rec, err := s2.Put(emulator.Record{ID: "new"}, pngBytes(t, 2, 2))
	if err != nil || rec.Seq != 2 {
		t.Errorf("new record seq = %d, %v", rec.Seq, err)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "images"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("write left a temporary file: %s", e.Name())
		}
	}
}
