#!/usr/bin/env bash
# Load test of a proxy-mode fleet: two gateway replicas sharing one Redis,
# in front of the local Cloudflare Images emulator, on loopback only,
# bounded in time. Needs wrk (Debian package `wrk`), curl and redis-server
# (Debian package `redis-server`).
#
#   bash bench/load/fleet.sh [seconds=10] [connections=32]
#
# 1,000 private images (one 30 KB JPEG uploaded 1,000 times, so 1,000 ids)
# are uploaded to the emulator. Fills are a fixed number of requests (curl,
# 8 at a time per replica), since the emulator renders each image once, some
# milliseconds of CPU; the tier runs are wrk for a duration. Then:
#
#   1. fill, split then crossed (variant public, one format): replica 1
#      asks for the first 500 ids while replica 2 asks for the other 500;
#      then both ask for all 1,000 at once. The emulator's delivery counter
#      must then equal the distinct (image, variant, format) requested,
#      1,000: each fetched once for the whole fleet, the other replica
#      finding it in Redis.
#   2. fill, racing (variant thumbnail): both replicas walk all 1,000 ids
#      in the same order at the same moment, so each id is missed by both
#      replicas at once (8 curl processes each, taking the same ids). The
#      replica that misses first takes the id's fill lease in Redis and
#      fetches; the other waits for its "filled" notice and reads the
#      object from Redis. The emulator's delivery counter must equal the
#      1,000 distinct objects: no object fetched twice for the fleet.
#      (Without leases, Redis being only a cache, a replica that missed a
#      key while the other was still fetching it fetched too: 36 extra of
#      1,000 in a walk where replica 2 started from the 501st.)
#   3. memory tier: wrk against replica 1's site with a 64 MiB byte cache,
#      every request a memory hit (variant public).
#   4. Redis tier: wrk against replica 1's site with `cache_size 0` and
#      Redis, every request a Redis hit (a GET of about 34 KB).
#
# CPU is per request, from /proc/<pid>/stat: replica 1's, and Redis's.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
conns=${2:-32}
command -v redis-server >/dev/null || { echo "redis-server is not installed: apt-get install redis-server" >&2; exit 1; }
work=$(mktemp -d)
# shellcheck source=bench/load/lib.sh
. bench/load/lib.sh
trap 'stop_all; rm -rf "$work"' EXIT

build_imagegate
make_jpeg "$work/img.jpg"

redis_port=$(free_port)
redis_password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
redis-server --port "$redis_port" --bind 127.0.0.1 --requirepass "$redis_password" \
	--dir "$work" --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
pid_redis=$!

emu=127.0.0.1:$(free_port)
emu_admin=127.0.0.1:$(free_port)
start_caddy emulator "{
	admin $emu_admin
	persist_config off
	log {
		level WARN
	}
}
http://$emu {
	bind 127.0.0.1
	cf_images_emulator {
		api_token {file.$PWD/dev/api-token}
		signing_key {file.$PWD/dev/signing-key}
		storage memory
	}
}"

replica_site() { # <address> <proxy cache_size>
	cat <<CADDY
http://$1 {
	cf_images {
		account_hash emu-account-hash
		signing_key_file $PWD/dev/signing-key
		delivery_url http://$emu
		variants public thumbnail
		session none
		redis redis://:{env.REDIS_PASSWORD}@127.0.0.1:$redis_port/0
		mode proxy {
			cache_size $2
			# One load generator is one caller: the per-caller fetch
			# limit (300 a minute by default) would refuse the fills.
			fetch_limit off
		}
	}
}
CADDY
}
declare -A site site_redis admin
for r in 1 2; do
	site[$r]=127.0.0.1:$(free_port)
	site_redis[$r]=127.0.0.1:$(free_port)
	admin[$r]=127.0.0.1:$(free_port)
	REDIS_PASSWORD=$redis_password start_caddy "replica$r" "{
	admin ${admin[$r]}
	persist_config off
	log {
		level ERROR
	}
}
$(replica_site "${site[$r]}" 64MiB)
$(replica_site "${site_redis[$r]}" 0)"
done
for a in "$emu" "${site[1]}" "${site[2]}" "${site_redis[1]}"; do wait_http "http://$a/"; done

# fill <site> <variant> <from> <count>: asks for count ids from position
# from (wrapping), 8 curl processes at a time each taking every 8th id;
# prints each status.
fill() {
	local j
	for j in $(seq 0 7); do
		awk -v s="$1" -v v="$2" -v from="$3" -v count="$4" -v j="$j" '{ id[NR - 1] = $0 } END {
			for (i = j; i < count; i += 8) printf "url = \"http://%s/img/%s/%s\"\noutput = /dev/null\n", s, id[(from + i) % NR], v
		}' "$work/ids" >"$work/fill-$1-$j"
		curl -s --max-time 10 -K "$work/fill-$1-$j" -w '%{http_code}\n' &
	done
	wait
}

