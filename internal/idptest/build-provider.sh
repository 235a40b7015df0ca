#!/usr/bin/env bash
# Builds Ory Hydra v2.3.0, the real OpenID provider the idptest package
# runs, from the Go module proxy into a cache directory outside the
# repository, and prints the binary's path. A binary already there is
# reused, so CI builds it once per cache.
#
# Hydra's go.mod has a replace directive pointing at a directory the module
# zip does not ship (./internal/httpclient), so `go install …@v2.3.0` refuses
# it; the module is copied to a temporary directory, that one replace is
# pointed at the published hydra-client-go module, and it is built there.
# Nothing is added to imagegate's own go.mod. The sqlite tag gives the
# in-memory database (dsn: memory); it needs cgo, so gcc must be installed.
#
# Usage: internal/idptest/build-provider.sh   (env IDPTEST_HYDRA_DIR overrides
# the cache directory; the binary is $dir/hydra)
set -euo pipefail

version=v2.3.0
dir="${IDPTEST_HYDRA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagegate/hydra-$version}"
bin="$dir/hydra"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
command -v gcc >/dev/null 2>&1 || { echo "build-provider.sh: gcc is needed (cgo, for SQLite): apt-get install gcc" >&2; exit 1; }

work=$(mktemp -d)
partial="$bin.partial.$$"
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work" "$partial"' EXIT
trap 'exit 1' INT TERM
# Downloaded from an empty directory, so no go.mod around it is touched.
src=$(cd "$work" && GOWORK=off go mod download -json "github.com/ory/hydra/v2@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[ -n "$src" ] && [ -d "$src" ] || { echo "build-provider.sh: go mod download gave no directory for hydra $version" >&2; exit 1; }
cp -r "$src"/. "$work"
chmod -R u+w "$work"
cd "$work"
sed -i 's#^replace github.com/ory/hydra-client-go/v2 => ./internal/httpclient$#replace github.com/ory/hydra-client-go/v2 => github.com/ory/hydra-client-go/v2 v2.2.1#' go.mod
grep -q '^replace github.com/ory/hydra-client-go/v2 => github.com/ory/hydra-client-go/v2 v2.2.1$' go.mod ||
  { echo "build-provider.sh: hydra's go.mod no longer has the replace this script rewrites" >&2; exit 1; }

mkdir -p "$dir"
# Built under a temporary name and renamed, so a build cut short never
# leaves a binary that looks finished.
CGO_ENABLED=1 GOWORK=off go build -mod=mod -trimpath -tags sqlite,sqlite_omit_load_extension -o "$partial" .
mv "$partial" "$bin"
echo "$bin"
