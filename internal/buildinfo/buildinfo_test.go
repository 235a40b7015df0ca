package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	caddy := &debug.Module{Path: "github.com/caddyserver/caddy/v2", Version: "v2.11.9"}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "(devel)"},
		{"main module, go install …@v1.2.3",
			&debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v1.2.3"}, Deps: []*debug.Module{caddy}}, "v1.2.3"},
		{"main module, git checkout",
			&debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "v0.0.0-20261207135658-4d2eaa3c0d1e+dirty"}},
			"v0.0.0-20261207135658-4d2eaa3c0d1e+dirty"},
		{"main module, -buildvcs=false", &debug.BuildInfo{Main: debug.Module{Path: ModulePath, Version: "(devel)"}}, "(devel)"},
		{"dependency of an xcaddy build",
			&debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{caddy, {Path: ModulePath, Version: "v1.4.0"}}}, "v1.4.0"},
		{"dependency replaced by a directory (--with …=.)",
			&debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{
				{Path: ModulePath, Version: "v0.0.0-00010101000000-000000000000", Replace: &debug.Module{Path: "/src/imagegate"}}}}, "(devel)"},
		{"dependency replaced by a fork's version",
			&debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{
				{Path: ModulePath, Version: "v1.4.0", Replace: &debug.Module{Path: "example.com/fork", Version: "v1.4.1"}}}}, "v1.4.1"},
		{"not in this binary", &debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{caddy}}, "(devel)"},
	} {
		if got := fromBuildInfo(tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestLinkerVersionWins: what -ldflags -X sets is reported as it is.
func TestLinkerVersionWins(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v9.8.7"
	if got := Version(); got != "v9.8.7" {
		t.Fatalf("Version() = %q, want the linker's v9.8.7", got)
	}
}