# fill_both <label> <variant> <replica 1's from> <count> <replica 2's from>:
# runs fill on both replicas at once and reports time and statuses.
fill_both() {
	local start w1 w2
	start=$(date +%s.%N)
	fill "${site[1]}" "$2" "$3" "$4" >"$work/fill1" &
	w1=$!
	fill "${site[2]}" "$2" "$5" "$4" >"$work/fill2" &
	w2=$!
	wait "$w1" "$w2"
	echo "$1: $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')s, answers by status: $(sort "$work/fill1" "$work/fill2" | uniq -c | xargs)"
}

echo "uploading 1,000 images to the emulator"
api="http://$emu/client/v4/accounts/0123456789abcdef0123456789abcdef/images/v1"
token=$(cat dev/api-token)
seq 1000 | xargs -P 4 -I{} curl -s --fail -H "Authorization: Bearer $token" \
	-F "file=@$work/img.jpg" -F requireSignedURLs=true "$api" |
	grep -o '"id":"[^"]*"' | cut -d'"' -f4 >"$work/ids"
[ "$(sort -u "$work/ids" | wc -l)" = 1000 ] || { echo "uploaded $(wc -l <"$work/ids") images, want 1,000 distinct" >&2; exit 1; }
ids_lua "$work/ids" 0 "$work/from0.lua"

deliveries() { # <variant>: the emulator's 200 deliveries of it
	metric "$emu_admin" "imagegate_emulator_deliveries_total{code=\"200\",variant=\"$1\"}"
}
tier_hits() { # <replica> <tier>
	metric "${admin[$1]}" "imagegate_byte_cache_hits_total{tier=\"$2\"}"
}
redis_errors() { # <replica>: failed Redis calls (timeouts, open breaker, dropped writes) by operation
	echo "get $(metric "${admin[$1]}" 'imagegate_redis_errors_total{op="get"}') set $(metric "${admin[$1]}" 'imagegate_redis_errors_total{op="set"}')"
}
replica_report() {
	for r in 1 2; do
		echo "  replica $r: memory-tier hits $(tier_hits "$r" memory), redis-tier hits $(tier_hits "$r" redis), upstream 2xx fetches $(metric "${admin[$r]}" 'imagegate_upstream_fetches_total{status="2xx"}'), redis errors $(redis_errors "$r")"
	done
}

echo "$(wc -c <"$work/img.jpg")-byte JPEG uploaded as 1,000 images; wrk runs: $conns connections, ${secs}s"
echo
fill_both "fill 1a: replica 1 ids 1-500, replica 2 ids 501-1000" public 0 500 500
fill_both "fill 1b: both replicas all 1,000 ids" public 0 1000 0
replica_report
fetched=$(deliveries public)
verdict=OK
[ "$fetched" = 1000 ] || verdict=MISMATCH
echo "upstream fetches (emulator deliveries of public, code 200): $fetched for 1000 distinct (image, variant, format): $verdict"
echo
fill_both "fill 2: both replicas all 1,000 ids at once, in the same order" thumbnail 0 1000 0
replica_report
fetched=$(deliveries thumbnail)
verdict=OK
[ "$fetched" = 1000 ] || verdict=MISMATCH
echo "upstream fetches (emulator deliveries of thumbnail, code 200): $fetched for 1000 distinct (image, variant, format): $((fetched - 1000)) fetched twice: $verdict"
echo

echo "replica 1 before the tier runs: redis-tier hits $(tier_hits 1 redis), redis errors $(redis_errors 1)"
d1=$(deliveries public)
measure "memory tier (replica 1, cache_size 64MiB)" "http://${site[1]}" "$work/from0.lua" "$pid_replica1" "$pid_redis"
m=$(tier_hits 1 redis)
measure "Redis tier (replica 1, cache_size 0)" "http://${site_redis[1]}" "$work/from0.lua" "$pid_replica1" "$pid_redis"
echo "replica 1 redis-tier hits during the Redis-tier run: $(awk -v a="$(tier_hits 1 redis)" -v b="$m" 'BEGIN { print a - b }'), redis errors so far $(redis_errors 1)"
echo "upstream fetches during the tier runs: $(awk -v a="$(deliveries public)" -v b="$d1" 'BEGIN { print a - b }') (want 0)"
echo "delivered size: $(curl -s -o /dev/null -w '%{size_download}' "http://${site[1]}/img/$(head -1 "$work/ids")/public") bytes (public), $(curl -s -o /dev/null -w '%{size_download}' "http://${site[1]}/img/$(head -1 "$work/ids")/thumbnail") bytes (thumbnail)"
echo
print_summary "replica 1" "redis-server"
