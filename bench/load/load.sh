#!/usr/bin/env bash
# Load test of the gateway's redirect hot path through a real Caddy against
# stock Caddy's `redir`, side by side in the same process, on loopback only,
# bounded in time. Needs wrk (Debian package `wrk`) and curl.
#
#   bash bench/load/load.sh [seconds=10] [connections=32] [rounds=5]
#
# One process serves three sites:
#
#   1. baseline: Caddy's own `redir` answering a similar 302 (a Location of
#      the same shape, the same Cache-Control), no gateway at all;
#   2. `cf_images` with `session jwt` and an HS256 cookie: every request
#      a verification-cache hit and a signed-URL cache hit;
#   3. `cf_images` with `session none`.
#
# Every run sends the same request, cookie included (the cookie is what a
# browser sends to both), over 1,000 distinct image ids, so the URL cache
# is warm after a first pass (done before measuring). The three are run in
# turn, `rounds` times (redir, jwt, none, redir, jwt, none, …), so that
# each pair saw the same load from the rest of the machine. CPU per
# request is the process's (utime + stime from /proc/<pid>/stat, not
# wrk's); the ratios compare each round's gateway run with the same
# round's `redir` run. With PROFILE=<dir>, CPU profiles of the redir and
# session jwt sites under load (from Caddy's admin /debug/pprof) and the
# binary are saved there first (go tool pprof -top <dir>/imagegate
# <dir>/jwt.pprof).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-32}
rounds=${3:-5}
work=$(mktemp -d)
# shellcheck source=bench/load/lib.sh
. bench/load/lib.sh
trap 'stop_all; rm -rf "$work"' EXIT

build_imagegate
admin=127.0.0.1:$(free_port)
none=127.0.0.1:$(free_port)
jwt=127.0.0.1:$(free_port)
redir=127.0.0.1:$(free_port)
start_caddy gateway "{
	admin $admin
	persist_config off
	log {
		level WARN
	}
}
http://$none {
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://127.0.0.1:8787
		variants public thumbnail
		session none
	}
}
http://$jwt {
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://127.0.0.1:8787
		variants public thumbnail
		session jwt {
			cookie session
			secret_file $PWD/dev/jwt-secret
		}
	}
}
http://$redir {
	header Cache-Control \"private, max-age=1800\"
	redir http://127.0.0.1:8787/emu-account-hash{path}?exp=1800000000&sig=0000000000000000000000000000000000000000000000000000000000000000 302
}"
for a in "$none" "$jwt" "$redir"; do wait_http "http://$a/"; done

token=$("$work/imagegate" cf-images-token --secret-file dev/jwt-secret --sub loadtest --ttl 1h)
cookie="Cookie: session=$token"
for i in $(seq 0 999); do printf '2cdc28f0-017a-49c4-9ed7-%012d\n' "$i"; done >"$work/ids"
ids_lua "$work/ids" 0 "$work/ids.lua"
for a in "$none" "$jwt" "$redir"; do
	got=$(curl -s -o /dev/null -H "$cookie" -w '%{http_code}' "http://$a/img/2cdc28f0-017a-49c4-9ed7-000000000000/public")
	[ "$got" = 302 ] || { echo "http://$a answers $got, want 302" >&2; exit 1; }
done
# Warm the URL caches: one pass over the ids and more.
for a in "$none" "$jwt"; do wrk -t 2 -c "$conns" -d 2s -s "$work/ids.lua" -H "$cookie" "http://$a" >/dev/null; done
if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	profile "$admin" "$PROFILE/redir.pprof" "http://$redir" "$work/ids.lua" -H "$cookie"
	profile "$admin" "$PROFILE/jwt.pprof" "http://$jwt" "$work/ids.lua" -H "$cookie"
	cp "$work/imagegate" "$PROFILE/imagegate"
fi

echo "$conns connections, ${secs}s per run, 1,000 ids, $rounds rounds"
echo
for _ in $(seq "$rounds"); do
	measure "redir (stock Caddy)" "http://$redir" "$work/ids.lua" "$pid_gateway" - -H "$cookie"
	measure "cf_images, session jwt (HS256 cookie)" "http://$jwt" "$work/ids.lua" "$pid_gateway" - -H "$cookie"
	measure "cf_images, session none" "http://$none" "$work/ids.lua" "$pid_gateway" - -H "$cookie"
done
print_summary gateway -
echo
compare "cf_images, session jwt (HS256 cookie)" "redir (stock Caddy)" 1.1
compare "cf_images, session none" "redir (stock Caddy)" 1.1
