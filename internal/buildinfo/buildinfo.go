// Package buildinfo says which imagegate is running: the version of this
// module, as opposed to Caddy's, which `caddy version` prints.
//
// The version comes, first match wins, from:
//
//  1. the linker: go build -ldflags "-X github.com/seed-a64a90cf/imagegate/internal/buildinfo.version=v1.2.3"
//  2. the binary's module build info (runtime/debug.ReadBuildInfo): the
//     version of this module as a dependency (an xcaddy build of a
//     published version), or as the main module (`go install …@v1.2.3`;
//     a `go build` in a git checkout stamps the commit's tag or a
//     pseudo-version of it, "+dirty" with uncommitted or untracked files)
//  3. "(devel)", what Go itself reports when it knows nothing better (a
//     build with -buildvcs=false, or a dependency replaced by a local
//     directory as `xcaddy build --with …=.` does).
package buildinfo

import "runtime/debug"

// ModulePath is imagegate's Go module path.
const ModulePath = "github.com/seed-a64a90cf/imagegate"

// devel is the version Go reports for a module built from source without
// a version.
const devel = "(devel)"

// version is set by the linker (-X) to override the build info; see the
// package doc.
var version string

// Version returns imagegate's version (see the package doc for where it
// comes from). It is never empty.
func Version() string {
	if version != "" {
		return version
	}
	bi, _ := debug.ReadBuildInfo() // nil without module information
	return fromBuildInfo(bi)
}

// fromBuildInfo finds this module's version in bi.
func fromBuildInfo(bi *debug.BuildInfo) string {
	if bi == nil {
		return devel
	}
	m := &bi.Main
	if m.Path != ModulePath {
		m = nil
		for _, d := range bi.Deps {
			if d.Path == ModulePath {
				m = d
				break
			}
		}
	}
	switch {
	case m == nil:
		return devel
	case m.Replace != nil:
		// A replacement by another module version names a real version; a
		// replacement by a directory has none, whatever go.mod required.
		if m.Replace.Version != "" {
			return m.Replace.Version
		}
		return devel
	case m.Version == "":
		return devel
	}
	return m.Version
}
