package emulator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DirStore is a Store that persists to a directory, so a restart keeps every
// image, draft, variant and key. Layout:
//
//	<dir>/state.json              variants and signing keys
//	<dir>/images/<sha256(id)>.json  the record
//	<dir>/images/<sha256(id)>.img   the original bytes
//
// File names are hashes so that no id, however odd, can name a path outside
// the directory. Every write goes to a temporary file in the same directory,
// is fsynced and renamed into place, and the directory is fsynced, so a crash
// leaves either the old file or the new one, never a torn one. Bytes are
// written before their record and deleted after it, so a record never points
// at missing bytes. Records are indexed in memory; bytes are read on demand.
type DirStore struct {
	recordIndex
	dir   string
	state *State
	seq   uint64
}

const tmpPrefix = ".tmp-"

// OpenDirStore opens (creating if needed) a directory store and loads its
// records. Leftover temporary files from an interrupted write are removed.
func OpenDirStore(dir string) (*DirStore, error) {
	imgDir := filepath.Join(dir, "images")
	if err := os.MkdirAll(imgDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating emulator storage: %w", err)
	}
	s := &DirStore{dir: dir, recordIndex: recordIndex{records: map[string]Record{}}}
	if err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *DirStore) load() error {
	for _, d := range []string{s.dir, filepath.Join(s.dir, "images")} {
		entries, err := os.ReadDir(d)
		if err != nil {
			return fmt.Errorf("reading emulator storage: %w", err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) {
				os.Remove(filepath.Join(d, e.Name()))
			}
		}
	}
	if b, err := os.ReadFile(filepath.Join(s.dir, "state.json")); err == nil {
		var st State
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("reading emulator state: %w", err)
		}
		s.state = &st
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("reading emulator state: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(s.dir, "images", "*.json"))
	if err != nil {
		return fmt.Errorf("listing emulator images: %w", err)
	}
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("reading emulator image record: %w", err)
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("reading emulator image record %s: %w", filepath.Base(name), err)
		}
		if s.base(rec.ID) != strings.TrimSuffix(name, ".json") {
			return fmt.Errorf("emulator image record %s is not stored under its id's name", filepath.Base(name))
		}
		if !rec.Draft {
			if _, err := os.Stat(s.base(rec.ID) + ".img"); err != nil {
				// Cannot happen through this store (bytes are written
				// first); a record without bytes is dropped, not served.
				continue
			}
		}
		s.records[rec.ID] = rec
		s.seq = max(s.seq, rec.Seq)
	}
	return nil
}

// base is the path of id's files without extension.
func (s *DirStore) base(id string) string {
	sum := sha256.Sum256([]byte(id))
	return filepath.Join(s.dir, "images", hex.EncodeToString(sum[:]))
}

func (s *DirStore) Put(rec Record, blob []byte) (Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rec.Seq == 0 {
		rec.Seq = s.seq + 1
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return Record{}, fmt.Errorf("encoding image record: %w", err)
	}
	base := s.base(rec.ID)
	if blob != nil {
		if err := writeFileAtomic(base+".img", blob); err != nil {
			return Record{}, err
		}
	}
	if err := writeFileAtomic(base+".json", b); err != nil {
		return Record{}, err
	}
	s.seq = max(s.seq, rec.Seq)
	s.records[rec.ID] = rec
	return rec, nil
}

func (s *DirStore) Delete(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	base := s.base(id)
	if err := os.Remove(base + ".json"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting image record: %w", err)
	}
	delete(s.records, id)
	if err := os.Remove(base + ".img"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("deleting image bytes: %w", err)
	}
	return syncDir(filepath.Dir(base))
}

func (s *DirStore) Blob(id string) ([]byte, error) {
	s.mu.RLock()
	_, ok := s.records[id]
	s.mu.RUnlock()
	if !ok {
		return nil, ErrNotFound
	}
	b, err := os.ReadFile(s.base(id) + ".img")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	return b, err
}

func (s *DirStore) State() (State, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.state == nil {
		return State{}, false
	}
	return cloneState(*s.state), true
}

func (s *DirStore) PutState(st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding emulator state: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := writeFileAtomic(filepath.Join(s.dir, "state.json"), b); err != nil {
		return err
	}
	c := cloneState(st)
	s.state = &c
	return nil
}

// writeFileAtomic replaces name with data so that a crash at any point
// leaves either the old content or the new, never a mix.
func writeFileAtomic(name string, data []byte) (err error) {
	dir := filepath.Dir(name)
	f, err := os.CreateTemp(dir, tmpPrefix+"*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(name), err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(name), err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", filepath.Base(name), err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", filepath.Base(name), err)
	}
	if err = os.Rename(f.Name(), name); err != nil {
		return fmt.Errorf("renaming %s: %w", filepath.Base(name), err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing storage directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing storage directory: %w", err)
	}
	return nil
}
