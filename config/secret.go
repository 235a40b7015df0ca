package config

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// maxSecretFile bounds what a *_file setting may read: keys are short, and a
// path pointing at a large file is a mistake worth reporting.
const maxSecretFile = 64 << 10

// ReadSecretFile reads a secret from path, trimming one trailing newline as
// editors and `echo` add it. Errors name the setting, never the content.
func ReadSecretFile(field, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	buf, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %w", field, path, err)
	}
	if len(buf) > maxSecretFile {
		return nil, fmt.Errorf("%s: %s is larger than 64 KiB; is it the right file?", field, path)
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(buf), "\n"), "\r")
	if s == "" {
		return nil, fmt.Errorf("%s: %s is empty", field, path)
	}
	return []byte(s), nil
}
