package emulator_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"reflect"
	"testing"
)

// tsField is one form field as the official TypeScript SDK (npm
// "cloudflare" 7.x, internal/uploads addFormValue) appends it.
type tsField struct{ name, value string }

// tsFields flattens a request body the way that SDK does: strings,
// numbers and booleans become String(value); an array becomes key[]
// repeated; an object becomes key[name] for each entry, recursively.
// Entries keep the order given, as JavaScript objects do.
func tsFields(key string, value any) []tsField {
	switch v := value.(type) {
	case string:
		return []tsField{{key, v}}
	case int, bool:
		return []tsField{{key, fmt.Sprint(v)}}
	case []any:
		var out []tsField
		for _, e := range v {
			out = append(out, tsFields(key+"[]", e)...)
		}
		return out
	case [][2]any: // an object, as ordered entries
		var out []tsField
		for _, e := range v {
			out = append(out, tsFields(key+"["+e[0].(string)+"]", e[1])...)
		}
		return out
	}
	panic(fmt.Sprintf("tsFields: %T", value))
}

// tsForm builds the multipart body of an SDK call whose body is fields
// (ordered entries) and, if file is non-nil, a file.
func tsForm(t *testing.T, fields [][2]any, file []byte) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, e := range fields {
		for _, f := range tsFields(e[0].(string), e[1]) {
			if err := mw.WriteField(f.name, f.value); err != nil {
				t.Fatal(err)
			}
		}
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("file", "image.png")
		fw.Write(file)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// storedMeta reads back an image's metadata through the API.
func (env *testEnv) storedMeta(t *testing.T, id string) map[string]any {
	t.Helper()
	resp, b := env.apiDo(t, "GET", "v1/"+id, nil, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("details: %d %s", resp.StatusCode, b)
	}
	var img struct{ Meta map[string]any }
	if err := json.Unmarshal(decodeEnvelope(t, b).Result, &img); err != nil {
		t.Fatal(err)
	}
	return img.Meta
}

func resultID(t *testing.T, b []byte) string {
	t.Helper()
	var r struct{ ID string }
	if err := json.Unmarshal(decodeEnvelope(t, b).Result, &r); err != nil || r.ID == "" {
		t.Fatalf("no id in %s", b)
	}
	return r.ID
}

// Metadata sent as the TypeScript SDK sends an object is stored as the
// same JSON as the one-string form, on upload and on direct upload.
func TestMetadataNestedForm(t *testing.T) {
	env := newEnv(t, nil)
	nested := [][2]any{
		{"owner", "alice"},
		{"a", [][2]any{{"b", "c"}, {"d", [][2]any{{"e", "f"}}}}},
		{"count", 3},
		{"public", true},
		{"tags", []any{"x", "y"}},
	}
	// The SDK sends every leaf as a string.
	want := map[string]any{
		"owner": "alice", "a": map[string]any{"b": "c", "d": map[string]any{"e": "f"}},
		"count": "3", "public": "true", "tags": []any{"x", "y"},
	}
	asJSON, _ := json.Marshal(want)
	png := pngBytes(t, 4, 4)

	for _, tc := range []struct {
		name   string
		fields [][2]any
	}{
		{"nested fields", [][2]any{{"metadata", nested}, {"requireSignedURLs", true}}},
		{"one JSON string", [][2]any{{"metadata", string(asJSON)}, {"requireSignedURLs", true}}},
	} {
		t.Run("upload/"+tc.name, func(t *testing.T) {
			body, ct := tsForm(t, tc.fields, png)
			resp, b := env.apiDo(t, "POST", "v1", body, ct)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if got := env.storedMeta(t, resultID(t, b)); !reflect.DeepEqual(got, want) {
				t.Errorf("stored %v, want %v", got, want)
			}
		})
		t.Run("direct upload/"+tc.name, func(t *testing.T) {
			body, ct := tsForm(t, append(tc.fields, [2]any{"creator", "u1"}), nil)
			resp, b := env.apiDo(t, "POST", "v2/direct_upload", body, ct)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, b)
			}
			if got := env.storedMeta(t, resultID(t, b)); !reflect.DeepEqual(got, want) {
				t.Errorf("stored %v, want %v", got, want)
			}
		})
	}
}

// No field is dropped silently: what the emulator cannot store exactly,
// it refuses with 5400.
func TestMetadataAndFieldErrors(t *testing.T) {
	env := newEnv(t, nil)
	png := pngBytes(t, 4, 4)
	for name, fields := range map[string]map[string]string{
		"unknown field":             {"colour": "red"},
		"unknown field like meta":   {"metadatas": "{}"},
		"unclosed bracket":          {"metadata[a": "1"},
		"empty key":                 {"metadata[]": "1"},
		"text after bracket":        {"metadata[a]b": "1"},
		"bracket in a key":          {"metadata[a[b]]": "1"},
		"leaf and object":           {"metadata[a]": "1", "metadata[a][b]": "2"},
		"JSON and nested":           {"metadata": `{"a":"1"}`, "metadata[b]": "2"},
		"dotted and nested":         {"metadata.a": "1", "metadata[b]": "2"},
		"array of objects":          {"metadata[a][][b]": "1"},
		"nested over 1024 bytes":    {"metadata[k]": string(bytes.Repeat([]byte("x"), 1020))},
		"expiry is not for uploads": {"expiry": "2030-01-02T04:00:00Z"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, b := env.postV1(t, fields, png)
			wantAPIError(t, resp, b, http.StatusBadRequest, 5400)
		})
	}
	t.Run("direct upload", func(t *testing.T) {
		body, ct := form(t, map[string]string{"colour": "red"}, nil)
		resp, b := env.apiDo(t, "POST", "v2/direct_upload", body, ct)
		wantAPIError(t, resp, b, http.StatusBadRequest, 5400)
	})
	t.Run("a repeated scalar", func(t *testing.T) {
		body, ct := tsForm(t, [][2]any{{"metadata", [][2]any{{"a", "1"}}}, {"metadata", [][2]any{{"a", "2"}}}}, png)
		resp, b := env.apiDo(t, "POST", "v1", body, ct)
		wantAPIError(t, resp, b, http.StatusBadRequest, 5400)
	})
}
