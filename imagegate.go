// Package imagegate registers imagegate's Caddy modules: the cf_images
// gateway handler and the cf_images_emulator local Cloudflare Images.
// Importing it is what `xcaddy build --with github.com/seed-a64a90cf/imagegate`
// does; cmd/imagegate is a Caddy binary with it built in.
package imagegate

import (
	_ "github.com/seed-a64a90cf/imagegate/caddymodule"
	_ "github.com/seed-a64a90cf/imagegate/caddymodule/cfemulator"
)
