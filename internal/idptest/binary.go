package idptest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// HydraVersion is the Ory Hydra release the package runs and
// build-provider.sh builds.
const HydraVersion = "v2.3.0"

// BuildCommand is the command, run from the repository root, that builds
// the provider binary into the cache directory BinaryPath looks in.
const BuildCommand = "internal/idptest/build-provider.sh"

// BinaryPath returns where the Hydra binary is expected: $IDPTEST_HYDRA if
// set, else hydra in $IDPTEST_HYDRA_DIR, else in
// $XDG_CACHE_HOME/imagegate/hydra-v2.3.0 ($HOME/.cache when XDG_CACHE_HOME
// is unset). build-provider.sh follows the same rules, so what it builds is
// what Start finds.
func BinaryPath() (string, error) {
	if p := os.Getenv("IDPTEST_HYDRA"); p != "" {
		return p, nil
	}
	if d := os.Getenv("IDPTEST_HYDRA_DIR"); d != "" {
		return filepath.Join(d, "hydra"), nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory to look for hydra in: %w", err)
	}
	return filepath.Join(cache, "imagegate", "hydra-"+HydraVersion, "hydra"), nil
}

// findBinary returns the path of an executable Hydra binary, or an error
// saying where it looked.
func findBinary() (string, error) {
	p, err := BinaryPath()
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("hydra %s not found at %s: %w", HydraVersion, p, err)
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return "", errors.New("hydra at " + p + " is not an executable file")
	}
	return p, nil
}
