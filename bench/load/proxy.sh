#!/usr/bin/env bash
# Load test of proxy mode through a real Caddy against stock Caddy doing
# the nearest equivalent, on loopback only, bounded in time. Needs wrk
# (Debian package `wrk`) and curl.
#
#   bash bench/load/proxy.sh [seconds=10] [connections=32] [rounds=5]
#
# Two processes: an origin (Caddy's file_server answering every path with
# the same 30 KB JPEG, standing in for Cloudflare's delivery) and the
# gateway under test. Four runs against the gateway, each over 1,000
# distinct image ids, requested in turn:
#
#   1. proxy, memory-tier hit: `mode proxy` with a 64 MiB byte cache,
#      warmed first, so every request is a hit (session none).
#   2. baseline for 1: Caddy's file_server serving the same file from
#      disk (the page cache).
#   3. proxy, no byte cache: `mode proxy { cache_size 0 }`, so every
#      request signs the URL and fetches it from the origin. `fetch_limit
#      off`: every request here is the same anonymous caller, whom the
#      default per-caller limit (300 fetches a minute) would refuse.
#   4. baseline for 3: Caddy's reverse_proxy to the same origin, the path
#      rewritten to the same signed-URL shape (/emu-account-hash/<id>/public
#      ?exp=…&sig=…). Both keep connections to the origin alive; the proxy
#      also buffers what it fetches (to share it between concurrent
#      requests), reverse_proxy streams.
#
# The stock handlers run in the gateway's own process, and the four runs
# are repeated in turn `rounds` times, so that each pair (1 and 2, 3 and 4)
# saw the same load from the rest of the machine. CPU is per request, from
# /proc/<pid>/stat: the gateway's, and the origin's (the same work for 3
# and 4, so a check on fairness); the ratios compare each round's gateway
# run with the same round's stock run. With PROFILE=<dir>, CPU profiles of
# the gateway under runs 1 and 3 (from Caddy's admin /debug/pprof) and the
# binary are saved there first.
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
mkdir -p "$work/www"
make_jpeg "$work/www/img.jpg"

origin=127.0.0.1:$(free_port)
start_caddy origin "{
	admin off
	persist_config off
	log {
		level WARN
	}
}
http://$origin {
	rewrite * /img.jpg
	file_server {
		root $work/www
	}
}"

hit=127.0.0.1:$(free_port)
files=127.0.0.1:$(free_port)
nocache=127.0.0.1:$(free_port)
revproxy=127.0.0.1:$(free_port)
admin=127.0.0.1:$(free_port)
gateway_site() { # <address> <proxy cache_size>
	cat <<CADDY
http://$1 {
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://$origin
		variants public
		session none
		mode proxy {
			cache_size $2
			fetch_limit off
		}
	}
}
CADDY
}
start_caddy gateway "{
	admin $admin
	persist_config off
	log {
		level ERROR
	}
}
$(gateway_site "$hit" 64MiB)
$(gateway_site "$nocache" 0)
http://$files {
	rewrite * /img.jpg
	file_server {
		root $work/www
	}
}
http://$revproxy {
	route {
		uri strip_prefix /img
		rewrite * /emu-account-hash{path}?exp=1800000000&sig=0000000000000000000000000000000000000000000000000000000000000000
	}
	reverse_proxy $origin
}"
for a in "$origin" "$hit" "$nocache" "$files" "$revproxy"; do wait_http "http://$a/"; done

for i in $(seq 0 999); do printf '2cdc28f0-017a-49c4-9ed7-%012d\n' "$i"; done >"$work/ids"
ids_lua "$work/ids" 0 "$work/ids.lua"
size=$(wc -c <"$work/www/img.jpg")
for a in "$hit" "$nocache" "$files" "$revproxy"; do
	got=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://$a/img/2cdc28f0-017a-49c4-9ed7-000000000000/public")
	[ "$got" = "200 $size" ] || { echo "http://$a answers \"$got\", want \"200 $size\"" >&2; exit 1; }
done
# Warm the byte cache: one pass over the ids and more.
wrk -t 2 -c "$conns" -d 2s -s "$work/ids.lua" "http://$hit" >/dev/null

if [ -n "${PROFILE:-}" ]; then
	mkdir -p "$PROFILE"
	profile "$admin" "$PROFILE/proxy-hit.pprof" "http://$hit" "$work/ids.lua"
	profile "$admin" "$PROFILE/file_server.pprof" "http://$files" "$work/ids.lua"
	profile "$admin" "$PROFILE/proxy-miss.pprof" "http://$nocache" "$work/ids.lua"
	profile "$admin" "$PROFILE/reverse_proxy.pprof" "http://$revproxy" "$work/ids.lua"
	cp "$work/imagegate" "$PROFILE/imagegate"
fi

echo "file: $size bytes; $conns connections, ${secs}s per run, 1,000 ids, $rounds rounds"
echo
for _ in $(seq "$rounds"); do
	measure "proxy, memory-tier hit" "http://$hit" "$work/ids.lua" "$pid_gateway" "$pid_origin"
	measure "file_server, same file" "http://$files" "$work/ids.lua" "$pid_gateway" "$pid_origin"
	measure "proxy, cache_size 0 (fetch every request)" "http://$nocache" "$work/ids.lua" "$pid_gateway" "$pid_origin"
	measure "reverse_proxy, same origin" "http://$revproxy" "$work/ids.lua" "$pid_gateway" "$pid_origin"
done
print_summary gateway origin
echo
compare "proxy, memory-tier hit" "file_server, same file" 1.0
compare "proxy, cache_size 0 (fetch every request)" "reverse_proxy, same origin" 1.05
