package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"github.com/dustin/go-humanize"
)

// URLCacheSize bounds the signed-URL cache: a size in bytes of heap
// (`64MiB`), or, as configs written before sizes did, a count of URLs. A
// count still keeps the cache within the default byte budget, so long ids
// cannot grow it past that.
//
// In JSON it is a string with a size (`"64MiB"`) or a number (a count).
type URLCacheSize struct {
	Bytes   int64
	Entries int
}

// UnmarshalJSON reads `"64MiB"` or a count.
func (s *URLCacheSize) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		n, err := parseURLCacheSize(v)
		*s = n
		return err
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil || n < 1 {
		return errors.New("cache_size: want a size such as 64MiB, or a count of at least 1")
	}
	*s = URLCacheSize{Entries: n}
	return nil
}

// MarshalJSON writes the form it was given.
func (s URLCacheSize) MarshalJSON() ([]byte, error) {
	if s.Entries > 0 {
		return []byte(strconv.Itoa(s.Entries)), nil
	}
	return json.Marshal(humanize.IBytes(uint64(s.Bytes)))
}

// parseURLCacheSize reads the Caddyfile's argument: a plain number is a
// count, anything else a size.
func parseURLCacheSize(v string) (URLCacheSize, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n < 1 {
			return URLCacheSize{}, errors.New("cache_size: want a size such as 64MiB, or a count of at least 1")
		}
		return URLCacheSize{Entries: n}, nil
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n < 1<<20 || n > math.MaxInt64 {
		return URLCacheSize{}, errors.New("cache_size: want a size of at least 1MiB, such as 64MiB, or a count of URLs")
	}
	return URLCacheSize{Bytes: int64(n)}, nil
}

func (s *URLCacheSize) bytes() int64 {
	if s == nil {
		return 0
	}
	return s.Bytes
}

func (s *URLCacheSize) entries() int {
	if s == nil {
		return 0
	}
	return s.Entries
}
