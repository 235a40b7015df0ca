package emulator

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"slices"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// newKeyValue returns a fresh signing key value shaped like Cloudflare's:
// base64 of 32 random bytes. Its UTF-8 text, not the decoded bytes, is the
// HMAC key.
func newKeyValue() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.StdEncoding.EncodeToString(b[:])
}

// keysResult is the result of every key endpoint: all current keys.
func keysResult(keys []Key) any {
	if keys == nil {
		keys = []Key{}
	}
	return map[string]any{"keys": keys}
}

func (e *Emulator) listKeys(r *http.Request) (any, []byte, *codedError) {
	st, _ := e.store.State()
	return keysResult(st.Keys), nil, nil
}

// putKey is PUT images/v1/keys/<name>: it creates the key, or gives an
// existing one a new value.
func (e *Emulator) putKey(name string) (any, []byte, *codedError) {
	if len(name) > MaxKeyNameBytes || !imageref.IsURLSafe(name) {
		return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "Signing key name must be 1 to 20 characters of [A-Za-z0-9_-]")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st, _ := e.store.State()
	if i := slices.IndexFunc(st.Keys, func(k Key) bool { return k.Name == name }); i >= 0 {
		st.Keys[i].Value = newKeyValue()
	} else {
		if len(st.Keys) >= MaxKeys {
			return nil, nil, errf(http.StatusBadRequest, codeBadRequest, "An account may have at most 2 signing keys")
		}
		st.Keys = append(st.Keys, Key{Name: name, Value: newKeyValue()})
	}
	if err := e.store.PutState(st); err != nil {
		return nil, nil, errInternal
	}
	return keysResult(st.Keys), nil, nil
}

// deleteKey is DELETE images/v1/keys/<name>. Deleting the last key makes
// a new one named "default", so the account can always sign.
func (e *Emulator) deleteKey(name string) (any, []byte, *codedError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, _ := e.store.State()
	i := slices.IndexFunc(st.Keys, func(k Key) bool { return k.Name == name })
	if i < 0 {
		return nil, nil, errf(http.StatusNotFound, codeBadRequest, "Signing key not found")
	}
	st.Keys = slices.Delete(st.Keys, i, i+1)
	if len(st.Keys) == 0 {
		st.Keys = []Key{{Name: DefaultSigningKeyName, Value: newKeyValue()}}
	}
	if err := e.store.PutState(st); err != nil {
		return nil, nil, errInternal
	}
	return keysResult(st.Keys), nil, nil
}
