// Command imagegate is Caddy with imagegate's modules built in. Every Caddy
// subcommand works: run, adapt, reload, list-modules, validate, …
//
// `imagegate version` prints imagegate's version, then the version of the
// Caddy inside it. Stamp a release with
//
//	go build -ldflags "-X github.com/seed-a64a90cf/imagegate/internal/buildinfo.version=v1.2.3" ./cmd/imagegate
//
// or let Go stamp it from the module (see package internal/buildinfo).
package main

import (
	"fmt"
	"os"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in the stock caddy binary.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/seed-a64a90cf/imagegate"
	"github.com/seed-a64a90cf/imagegate/internal/buildinfo"
)

func main() {
	// Caddy's own `version` prints Caddy's version, and its command
	// registry refuses a second command of that name, so this binary
	// answers the bare word before Caddy sees it. `version --help` and
	// everything else go to Caddy.
	if len(os.Args) == 2 && os.Args[1] == "version" {
		printVersion()
		return
	}
	caddycmd.Main()
}

// printVersion writes imagegate's version on the first line, for scripts,
// and Caddy's full version, as `caddy version` prints it, on the second.
func printVersion() {
	_, caddyVersion := caddy.Version()
	fmt.Printf("imagegate %s\ncaddy %s\n", buildinfo.Version(), caddyVersion)
}
