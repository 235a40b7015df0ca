// Command imagegate is Caddy with imagegate's modules built in. Every Caddy
// subcommand works: run, adapt, reload, list-modules, validate, …
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules, as in the stock caddy binary.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/seed-a64a90cf/imagegate"
)

func main() {
	caddycmd.Main()
}
