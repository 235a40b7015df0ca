package emulator

import (
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"
)

// Record is the stored form of one image, or of a draft that a direct
// upload created and whose bytes have not arrived yet.
type Record struct {
	ID                string          `json:"id"`
	Filename          string          `json:"filename,omitempty"`
	Uploaded          time.Time       `json:"uploaded"`
	RequireSignedURLs bool            `json:"requireSignedURLs"`
	Meta              json.RawMessage `json:"meta,omitempty"`
	Creator           string          `json:"creator,omitempty"`
	// Draft is true until the one-time upload URL has received the file.
	Draft bool `json:"draft,omitempty"`
	// Expiry is when a draft's upload URL stops working.
	Expiry time.Time `json:"expiry,omitzero"`
	// Seq is assigned by the store on first Put and never reused; it
	// orders images uploaded in the same instant and keys rendered variants.
	Seq uint64 `json:"seq"`
}

// State is the account-wide configuration: named variants and signing keys.
type State struct {
	Variants []Variant `json:"variants"`
	Keys     []Key     `json:"keys"`
}

// Key is a named URL-signing key. The value's UTF-8 bytes are the HMAC key.
type Key struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ErrNotFound is returned by a Store for an id it does not hold.
var ErrNotFound = errors.New("emulator: not found")

// Store holds images, their bytes and the account state. Implementations
// are safe for concurrent use, and each method is atomic: a Put either
// stores the record (and its bytes) or leaves the previous one in place.
type Store interface {
	// Get returns the record for id.
	Get(id string) (Record, bool)
	// List returns every record, drafts included, in no particular order.
	List() []Record
	// Put stores rec and, when blob is non-nil, its image bytes; a nil blob
	// keeps the bytes already stored. A zero rec.Seq is assigned one.
	Put(rec Record, blob []byte) (Record, error)
	// Delete removes the record and its bytes; a missing id is not an error.
	Delete(id string) error
	// Blob returns the image bytes stored for id, or ErrNotFound.
	Blob(id string) ([]byte, error)
	// State returns the stored account state, if any was ever saved.
	State() (State, bool)
	// PutState replaces the account state.
	PutState(State) error
}

// recordIndex is the in-memory map of records that both stores answer
// reads from; its mutex also guards the rest of the embedding store.
type recordIndex struct {
	mu      sync.RWMutex
	records map[string]Record
}

// Get returns the record for id.
func (x *recordIndex) Get(id string) (Record, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	r, ok := x.records[id]
	return r, ok
}

// List returns every record, drafts included, in no particular order.
func (x *recordIndex) List() []Record {
	x.mu.RLock()
	defer x.mu.RUnlock()
	out := make([]Record, 0, len(x.records))
	for _, r := range x.records {
		out = append(out, r)
	}
	return out
}

// MemoryStore is a Store that keeps everything in memory; a restart loses it.
type MemoryStore struct {
	recordIndex
	blobs map[string][]byte
	state *State
	seq   uint64
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{recordIndex: recordIndex{records: map[string]Record{}}, blobs: map[string][]byte{}}
}

func (s *MemoryStore) Put(rec Record, blob []byte) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.Seq == 0 {
		s.seq++
		rec.Seq = s.seq
	}
	if blob != nil {
		s.blobs[rec.ID] = slices.Clone(blob)
	}
	s.records[rec.ID] = rec
	return rec, nil
}

func (s *MemoryStore) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, id)
	delete(s.blobs, id)
	return nil
}

func (s *MemoryStore) Blob(id string) ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, ok := s.blobs[id]
	if !ok {
		return nil, ErrNotFound
	}
	return b, nil
}

func (s *MemoryStore) State() (State, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state == nil {
		return State{}, false
	}
	return cloneState(*s.state), true
}

func (s *MemoryStore) PutState(st State) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := cloneState(st)
	s.state = &c
	return nil
}

func cloneState(st State) State {
	return State{Variants: slices.Clone(st.Variants), Keys: slices.Clone(st.Keys)}
}
