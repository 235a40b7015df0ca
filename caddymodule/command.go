package caddymodule

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	"github.com/seed-a64a90cf/imagegate/config"
	"github.com/seed-a64a90cf/imagegate/session"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "cf-images-token",
		Usage: "--secret-file <path> --sub <subject> [--ttl <duration>] [--claim <name>=<value>]...",
		Short: "Mints an HS256 development token for cf_images' session jwt",
		Long: `
Writes a signed HS256 JWT to stdout, for trying the gateway locally with
"session jwt { secret_file <path> }". Not for production: real tokens come
from your identity provider.

--secret-file
    File holding the HMAC secret (at least 32 bytes), the same file the
    Caddyfile's secret_file names.

--sub
    The subject claim: who the caller is.

--ttl
    How long the token is valid. Default: 1h.

--claim
    An extra string claim, name=value; repeat for more.
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("secret-file", "", "File holding the HMAC secret")
			cmd.Flags().String("sub", "", "Subject (sub claim)")
			cmd.Flags().Duration("ttl", time.Hour, "Validity of the token")
			cmd.Flags().StringArray("claim", nil, "Extra claim as name=value (repeatable)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdToken)
		},
	})
}

func cmdToken(fs caddycmd.Flags) (int, error) {
	sub := fs.String("sub")
	if sub == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--sub is required")
	}
	if fs.String("secret-file") == "" {
		return caddy.ExitCodeFailedStartup, errors.New("--secret-file is required")
	}
	secret, err := config.ReadSecretFile("--secret-file", fs.String("secret-file"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	ttl := fs.Duration("ttl")
	if ttl <= 0 {
		return caddy.ExitCodeFailedStartup, errors.New("--ttl must be positive")
	}
	claimArgs, err := fs.GetStringArray("claim")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	claims := map[string]string{}
	for _, kv := range claimArgs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--claim %q: want name=value", kv)
		}
		claims[k] = v
	}
	tok, err := session.MintHS256(secret, sub, ttl, claims, time.Now())
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	fmt.Fprintln(os.Stdout, tok)
	return caddy.ExitCodeSuccess, nil
}
