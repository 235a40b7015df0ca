package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestVersionCommand builds the binary as the documented release line does
// and runs `imagegate version`: imagegate's own version first, then Caddy's.
// Caddy's other subcommands still answer.
func TestVersionCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the whole binary")
	}
	bin := filepath.Join(t.TempDir(), "imagegate")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin,
		"-ldflags", "-X github.com/seed-a64a90cf/imagegate/internal/buildinfo.version=v1.2.3-test", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	out, err := exec.CommandContext(ctx, bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("imagegate version: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || lines[0] != "imagegate v1.2.3-test" || !regexp.MustCompile(`^caddy v2\.\d+\.\d+`).MatchString(lines[1]) {
		t.Fatalf("imagegate version printed %q, want \"imagegate v1.2.3-test\" then \"caddy v2.…\"", out)
	}

	out, err = exec.CommandContext(ctx, bin, "list-modules").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "http.handlers.cf_images\n") {
		t.Fatalf("imagegate list-modules: %v, cf_images missing:\n%s", err, out)
	}
}
